"""Section boundaries: where the music changes, by two-window novelty on segment features.

For each segment boundary the mean feature vector of the preceding window (8 s) is compared
with that of the following window, in units of the features' pooled spread (a multivariate
t-like statistic). Peaks of this novelty curve above a threshold, at least ``min_section_s``
apart, are boundaries. It is linear in the number of segments, so hours of audio cost little.
"""

from __future__ import annotations

import numpy as np

# Novelty (in pooled standard deviations, averaged over features) a boundary must reach.
_MIN_NOVELTY = 1.5


def novelty(features: np.ndarray, *, window: int) -> np.ndarray:
    """Novelty at each segment index i (between i-1 and i) ``[shape=(n,)]``; zero near edges."""
    n, d = features.shape
    out = np.zeros(n)
    if n < 2 * window or window < 1:
        return out
    c1 = np.concatenate((np.zeros((1, d)), np.cumsum(features, axis=0)))
    c2 = np.concatenate((np.zeros((1, d)), np.cumsum(features**2, axis=0)))
    i = np.arange(window, n - window + 1)
    before = (c1[i] - c1[i - window]) / window
    after = (c1[i + window] - c1[i]) / window
    var_b = (c2[i] - c2[i - window]) / window - before**2
    var_a = (c2[i + window] - c2[i]) / window - after**2
    # The floor keeps a perfectly steady passage from turning tiny changes into huge novelty.
    pooled = np.sqrt(np.maximum(0.5 * (var_a + var_b), 0.0) + 0.05**2)
    out[i] = np.sqrt(np.mean(((after - before) / pooled) ** 2, axis=1))
    return out


def boundaries(features: np.ndarray, *, window: int, min_gap: int,
               min_novelty: float = _MIN_NOVELTY) -> list[int]:
    """Segment indices where a new section starts (excluding 0), strongest first then sorted."""
    nov = novelty(features, window=window)
    peaks = np.nonzero((nov[1:-1] >= nov[:-2]) & (nov[1:-1] > nov[2:]) &
                       (nov[1:-1] >= min_novelty))[0] + 1
    chosen: list[int] = []
    for p in peaks[np.argsort(-nov[peaks])]:
        if all(abs(int(p) - q) >= min_gap for q in chosen):
            chosen.append(int(p))
    return sorted(chosen)
