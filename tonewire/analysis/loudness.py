"""Loudness per ITU-R BS.1770-4 (K-weighting, momentary, short-term, gated integrated) and the
EBU Tech 3342 loudness range, computed block by block with bounded state.

K-weighted power is kept per 100 ms sub-block (10 values a second), from which every measure
is derived: momentary = 4 sub-blocks, short-term = 30, integrated = gated 400 ms blocks with 75 %
overlap. Levels below :data:`LEVEL_FLOOR_DB` read as the floor so that silence is a number, not
``-inf`` or NaN.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from scipy import signal

from tonewire.analysis.columns import Growable

LEVEL_FLOOR_DB: Final = -120.0
_ABS_GATE_LUFS: Final = -70.0
_REL_GATE_LU: Final = -10.0
_LRA_REL_GATE_LU: Final = -20.0


def k_weighting_sos(*, sr: int) -> np.ndarray:
    """BS.1770 K-weighting (high shelf then high pass) as second-order sections.

    The standard gives coefficients at 48 kHz only; these are the same analogue prototypes
    (shelf +4 dB at 1682 Hz, high pass at 38 Hz) re-derived with the bilinear transform for any
    rate, and reproduce the published 48 kHz coefficients to 1e-8.
    """
    g_db, q, fc = 3.999843853973347, 0.7071752369554196, 1681.974450955533
    k = math.tan(math.pi * fc / sr)
    vh = 10.0 ** (g_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0,
             (vh - vb * k / q + k * k) / a0, 1.0, 2.0 * (k * k - 1.0) / a0,
             (1.0 - k / q + k * k) / a0]
    fc, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * fc / sr)
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, highpass], dtype=np.float64)


def power_to_lufs(power: np.ndarray | float) -> np.ndarray:
    """Mean-square K-weighted power (summed over channels) to LUFS, floored."""
    p = np.asarray(power, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = -0.691 + 10.0 * np.log10(p)
    return np.maximum(out, LEVEL_FLOOR_DB)


def _moving_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Mean of each full window of ``width`` consecutive values ``[shape=(n - width + 1,)]``."""
    if x.size < width:
        return np.empty(0, dtype=np.float64)
    c = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
    return (c[width:] - c[:-width]) / width


def gated_integrated_lufs(sub_power: np.ndarray) -> float | None:
    """Integrated loudness from 100 ms K-weighted powers ``[shape=(n,)]``; ``None`` if all gated.

    400 ms blocks with 75 % overlap, absolute gate at -70 LUFS, relative gate 10 LU below the
    mean of the blocks that pass the absolute gate (BS.1770-4 section 2.8).
    """
    blocks = _moving_mean(sub_power, 4)
    if blocks.size == 0 and sub_power.size:
        blocks = np.array([sub_power.mean()])  # shorter than one 400 ms block: use what exists
    loud = blocks[power_to_lufs(blocks) > _ABS_GATE_LUFS]
    if loud.size == 0:
        return None
    rel_gate = float(power_to_lufs(loud.mean())) + _REL_GATE_LU
    kept = loud[power_to_lufs(loud) > rel_gate]
    return float(power_to_lufs(kept.mean()))


def loudness_range_lu(sub_power: np.ndarray) -> float | None:
    """EBU Tech 3342 loudness range (LU) from 100 ms powers; ``None`` under 3 s of signal."""
    st = power_to_lufs(_moving_mean(sub_power, 30))
    st = st[st > _ABS_GATE_LUFS]
    if st.size == 0:
        return None
    rel = float(power_to_lufs(float(np.mean(10.0 ** ((st + 0.691) / 10.0))))) + _LRA_REL_GATE_LU
    st = st[st > rel]
    if st.size == 0:
        return None
    lo, hi = np.percentile(st, [10.0, 95.0])
    return float(hi - lo)


class LoudnessMeter:
    """Streaming K-weighted power meter over blocks ``[shape=(channels, n)]``.

    Channels are weighted 1.0 (mono and stereo per BS.1770). State is the filter memory, the
    unfinished sub-block and one float per 100 ms of audio.
    """

    def __init__(self, *, sr: int, channels: int) -> None:
        self.sr = sr
        self.sub_len = sr // 10 if sr % 10 == 0 else round(sr / 10)
        self._sos = k_weighting_sos(sr=sr)
        self._zi = np.zeros((self._sos.shape[0], channels, 2), dtype=np.float64)
        self._partial = np.zeros(0, dtype=np.float64)
        self._subs = Growable(dtype=np.float64)

    @property
    def sub_seconds(self) -> float:
        return self.sub_len / self.sr

    def feed(self, block: np.ndarray) -> None:
        y, self._zi = signal.sosfilt(self._sos, block, axis=-1, zi=self._zi)
        power = np.square(y).sum(axis=0)
        if self._partial.size:
            power = np.concatenate((self._partial, power))
        n_full = power.size // self.sub_len
        if n_full:
            self._subs.extend(power[: n_full * self.sub_len].reshape(n_full, self.sub_len)
                              .mean(axis=1))
        self._partial = power[n_full * self.sub_len :]

    def finish(self) -> None:
        """Close the last, partial sub-block (its mean over the samples it has)."""
        if self._partial.size:
            self._subs.extend(np.array([self._partial.mean()]))
            self._partial = np.zeros(0, dtype=np.float64)

    def sub_powers(self) -> np.ndarray:
        """All closed 100 ms K-weighted powers so far ``[shape=(n,)]`` (a view)."""
        return self._subs.view()

    def window_lufs(self, end_seconds: np.ndarray, *, window_seconds: float) -> np.ndarray:
        """Loudness of the window ending at each time (short-term: 3 s, momentary: 0.4 s).

        Windows reaching before the start use the sub-blocks that exist.
        """
        subs = self.sub_powers()
        width = max(1, round(window_seconds / self.sub_seconds))
        hi = np.clip(np.round(np.asarray(end_seconds) / self.sub_seconds).astype(np.int64),
                     0, subs.size)
        lo = np.maximum(hi - width, 0)
        base = int(lo.min()) if lo.size else 0  # only the sub-blocks these windows cover
        c = np.concatenate(([0.0], np.cumsum(subs[base : int(hi.max(initial=base))],
                                             dtype=np.float64)))
        n = np.maximum(hi - lo, 1)
        return power_to_lufs((c[hi - base] - c[lo - base]) / n)
