"""Filterbanks over STFT bins: frequency bands and mel bands (matrices), pitch-class chroma.

Each is a ``[shape=(n_bins, n_out)]`` matrix, so a band summary of a whole spectrogram block is
one matrix product ``power @ matrix``.
"""

from __future__ import annotations

from typing import Final

import numpy as np

BAND_NAMES: Final = ("bass", "low_mid", "mid", "high_mid", "high")
BAND_EDGES_HZ: Final = ((20.0, 250.0), (250.0, 500.0), (500.0, 2000.0), (2000.0, 4000.0),
                        (4000.0, 20000.0))
PITCH_CLASSES: Final = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def fft_frequencies(*, sr: int, n_fft: int) -> np.ndarray:
    """Centre frequency of each rfft bin ``[shape=(n_fft // 2 + 1,)]``, Hz."""
    return np.fft.rfftfreq(n_fft, d=1.0 / sr)


def effective_band_edges(*, sr: int) -> tuple[tuple[float, float], ...]:
    """The nominal band edges clipped to Nyquist: honest about where analysis stops."""
    nyquist = sr / 2.0
    return tuple((lo, min(hi, nyquist)) for lo, hi in BAND_EDGES_HZ)


def band_matrix(*, sr: int, n_fft: int) -> np.ndarray:
    """0/1 matrix assigning each bin to one of the five bands ``[shape=(n_bins, 5)]``.

    A bin belongs to the band containing its centre frequency (bands are half-open, [lo, hi)).
    """
    freqs = fft_frequencies(sr=sr, n_fft=n_fft)
    out = np.zeros((freqs.size, len(BAND_EDGES_HZ)), dtype=np.float32)
    for j, (lo, hi) in enumerate(effective_band_edges(sr=sr)):
        out[(freqs >= lo) & (freqs < hi), j] = 1.0
    if sr / 2.0 <= BAND_EDGES_HZ[-1][1]:
        out[freqs == sr / 2.0, -1] = 1.0  # Nyquist bin closes the top band
    return out


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    out: np.ndarray = 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)
    return out


def mel_matrix(*, sr: int, n_fft: int, n_mels: int = 64, fmin: float = 30.0,
               fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters ``[shape=(n_bins, n_mels)]``, each with unit peak."""
    fmax = min(fmax or sr / 2.0, sr / 2.0)
    freqs = fft_frequencies(sr=sr, n_fft=n_fft)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    f = freqs[:, None]
    up = (f - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - f) / np.maximum(hi - mid, 1e-9)
    out: np.ndarray = np.clip(np.minimum(up, down), 0.0, None).astype(np.float32)
    return out


def peak_chroma(power: np.ndarray, *, sr: int, n_fft: int, fmin: float = 50.0,
                fmax: float = 5000.0, floor_db: float = -50.0) -> np.ndarray:
    """Pitch-class energy per spectrum ``[shape=(n, 12)]`` from spectral peaks, index 0 = C.

    ``power`` rows are power spectra (frames, or a segment's mean spectrum: sustained notes
    keep their peaks in the mean, and it costs one pass per segment instead of per frame).

    STFT bins are 10.8 Hz apart at 22050/2048, wider than a semitone below 180 Hz, so mapping
    bins to pitches would misplace every bass note. Instead each local maximum within
    ``floor_db`` of its frame's loudest bin has its frequency refined by parabolic interpolation
    of the log power (accurate to a few hundredths of a bin for a Hann window), and its power
    goes to the nearest pitch class (A4 = 440 Hz). Peaks vote with their magnitude, not
    power, so a loud bass note and its harmonics do not drown the third of a chord.
    """
    n_frames, n_bins = power.shape
    out = np.zeros((n_frames, 12), dtype=np.float64)
    if n_frames == 0 or n_bins < 3:
        return out
    p = power.astype(np.float64)
    mid = p[:, 1:-1]
    k = np.arange(1, n_bins - 1) * (sr / n_fft)
    in_range = (k >= fmin) & (k <= min(fmax, sr / 2.0))
    floor = p.max(axis=1, keepdims=True) * 10.0 ** (floor_db / 10.0)
    is_peak = (mid > p[:, :-2]) & (mid >= p[:, 2:]) & in_range[None, :] & (mid > floor) & (
        mid > 0)
    f_idx, b_idx = np.nonzero(is_peak)
    b = b_idx + 1
    la, lb, lc = (np.log(p[f_idx, b + d] + 1e-20) for d in (-1, 0, 1))
    denom = la - 2.0 * lb + lc
    delta = np.where(denom < 0, 0.5 * (la - lc) / np.where(denom < 0, denom, -1.0), 0.0)
    freq = (b + np.clip(delta, -0.5, 0.5)) * (sr / n_fft)
    pc = np.round(12.0 * np.log2(freq / 440.0) + 69.0).astype(np.int64) % 12
    weights = np.sqrt(p[f_idx, b])
    out += np.bincount(f_idx * 12 + pc, weights=weights, minlength=n_frames * 12).reshape(
        n_frames, 12)
    return out
