"""Spectral shape of power spectra: centroid, rolloff, flatness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TINY = 1e-10
ROLLOFF_FRACTION = 0.85


@dataclass(frozen=True, slots=True)
class SpectralShape:
    centroid_hz: np.ndarray
    """Magnitude-weighted mean frequency, Hz ``[shape=(n,)]``."""
    rolloff_hz: np.ndarray
    """Frequency under which 85 % of the energy lies, Hz."""
    flatness: np.ndarray
    """Geometric over arithmetic mean of power: 0 for a pure tone, 1 for white noise."""


def shape_features(power: np.ndarray, *, freqs: np.ndarray) -> SpectralShape:
    """Shape of each power spectrum row ``[shape=(n, n_bins)]`` (a segment's mean spectrum).

    Rows without energy read 0 everywhere rather than NaN.
    """
    power = np.asarray(power, dtype=np.float64)
    total = power.sum(axis=1)
    has = total > 0
    mag = np.sqrt(power)
    centroid = (mag @ freqs) / np.where(has, mag.sum(axis=1), 1.0)
    cum = np.cumsum(power, axis=1)
    idx = np.minimum((cum < ROLLOFF_FRACTION * cum[:, -1:]).sum(axis=1), freqs.size - 1)
    rolloff = freqs[idx]
    flat = np.exp(np.log(power + _TINY).mean(axis=1)) / (power.mean(axis=1) + _TINY)
    zero = np.zeros_like(total)
    return SpectralShape(centroid_hz=np.where(has, centroid, zero),
                         rolloff_hz=np.where(has, rolloff, zero),
                         flatness=np.where(has, np.clip(flat, 0.0, 1.0), zero))
