"""Onset strength, tempo and beats.

Onset strength is power flux on a mel spectrogram: the square root of the summed rise in mel
band power between consecutive frames. It weighs events by how much energy they add, so a
kick and a snare of similar loudness score alike and a quiet hi-hat scores low, which is what
decides the beat level (log-domain flux, by contrast, rates a hi-hat rising out of silence as
highly as a snare and doubles slow tempos). Tempo is
read from the autocorrelation of that envelope; beats come from dynamic programming (Ellis,
2007) vectorised over half a beat period at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MIN_BPM: Final = 55.0
MAX_BPM: Final = 190.0
# A faster candidate at an integer fraction of the best peak's lag, itself a peak at least this
# high relative to the best, is the real beat. A pulse only at 2L leaves the mean-removed
# autocorrelation at L near or below zero, so any clear peak at L means events recur at L
# (kick and snare alternating); weak off-beat hi-hats stay under it (measured 0.1-0.27).
_FASTER_RATIO: Final = 0.3
# Below this normalised periodicity there is no beat to report.
MIN_PERIODICITY: Final = 0.08
# Onset-envelope variance under which there are no onsets, only rounding noise (about -80 dB).
MIN_ONSET_VARIANCE: Final = 1e-8


def onset_strength(mel_power: np.ndarray, *, previous: np.ndarray | None) -> np.ndarray:
    """Power flux per frame ``[shape=(n_frames,)]`` from mel power frames ``(n_frames, n_mels)``.

    ``previous`` is the mel frame before the block (``None`` at the start: flux is 0 there).
    Units: square root of full-scale-normalised power, so a 0 dBFS onset is about 1.
    """
    if mel_power.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    prev = mel_power[:1] if previous is None else previous[None, :]
    diff = np.diff(np.concatenate((prev, mel_power)), axis=0)
    out: np.ndarray = np.sqrt(np.maximum(diff, 0.0).sum(axis=1)).astype(np.float32)
    return out


def autocorrelation(frames: np.ndarray, *, max_lag: int) -> np.ndarray:
    """Unbiased autocorrelation of each mean-removed row ``[shape=(..., max_lag + 1)]``.

    Divides by the number of overlapping samples so equal pulses score equally at every lag.
    """
    x = frames - frames.mean(axis=-1, keepdims=True)
    n = x.shape[-1]
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(x, n=size, axis=-1)
    acf = np.fft.irfft(spec * np.conj(spec), n=size, axis=-1)[..., : max_lag + 1]
    counts = np.maximum(n - np.arange(max_lag + 1), 1)
    out: np.ndarray = acf / counts
    return out


@dataclass(frozen=True, slots=True)
class TempoEstimate:
    bpm: np.ndarray
    """Tempo per row, BPM (NaN where no beat)."""
    periodicity: np.ndarray
    """Normalised autocorrelation at the chosen lag, 0..1: how regular the pulse is."""


def _parabolic(acf: np.ndarray, lag: np.ndarray) -> np.ndarray:
    """Sub-frame peak position by fitting a parabola through the peak and its neighbours."""
    rows = np.arange(acf.shape[0])
    lag = np.clip(lag, 1, acf.shape[1] - 2)
    a, b, c = acf[rows, lag - 1], acf[rows, lag], acf[rows, lag + 1]
    denom = a - 2.0 * b + c
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    out: np.ndarray = lag + np.clip(shift, -0.5, 0.5)
    return out


def tempo_from_acf(acf: np.ndarray, *, frame_rate: float, min_bpm: float = MIN_BPM,
                   max_bpm: float = MAX_BPM) -> TempoEstimate:
    """Pick the beat period of each autocorrelation row ``[shape=(n, n_lags)]``.

    The best peak between ``min_bpm`` and ``max_bpm`` wins, unless a lag at 1/2, 1/3 or 1/4 of
    it (a faster tempo still in range) is a peak scoring at least a third as high: a click at
    180 BPM correlates equally at 90 and 60 BPM, and the fastest such lag is the beat.
    """
    acf = np.atleast_2d(acf)
    lo = max(1, int(np.floor(60.0 * frame_rate / max_bpm)))
    hi = min(acf.shape[1] - 2, int(np.ceil(60.0 * frame_rate / min_bpm)))
    energy = acf[:, 0]
    # Smooth along lag (Gaussian, 1 frame): a beat period between two frames splits a sharp
    # peak in half, which would hand the win to a multiple of it that lands on a whole frame.
    kernel = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(acf, ((0, 0), (3, 3)), mode="reflect")
    smooth = sliding_window_view(padded, 7, axis=1) @ kernel
    norm = smooth / np.where(energy > 0, energy, 1.0)[:, None]
    # Local maxima only: the shoulder of a peak is not a candidate.
    peaks = np.zeros_like(norm, dtype=bool)
    peaks[:, 1:-1] = (norm[:, 1:-1] >= norm[:, :-2]) & (norm[:, 1:-1] >= norm[:, 2:])
    score = np.where(peaks, norm, -np.inf)[:, lo : hi + 1]
    best = lo + np.argmax(score, axis=1)
    rows = np.arange(norm.shape[0])
    best_val = norm[rows, best]
    chosen = best.copy()
    for div in (4, 3, 2):  # prefer the fastest qualifying fraction
        cand = np.round(best / div).astype(np.int64)
        # Search +-1 frame around the exact fraction for the local peak.
        cand_idx = np.clip(cand[:, None] + np.array([-1, 0, 1])[None, :], 1, norm.shape[1] - 1)
        vals = norm[rows[:, None], cand_idx]
        cand_best = cand_idx[rows, np.argmax(vals, axis=1)]
        ok = ((cand_best >= lo) & (norm[rows, cand_best] >= _FASTER_RATIO * best_val)
              & peaks[rows, cand_best] & (chosen == best))
        chosen = np.where(ok, cand_best, chosen)
    refined = _parabolic(norm, chosen)
    periodicity = np.clip(norm[rows, chosen], 0.0, 1.0)
    bpm = 60.0 * frame_rate / refined
    valid = (energy > MIN_ONSET_VARIANCE) & (periodicity >= MIN_PERIODICITY) & np.isfinite(bpm)
    return TempoEstimate(bpm=np.where(valid, bpm, np.nan),
                         periodicity=np.where(valid, periodicity, 0.0))


def track_beats(onset: np.ndarray, *, period: float, tightness: float = 100.0) -> np.ndarray:
    """Beat positions in (fractional) frames by dynamic programming (Ellis 2007).

    ``period`` is the beat period in frames. Each frame's score is its onset strength plus the
    best predecessor score one period earlier, penalised by ``tightness * log(gap/period)^2``.
    Frames within half a period of each other have no predecessor in common range, so each
    half-period chunk is computed in one vectorised step.
    """
    n = onset.size
    if n == 0 or not np.isfinite(period) or period < 2:
        return np.zeros(0, dtype=np.float64)
    std = onset.std()
    env = onset / std if std > 0 else onset
    # Local score: envelope smoothed by a Gaussian of a quarter period, as in Ellis.
    w = np.exp(-0.5 * (np.arange(-period, period + 1) * 32.0 / period) ** 2)
    local = np.convolve(env, w, mode="same")
    gaps = np.arange(int(np.floor(period / 2)), int(np.ceil(2 * period)) + 1)
    penalty = -tightness * np.log(gaps / period) ** 2
    score = local.astype(np.float64).copy()
    back = np.full(n, -1, dtype=np.int64)
    step = max(1, int(np.floor(period / 2)))
    for start in range(gaps[0], n, step):
        t = np.arange(start, min(start + step, n))
        prev = t[:, None] - gaps[None, :]
        valid = prev >= 0
        cand = np.where(valid, score[np.maximum(prev, 0)] + penalty[None, :], -np.inf)
        j = np.argmax(cand, axis=1)
        best = cand[np.arange(t.size), j]
        has = np.isfinite(best) & (best > 0)
        score[t] = local[t] + np.where(has, best, 0.0)
        back[t] = np.where(has, prev[np.arange(t.size), j], -1)
    # Start from the best-scoring frame in the last period and follow the chain back.
    tail = max(0, n - int(np.ceil(period)))
    cur = tail + int(np.argmax(score[tail:]))
    beats = []
    while cur >= 0:
        beats.append(cur)
        cur = int(back[cur])
    out = np.array(beats[::-1], dtype=np.int64)
    # Trim leading/trailing beats on silence (Ellis trims beats weaker than half the mean).
    if out.size:
        strength = local[out]
        keep = np.nonzero(strength > 0.5 * strength.mean())[0]
        out = out[keep[0] : keep[-1] + 1] if keep.size else out[:0]
    # Refine each beat to a fraction of a frame (23 ms) on the smoothed envelope's peak.
    inner = out[(out > 0) & (out < n - 1)]
    a, b, c = local[inner - 1], local[inner], local[inner + 1]
    denom = a - 2.0 * b + c
    shift = np.where(denom < 0, 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
    refined = out.astype(np.float64)
    refined[(out > 0) & (out < n - 1)] += np.clip(shift, -0.5, 0.5)
    return refined


def bpm_from_beats(beat_times: np.ndarray, *, expected_period_s: float) -> float | None:
    """Mean beat rate over runs of consistent intervals (within 15 % of the expected period).

    Summing intervals makes the error of individual beats cancel: the tempo of a steady minute
    is exact to a frame over the whole minute, not a frame per beat.
    """
    if beat_times.size < 3:
        return None
    ioi = np.diff(beat_times)
    ok = np.abs(ioi - expected_period_s) <= 0.15 * expected_period_s
    if ok.sum() < 2:
        return None
    return float(60.0 * ok.sum() / ioi[ok].sum())
