"""Brainwave-band shares of the amplitude-envelope modulation spectrum.

A heuristic, named after EEG bands, not a measurement of any brain: the amplitude envelope of
the audio (RMS in ~1 ms steps) is windowed around each segment, its modulation power spectrum
taken, and the mean power density in each rate band (delta 0.5-4 Hz, theta 4-8, alpha 8-13,
beta 13-30, gamma 30-100) is reported as a share of the total. Rhythmic modulation at those
rates is what auditory entrainment studies use as a stimulus, which is the only link to brains.
Segments without modulation (silence, a steady tone) report zeros rather than a made-up split.
"""

from __future__ import annotations

from typing import Final

import numpy as np

EEG_BANDS: Final = (("delta", 0.5, 4.0), ("theta", 4.0, 8.0), ("alpha", 8.0, 13.0),
                    ("beta", 13.0, 30.0), ("gamma", 30.0, 100.0))
ENVELOPE_RATE_HZ: Final = 1000.0
# Modulation depth (std / mean of the envelope, 0.5-100 Hz) under which there is nothing to
# distribute: a steady tone's own ripple stays far below it.
_MIN_DEPTH: Final = 0.02


def envelope_decimation(sr: int) -> int:
    """Samples per envelope value, so the envelope runs at about 1 kHz.

    1 kHz keeps a carrier's own power ripple (at twice its frequency) above the 100 Hz top of
    the gamma band instead of aliasing into it; the 1 ms box nulls carriers near 1 kHz.
    """
    return max(1, round(sr / ENVELOPE_RATE_HZ))


def rms_envelope(x: np.ndarray, *, decimation: int) -> np.ndarray:
    """RMS over consecutive groups of ``decimation`` samples (length must be a multiple)."""
    out: np.ndarray = np.sqrt(np.square(x.reshape(-1, decimation), dtype=np.float64).mean(axis=1))
    return out


def brainwave_shares(windows: np.ndarray, *, env_rate: float) -> np.ndarray:
    """Band shares for each envelope window ``[shape=(n, w)]`` -> ``(n, 5)``, rows sum to 1 or 0."""
    windows = np.atleast_2d(windows).astype(np.float64)
    n, w = windows.shape
    mean = windows.mean(axis=1, keepdims=True)
    safe_mean = np.where(mean > 0, mean, 1.0)
    rel = (windows - mean) / safe_mean
    size = max(1024, 1 << int(np.ceil(np.log2(w))))
    win = np.hanning(w)
    spec = np.abs(np.fft.rfft(rel * win[None, :], n=size, axis=1)) ** 2
    freqs = np.fft.rfftfreq(size, d=1.0 / env_rate)
    # Parseval: variance of the 0.5-100 Hz modulation, as a depth (std over mean).
    in_range = (freqs >= EEG_BANDS[0][1]) & (freqs < EEG_BANDS[-1][2])
    depth = np.sqrt(2.0 * spec[:, in_range].sum(axis=1) / (size * np.sum(win**2)))
    out = np.zeros((n, len(EEG_BANDS)))
    for j, (_, lo, hi) in enumerate(EEG_BANDS):
        sel = (freqs >= lo) & (freqs < min(hi, env_rate / 2.0))
        if sel.any():
            out[:, j] = spec[:, sel].mean(axis=1)
    total = out.sum(axis=1, keepdims=True)
    has = (depth >= _MIN_DEPTH) & (mean[:, 0] > 0) & (total[:, 0] > 0)
    shares: np.ndarray = np.where(has[:, None], out / np.where(total > 0, total, 1.0), 0.0)
    return shares
