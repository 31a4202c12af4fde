"""Per-window speech analysis for live sessions: voice activity, pitch, loudness, rate, pauses.

One window of mono PCM (typically 1 s at 16 kHz; 8-48 kHz, 0.25-10 s) becomes one
:class:`SpeechFeatures`. :func:`analyze_windows` takes every session's due window at once
(``[shape=(n_sessions, n)]``) and does the DSP as one vectorised computation over all rows:
framing, spectra, the pitch estimator, the syllable envelope and the per-window aggregates.
Only the voice-activity decision carries per-session state; energy VADs
(:class:`~tonewire.analysis.vad.EnergyVad`) are decided together too, other detectors row by row.

Frames: one per 10 ms slot of the window (slot ``i`` covers ``[i, i + 1) * 10 ms``), each
analysed on audio centred on its slot and kept inside the window (edge slots reuse the nearest
full frame, so nothing is zero-padded). Level and zero crossings use 30 ms (three slots) of the
signal as it is; band shares (25 ms Hann frames) and pitch use the signal resampled to 8 kHz,
since everything they look at lies below 2.5 kHz.

Pitch is YIN (de Cheveigne and Kawahara, 2002) vectorised over frames: the difference
function from one FFT cross-correlation and cumulative energies (20 ms integration window,
lags for 60-500 Hz), cumulative-mean normalisation, the first dip under :data:`YIN_THRESHOLD`
followed down to its local minimum (else the deepest dip), parabolic refinement. Octave errors
are guarded twice: the first-dip rule keeps YIN off multiples of the period, and per window,
frames about an octave off the median are folded back and frames still further off dropped.
See ``docs/speech.md`` for every value.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sp_fft
from scipy.ndimage import maximum_filter1d, uniform_filter1d
from scipy.signal import firwin, resample_poly

if TYPE_CHECKING:
    from tonewire.analysis.vad import Vad

FRAME_RATE_HZ: Final = 100
"""Frames (VAD decisions, pitch estimates) per second."""
FRAME_HOP_S: Final = 1.0 / FRAME_RATE_HZ
ANALYSIS_SR: Final = 8000
"""Rate of the band-share and pitch analysis, Hz."""
LEVEL_SLOTS: Final = 3
"""Level and zero crossings are measured over three 10 ms slots (30 ms)."""
SPECTRUM_FRAME_S: Final = 0.025
"""Hann frame for the band shares, seconds."""
PITCH_WINDOW_S: Final = 0.020
"""YIN integration window, seconds (longer than the longest period searched)."""
F0_MIN_HZ: Final = 60.0
F0_MAX_HZ: Final = 500.0
YIN_THRESHOLD: Final = 0.15
"""YIN takes the first dip of the normalised difference under this (0 = exactly periodic)."""
MAX_APERIODICITY: Final = 0.3
"""A frame is voiced when the normalised difference at its period is under this."""
LEVEL_FLOOR_DB: Final = -120.0
MIN_SR, MAX_SR = 8000, 48000
MIN_SECONDS, MAX_SECONDS = 0.25, 10.0

VOICE_BAND_HZ: Final = (80.0, 1000.0)
"""Band whose share of a frame's power is the spectral evidence of voice."""
SYLLABLE_BAND_HZ: Final = (300.0, 2500.0)
"""Band whose energy envelope carries syllable nuclei (first and second formants)."""
MIN_PAUSE_S: Final = 0.25
MIN_SPEECH_S: Final = 0.1
"""Voiced speech needed for ``speech``; at most 40 % of a short window."""

# Syllable nuclei: maxima of the band envelope (smoothed over this many frames)...
_SYLLABLE_SMOOTH: Final = 3
# ...the largest within this many frames either side...
_SYLLABLE_HALF_SPAN: Final = 4
# ...that rise this much over the envelope between them and the previous nucleus...
_SYLLABLE_DIP_DB: Final = 3.0
# ...come within this much of the window's loudest voiced frame...
_SYLLABLE_RANGE_DB: Final = 25.0
# ...and lie in speech, with a voiced frame at most this many frames away.
_SYLLABLE_VOICED_REACH: Final = 3
# Frames within this many octaves of double / half the window median are folded back.
_OCTAVE_FOLD_TOLERANCE: Final = 0.2
# Frames per vectorised chunk: bounds memory whatever the batch size, and keeps a chunk's
# temporaries (about 1 MiB per 100 frames) in cache: at 16 one-second rows a chunk of 1600
# frames cost 1.27 ms per window against 0.72 ms in chunks of 800 (bench/README.md).
_CHUNK_FRAMES: Final = 800
_CHUNK_SAMPLES: Final = 1 << 18
_TINY: Final = 1e-20
# The integration window and the lagged window it is compared with must each hold at least this
# share of the frame's mean power (an onset or a cut compares sound with silence).
_ENERGY_BALANCE: Final = 0.125


@dataclass(frozen=True, slots=True)
class FrameFeatures:
    """Per-frame evidence for a batch of windows; arrays ``[shape=(n_rows, n_frames)]``."""

    sr: int
    power: np.ndarray
    """Mean square over the frame's 30 ms (full-scale sine = 0.5)."""
    level_db: np.ndarray
    """The same as a level in dBFS (full-scale sine = 0 dB), floored at -120."""
    zcr_hz: np.ndarray
    """Zero crossings per second over the same 30 ms."""
    voice_band: np.ndarray
    """Share of the 25 ms frame's power (under 4 kHz) within :data:`VOICE_BAND_HZ`, 0..1."""
    syllable_db: np.ndarray
    """Power within :data:`SYLLABLE_BAND_HZ`, dBFS, floored at -120."""
    f0_hz: np.ndarray
    """YIN estimate, Hz; NaN where the frame is not voiced within 60-500 Hz."""
    aperiodicity: np.ndarray
    """YIN's normalised difference at the chosen period: 0 periodic, about 1 for noise."""

    @property
    def n_frames(self) -> int:
        return int(self.power.shape[1])

    def take(self, rows: Sequence[int] | np.ndarray) -> FrameFeatures:
        """The features of some rows, as a batch of their own."""
        idx = np.asarray(rows, dtype=np.intp)
        return FrameFeatures(sr=self.sr, power=self.power[idx], level_db=self.level_db[idx],
                             zcr_hz=self.zcr_hz[idx], voice_band=self.voice_band[idx],
                             syllable_db=self.syllable_db[idx], f0_hz=self.f0_hz[idx],
                             aperiodicity=self.aperiodicity[idx])


@dataclass(frozen=True, slots=True)
class SpeechFeatures:
    """What one window says about speech. Plain Python values: pickles, encodes to JSON."""

    duration_s: float
    speech: bool
    """At least 100 ms of voiced speech frames (40 % of windows shorter than 250 ms)."""
    speech_ratio: float
    """Share of the window's frames the VAD marks as speech, 0..1."""
    voiced_ratio: float
    """Share of the window's frames that are speech and periodic (have an f0), 0..1."""
    f0_mean_hz: float | None
    """Mean f0 over voiced frames, Hz; ``None`` without voice."""
    f0_min_hz: float | None
    """5th percentile of f0 over voiced frames (robust minimum), Hz."""
    f0_max_hz: float | None
    """95th percentile of f0 over voiced frames (robust maximum), Hz."""
    f0_std_semitones: float | None
    """Spread of f0 over voiced frames in semitones: the intonation range."""
    loudness_dbfs: float
    """RMS level over speech frames (the whole window when there are none), dBFS; >= -120."""
    speaking_rate: float | None
    """Syllable nuclei per second of speech; ``None`` without speech."""
    pause_ratio: float
    """Share of the window in pauses (non-speech runs of at least 250 ms), 0..1."""
    longest_pause_s: float
    """Longest such pause, seconds (0 when there is none)."""
    pause_count: int
    vad_frames: tuple[bool, ...]
    """The VAD decision per 10 ms frame: frame ``i`` covers ``[i, i + 1) * 10 ms``."""
    speech_starts_s: tuple[float, ...]
    """Offsets (s) in the window where speech starts (relative to the VAD's state before it)."""
    speech_stops_s: tuple[float, ...]
    """Offsets (s) of the first non-speech frame after speech."""


# -- validation and framing ------------------------------------------------------------------

def validate_windows(x: np.ndarray, *, sr: int) -> np.ndarray:
    """Check a batch ``[shape=(n_rows, n)]`` of float PCM windows; return it as an array.

    Raises ``ValueError`` for a rate outside 8-48 kHz, a length outside 0.25-10 s, other
    shapes, or samples that are not finite.
    """
    if not MIN_SR <= sr <= MAX_SR:
        raise ValueError(f"sample rate must be within {MIN_SR}..{MAX_SR} Hz, got {sr}")
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"windows must be [shape=(n_rows, n)], got shape {arr.shape}")
    n = arr.shape[1]
    if not math.floor(MIN_SECONDS * sr) <= n <= math.ceil(MAX_SECONDS * sr):
        raise ValueError(f"window must be {MIN_SECONDS}..{MAX_SECONDS} s long, "
                         f"got {n / sr:.3f} s")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"samples must be float PCM in [-1, 1], got dtype {arr.dtype}")
    step = max(1, _CHUNK_SAMPLES // n)
    for r0 in range(0, arr.shape[0], step):
        if not np.isfinite(arr[r0 : r0 + step]).all():
            raise ValueError("samples contain NaN or inf")
    return arr


def frame_count(n: int, *, sr: int) -> int:
    """Whole 10 ms frames in ``n`` samples."""
    return (n * FRAME_RATE_HZ) // sr


def frame_starts(n_frames: int, *, rate: int, n: int, length: int) -> np.ndarray:
    """Start sample of the frame of ``length`` samples centred on each 10 ms slot of a signal
    of ``n`` samples at ``rate`` Hz, clamped so every frame lies inside it
    ``[shape=(n_frames,)]``."""
    i = np.arange(n_frames, dtype=np.int64)
    centres = ((2 * i + 1) * rate) // (2 * FRAME_RATE_HZ)
    out: np.ndarray = np.clip(centres - length // 2, 0, max(n - length, 0))
    return out


def _frames(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Frames ``[shape=(n_rows, n_frames, length)]`` (a copy)."""
    out: np.ndarray = sliding_window_view(x, length, axis=1)[:, starts]
    return out


def _band_matrix(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return ((freqs >= lo) & (freqs < hi)).astype(np.float64)


# -- pitch ------------------------------------------------------------------------------------

def pitch_lags(*, sr: int, fmin: float = F0_MIN_HZ, fmax: float = F0_MAX_HZ) -> tuple[int, int]:
    """Shortest and longest period searched, in samples."""
    return math.floor(sr / fmax), math.ceil(sr / fmin)


def yin(y: np.ndarray, *, starts: np.ndarray, sr: int, window: int, fmin: float = F0_MIN_HZ,
        fmax: float = F0_MAX_HZ, threshold: float = YIN_THRESHOLD,
        max_aperiodicity: float = MAX_APERIODICITY) -> tuple[np.ndarray, np.ndarray]:
    """YIN f0 of frames of rows ``y [shape=(n_rows, n)]`` -> ``(f0_hz, aperiodicity)``, each
    ``[shape=(n_rows, n_frames)]``.

    Frame ``j`` starts at ``starts[j]`` and holds the integration window of ``window`` samples
    and the longest period after it (``ceil(sr / fmin) + 1`` samples). ``f0_hz`` is NaN where
    the normalised difference at the chosen period is not under ``max_aperiodicity`` (or the
    frame straddles an onset); ``aperiodicity`` is that normalised difference, 0..1.
    """
    rows, n = y.shape
    n_frames = starts.size
    tau_lo, tau_max = pitch_lags(sr=sr, fmin=fmin, fmax=fmax)
    tau_hi = tau_max + 1
    length = window + tau_hi
    if n_frames and int(starts.max()) + length > n:
        raise ValueError(f"frames of {length} samples run past rows of {n}")
    m = rows * n_frames
    # No mean removal: the difference function ignores a DC offset.
    b = sliding_window_view(y.astype(np.float32), length, axis=1)[:, starts].reshape(m, length)
    size = sp_fft.next_fast_len(length, real=True)
    spec_a = sp_fft.rfft(b[:, :window], n=size, axis=1)
    spec_b = sp_fft.rfft(b, n=size, axis=1)
    np.conj(spec_a, out=spec_a)
    spec_a *= spec_b
    r = sp_fft.irfft(spec_a, n=size, axis=1)[:, : tau_hi + 1]
    # Energies of the lagged windows from one cumulative sum per row (float64, so the
    # differences of large sums stay exact enough), gathered per frame as float32 like ``r``.
    cs = np.zeros((rows, n + 1))
    np.cumsum(np.square(y, dtype=np.float64), axis=1, out=cs[:, 1:])
    moving = (cs[:, window:] - cs[:, :-window]).astype(np.float32)
    e_tau = sliding_window_view(moving, tau_hi + 1, axis=1)[:, starts].reshape(m, tau_hi + 1)
    e0 = e_tau[:, :1]
    # d(tau) = e0 + e_tau - 2 r(tau), in place: the temporaries of this batch are its largest.
    d = e0 + e_tau
    r *= 2.0
    d -= r
    np.maximum(d, 0.0, out=d)
    d[:, 0] = 0.0
    taus = np.arange(tau_hi + 1, dtype=np.float32)
    cum = np.cumsum(d[:, 1:], axis=1)
    silent = cum <= _TINY
    np.maximum(cum, np.float32(_TINY), out=cum)
    cmnd = np.empty_like(d)
    cmnd[:, 0] = 1.0
    np.multiply(d[:, 1:], taus[1:], out=cmnd[:, 1:])
    cmnd[:, 1:] /= cum
    cmnd[:, 1:][silent] = 1.0

    seg = cmnd[:, tau_lo : tau_max + 1]
    below = seg < threshold
    dipped = below.any(axis=1)
    # The first dip under the threshold, followed down to its local minimum; without one, the
    # deepest dip (voiced only if under ``max_aperiodicity``).
    first = np.where(dipped, np.argmax(below, axis=1), np.argmin(seg, axis=1))
    rising = cmnd[:, tau_lo + 1 : tau_max + 2] >= seg
    cand = rising & (np.arange(seg.shape[1])[None, :] >= first[:, None])
    rel = np.where(cand.any(axis=1), np.argmax(cand, axis=1), seg.shape[1] - 1)
    t = tau_lo + rel
    idx = np.arange(m)
    y0, y1, y2 = (cmnd[idx, t + k].astype(np.float64) for k in (-1, 0, 1))
    denom = y0 - 2.0 * y1 + y2
    shift = np.where(denom > _TINY, 0.5 * (y0 - y2) / np.where(denom > _TINY, denom, 1.0), 0.0)
    f0 = sr / (t + np.clip(shift, -0.5, 0.5))
    # Energy balance: at an onset or a cut, one side of the comparison is mostly silence and
    # the normalised difference (a ratio of tiny numbers) can dip at any lag. Both the window
    # and its lagged copy must carry a fair share of the frame's mean power.
    mean_power = ((cs[:, starts + length] - cs[:, starts]) / length).reshape(m)
    p_a = e0[:, 0] / window
    p_b = e_tau[idx, t] / window
    balanced = (np.minimum(p_a, p_b) > _ENERGY_BALANCE * mean_power) & (mean_power > _TINY)
    ok = (y1 < max_aperiodicity) & balanced & (f0 >= fmin) & (f0 <= fmax)
    f0_out = np.where(ok, f0, np.nan).reshape(rows, n_frames)
    return f0_out, np.clip(y1, 0.0, 1.0).reshape(rows, n_frames)


# -- frame features ---------------------------------------------------------------------------

def _resample_rows(x: np.ndarray, resampler: tuple[int, int, np.ndarray]) -> np.ndarray:
    up, down, taps = resampler
    # scipy takes FIR coefficients as ``window``; scipy-stubs types only window specs.
    fir: Any = taps
    out: np.ndarray = resample_poly(x, up, down, axis=1, window=fir)
    return out


def _resampler(sr: int) -> tuple[int, int, np.ndarray]:
    """Polyphase factors and a short Kaiser low-pass (4 zero crossings each side) to 8 kHz:
    what is analysed there lies below 2.5 kHz, so a sharp transition band buys nothing."""
    g = math.gcd(sr, ANALYSIS_SR)
    up, down = ANALYSIS_SR // g, sr // g
    # Unscaled: resample_poly multiplies the taps by ``up`` itself (scaling them here too made
    # the 8 kHz signal, and so ``syllable_db``, 20 log10(up) dB too loud at 11.025, 22.05 and
    # 44.1 kHz).
    taps = firwin(2 * 4 * max(up, down) + 1, 1.0 / max(up, down), window=("kaiser", 5.0))
    return up, down, taps.astype(np.float32)  # float32 taps keep float32 rows float32


def slot_bounds(n_frames: int, *, sr: int) -> np.ndarray:
    """Sample boundaries of the 10 ms slots ``[shape=(n_frames + 1,)]``."""
    out: np.ndarray = (np.arange(n_frames + 1, dtype=np.int64) * sr) // FRAME_RATE_HZ
    return out


def frame_features(x: np.ndarray, *, sr: int) -> FrameFeatures:
    """Per-frame level, zero crossings, band shares and pitch of a batch of windows.

    ``x [shape=(n_rows, n)]`` float PCM at ``sr`` Hz (validated). Level and zero crossings
    come from the signal as it is, over 30 ms (three 10 ms slots, centred where the window
    allows); band shares and pitch from the signal resampled to 8 kHz (everything they look
    at lies below 2.5 kHz). Vectorised over rows, in chunks that keep temporaries small.
    """
    return _frame_features(validate_windows(x, sr=sr), sr=sr)


@dataclass(frozen=True, slots=True)
class _FramePlan:
    """Everything :func:`_frame_features` derives from ``(sr, n)`` alone: built once per shape
    (a live session's windows all share one), since rebuilding the filter and index arrays per
    call cost a worker a third of a millisecond per batch."""

    n_frames: int
    bounds: np.ndarray
    used: int
    first_slot: np.ndarray
    span: np.ndarray
    spec_len: int
    pitch_window: int
    n_fft: int
    hann: np.ndarray
    bands: np.ndarray
    scale: float
    resampler: tuple[int, int, np.ndarray] | None
    spec_starts: np.ndarray
    pitch_starts: np.ndarray


@functools.lru_cache(maxsize=32)
def _frame_plan(sr: int, n: int) -> _FramePlan:
    n_frames = frame_count(n, sr=sr)
    bounds = slot_bounds(n_frames, sr=sr)
    # Frame i spans slots j .. j + 2, j = clip(i - 1, 0, n_frames - 3).
    first_slot = np.clip(np.arange(n_frames) - 1, 0, n_frames - LEVEL_SLOTS)
    span = bounds[first_slot + LEVEL_SLOTS] - bounds[first_slot]
    rate = ANALYSIS_SR
    spec_len = round(SPECTRUM_FRAME_S * rate)
    window = round(PITCH_WINDOW_S * rate)
    _, tau_max = pitch_lags(sr=rate)
    pitch_len = window + tau_max + 1
    n_fft = sp_fft.next_fast_len(spec_len, real=True)
    hann = np.hanning(spec_len + 2)[1:-1].astype(np.float32)
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / rate)
    bands = np.stack([_band_matrix(freqs, *VOICE_BAND_HZ),
                      _band_matrix(freqs, *SYLLABLE_BAND_HZ)], axis=1).astype(np.float32)
    resampler = None if sr == rate else _resampler(sr)
    # Length of the signal at 8 kHz (resample_poly's output length).
    ny = n if resampler is None else -(-n * resampler[0] // resampler[1])
    plan = _FramePlan(
        n_frames=n_frames, bounds=bounds, used=int(bounds[-1]), first_slot=first_slot,
        span=span, spec_len=spec_len, pitch_window=window, n_fft=n_fft, hann=hann,
        bands=bands,
        # Hann-windowed power to mean-square units (Parseval, window-corrected).
        scale=float(2.0 / (n_fft * np.sum(hann.astype(np.float64) ** 2))),
        resampler=resampler,
        spec_starts=frame_starts(n_frames, rate=rate, n=ny, length=spec_len),
        pitch_starts=frame_starts(n_frames, rate=rate, n=ny, length=pitch_len))
    for arr in (bounds, first_slot, span, hann, bands, plan.spec_starts, plan.pitch_starts,
                *(() if resampler is None else (resampler[2],))):
        arr.flags.writeable = False  # shared by every call with this shape
    return plan


def _frame_features(x: np.ndarray, *, sr: int) -> FrameFeatures:
    rows, n = x.shape
    plan = _frame_plan(sr, n)
    n_frames, bounds, used = plan.n_frames, plan.bounds, plan.used
    first_slot, span = plan.first_slot, plan.span
    power = np.empty((rows, n_frames))
    zcr = np.empty((rows, n_frames))
    voice = np.empty((rows, n_frames))
    syl = np.empty((rows, n_frames))
    f0 = np.empty((rows, n_frames))
    aper = np.empty((rows, n_frames))
    step = max(1, min(_CHUNK_FRAMES // max(n_frames, 1), _CHUNK_SAMPLES // n))
    for r0 in range(0, rows, step):
        sl = slice(r0, min(rows, r0 + step))
        x64 = x[sl].astype(np.float64)
        xc = x64[:, :used]
        c = xc.shape[0]
        # Full band, at the input rate: sums per 10 ms slot, then per three slots.
        offsets = (bounds[:-1][None, :] + (np.arange(c) * used)[:, None]).ravel()
        slot_power = np.add.reduceat((xc * xc).ravel(), offsets).reshape(c, n_frames)
        signs = np.signbit(xc)
        flips = np.zeros((c, used), dtype=np.int8)
        flips[:, :-1] = signs[:, 1:] != signs[:, :-1]
        slot_flips = np.add.reduceat(flips.ravel(), offsets, dtype=np.int64).reshape(
            c, n_frames).astype(np.float64)
        power[sl] = _three_slots(slot_power, first_slot) / span
        zcr[sl] = _three_slots(slot_flips, first_slot) * (sr / (span - 1))

        # Voice band, syllable band and pitch at 8 kHz, in single precision (shares of power
        # and a normalised difference: float32 is ample, and its FFTs cost half).
        x32 = x[sl].astype(np.float32, copy=False)
        y = x32 if plan.resampler is None else _resample_rows(x32, plan.resampler)
        fr = _frames(y, plan.spec_starts, plan.spec_len)
        spec = sp_fft.rfft(fr * plan.hann, n=plan.n_fft, axis=2)
        p = spec.real**2 + spec.imag**2
        total = p.sum(axis=2)
        banded = p @ plan.bands
        voice[sl] = np.where(total > _TINY, banded[..., 0] / np.maximum(total, _TINY), 0.0)
        syl[sl] = banded[..., 1] * plan.scale
        f0[sl], aper[sl] = yin(y, starts=plan.pitch_starts, sr=ANALYSIS_SR,
                               window=plan.pitch_window)
    return FrameFeatures(sr=sr, power=power, level_db=power_to_dbfs(power), zcr_hz=zcr,
                         voice_band=voice, syllable_db=power_to_dbfs(syl), f0_hz=f0,
                         aperiodicity=aper)


def _three_slots(per_slot: np.ndarray, first_slot: np.ndarray) -> np.ndarray:
    out: np.ndarray = (per_slot[:, first_slot] + per_slot[:, first_slot + 1]
                       + per_slot[:, first_slot + 2])
    return out


def power_to_dbfs(power: np.ndarray) -> np.ndarray:
    """Mean square to dBFS with a full-scale sine (mean square 0.5) at 0 dB, floored at -120."""
    p = np.maximum(np.asarray(power, dtype=np.float64) * 2.0, 10.0 ** (LEVEL_FLOOR_DB / 10.0))
    out: np.ndarray = np.maximum(10.0 * np.log10(p), LEVEL_FLOOR_DB)
    return out


# -- aggregation ------------------------------------------------------------------------------

def _masked_quantiles(values: np.ndarray, mask: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Linear-interpolated quantiles of each row's masked values ``[shape=(len(qs), n_rows)]``;
    NaN for rows with nothing masked in. One sort for all of them."""
    big = np.finfo(np.float64).max / 4
    vals = np.sort(np.where(mask, values, big), axis=1)
    count = mask.sum(axis=1)
    last = np.maximum(count - 1, 0)
    out = np.empty((len(qs), values.shape[0]))
    for k, q in enumerate(qs):
        pos = q * last
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, last)
        a = np.take_along_axis(vals, lo[:, None], axis=1)[:, 0]
        b = np.take_along_axis(vals, hi[:, None], axis=1)[:, 0]
        out[k] = np.where(count > 0, a + (b - a) * (pos - lo), np.nan)
    return out


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=1)
    total = np.where(mask, values, 0.0).sum(axis=1)
    out: np.ndarray = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of True in each row: ``(row, start, length)`` arrays."""
    rows, n = mask.shape
    padded = np.zeros((rows, n + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    r_start, c_start = np.nonzero(edges == 1)
    _, c_end = np.nonzero(edges == -1)
    return r_start, c_start, c_end - c_start


def fold_octaves(f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Fold frames about an octave off their row's median f0 back onto it; frames still more
    than an octave away become NaN (unvoiced), as do NaN frames."""
    med = _masked_quantiles(np.where(voiced, f0, 0.0), voiced, (0.5,))[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        octaves = np.log2(f0 / med[:, None])
    up = np.abs(octaves - 1.0) < _OCTAVE_FOLD_TOLERANCE
    down = np.abs(octaves + 1.0) < _OCTAVE_FOLD_TOLERANCE
    folded = np.where(up, f0 / 2.0, np.where(down, f0 * 2.0, f0))
    with np.errstate(invalid="ignore", divide="ignore"):
        stray = np.abs(np.log2(folded / med[:, None])) > 1.0
    out: np.ndarray = np.where(stray, np.nan, folded)
    return out


def syllable_counts(envelope_db: np.ndarray, *, voiced: np.ndarray, speech: np.ndarray,
                    ) -> np.ndarray:
    """Syllable nuclei per row ``[shape=(n_rows,)]`` from the syllable-band envelope (dB).

    Nuclei are local maxima of the 30 ms-smoothed envelope (the largest within +-40 ms) in
    speech frames with a voiced frame within 30 ms, within 25 dB of the row's loudest voiced
    frame, that rise at least 3 dB above the lowest point since the previous candidate (the
    first candidate of a row may dip on either side). ``voiced`` and ``speech`` are boolean
    ``[shape=(n_rows, n_frames)]``.
    """
    rows, n = envelope_db.shape
    if n < 3:
        return np.zeros(rows, dtype=np.int64)
    env = uniform_filter1d(envelope_db, size=_SYLLABLE_SMOOTH, axis=1, mode="nearest")
    peak = maximum_filter1d(env, size=2 * _SYLLABLE_HALF_SPAN + 1, axis=1, mode="nearest")
    top = np.where(voiced, env, LEVEL_FLOOR_DB).max(axis=1, keepdims=True)
    near_voice = maximum_filter1d(voiced, size=2 * _SYLLABLE_VOICED_REACH + 1, axis=1,
                                  mode="constant") & speech
    cand = near_voice & (env >= peak) & (env >= top - _SYLLABLE_RANGE_DB)
    cand[:, 0] = cand[:, -1] = False
    flat_c = np.flatnonzero(cand)
    if flat_c.size == 0:
        return np.zeros(rows, dtype=np.int64)
    row_starts = np.arange(rows) * n
    bounds = np.union1d(row_starts, flat_c)
    seg_min = np.minimum.reduceat(env.ravel(), bounds)
    pos = np.searchsorted(bounds, flat_c)
    before = env.ravel()[flat_c] - seg_min[pos - 1]
    after = env.ravel()[flat_c] - seg_min[pos]
    first = np.isin(bounds[pos - 1], row_starts)
    keep = np.where(first, np.maximum(before, after), before) >= _SYLLABLE_DIP_DB
    out: np.ndarray = np.bincount(flat_c[keep] // n, minlength=rows)
    return out


def _per_row(events: np.ndarray) -> list[tuple[float, ...]]:
    """Times (s) of the True frames of each row ``[shape=(n_rows, n_frames)]``."""
    rows, cols = np.nonzero(events)
    cuts = np.searchsorted(rows, np.arange(1, events.shape[0]))
    return [tuple(round(c * FRAME_HOP_S, 6) for c in part.tolist())
            for part in np.split(cols, cuts)]


def summarize(feats: FrameFeatures, vad: np.ndarray, *, previously_active: np.ndarray,
              ) -> list[SpeechFeatures]:
    """Aggregate frame features and VAD decisions ``[shape=(n_rows, n_frames)]`` per window.

    ``previously_active [shape=(n_rows,)]``: whether each VAD was in speech before the window
    (decides whether frame 0 starts or stops speech).
    """
    rows, n = vad.shape
    vad = vad.astype(bool)
    periodic = np.isfinite(feats.f0_hz)
    f0 = fold_octaves(np.where(vad & periodic, feats.f0_hz, np.nan), vad & periodic)
    voiced = vad & np.isfinite(f0)
    n_voiced = voiced.sum(axis=1)
    n_speech = vad.sum(axis=1)
    min_voiced = min(round(MIN_SPEECH_S * FRAME_RATE_HZ), math.ceil(0.4 * n))
    is_speech = n_voiced >= max(min_voiced, 1)

    f0_fill = np.where(voiced, f0, 1.0)
    f0_mean = _masked_mean(f0_fill, voiced)
    f0_lo, f0_hi = _masked_quantiles(f0_fill, voiced, (0.05, 0.95))
    semis = 12.0 * np.log2(f0_fill)
    s_mean = _masked_mean(semis, voiced)
    s_var = _masked_mean((semis - np.nan_to_num(s_mean)[:, None]) ** 2, voiced)
    f0_std = np.sqrt(np.maximum(s_var, 0.0))

    loud_mask = np.where(n_speech[:, None] > 0, vad, True)
    loud = power_to_dbfs(_masked_mean(feats.power, loud_mask))

    counts = syllable_counts(feats.syllable_db, voiced=voiced, speech=vad)
    speech_s = n_speech * FRAME_HOP_S
    rate = counts / np.maximum(speech_s, FRAME_HOP_S)

    r_idx, _, r_len = _runs(~vad)
    long_run = r_len >= round(MIN_PAUSE_S * FRAME_RATE_HZ)
    pause_count = np.bincount(r_idx[long_run], minlength=rows)
    pause_frames = np.bincount(r_idx[long_run], weights=r_len[long_run], minlength=rows)
    longest = np.zeros(rows)
    np.maximum.at(longest, r_idx[long_run], r_len[long_run].astype(np.float64))

    before = np.concatenate((np.asarray(previously_active, dtype=bool)[:, None], vad[:, :-1]),
                            axis=1)
    starts = _per_row(vad & ~before)
    stops = _per_row(~vad & before)
    frames = vad.tolist()

    out: list[SpeechFeatures] = []
    for i in range(rows):
        sp = bool(is_speech[i])
        has_f0 = bool(n_voiced[i] > 0)
        out.append(SpeechFeatures(
            duration_s=n * FRAME_HOP_S,
            speech=sp,
            speech_ratio=float(n_speech[i] / n),
            voiced_ratio=float(n_voiced[i] / n),
            f0_mean_hz=float(f0_mean[i]) if has_f0 else None,
            f0_min_hz=float(f0_lo[i]) if has_f0 else None,
            f0_max_hz=float(f0_hi[i]) if has_f0 else None,
            f0_std_semitones=float(f0_std[i]) if has_f0 else None,
            loudness_dbfs=float(loud[i]),
            speaking_rate=float(rate[i]) if sp else None,
            pause_ratio=float(pause_frames[i] / n),
            longest_pause_s=float(longest[i] * FRAME_HOP_S),
            pause_count=int(pause_count[i]),
            vad_frames=tuple(frames[i]),
            speech_starts_s=starts[i],
            speech_stops_s=stops[i],
        ))
    return out


# -- entry points -----------------------------------------------------------------------------

def analyze_windows(x: np.ndarray, *, sr: int, vads: Sequence[Vad]) -> list[SpeechFeatures]:
    """Analyse one window per session: ``x [shape=(n_sessions, n)]`` float PCM at ``sr`` Hz.

    ``vads[i]`` is session ``i``'s voice-activity detector; its state advances by this window.
    The DSP is one vectorised computation over all rows; energy VADs decide together, others
    row by row. Returns one :class:`SpeechFeatures` per row, equal to what
    :func:`analyze_window` returns for that row alone.
    """
    from tonewire.analysis.vad import decide_all

    x = validate_windows(x, sr=sr)
    if len(vads) != x.shape[0]:
        raise ValueError(f"need one VAD per row: {x.shape[0]} rows, {len(vads)} VADs")
    feats = _frame_features(x, sr=sr)
    previously = np.array([v.active for v in vads], dtype=bool)
    decisions = decide_all(vads, feats, x)
    return summarize(feats, decisions, previously_active=previously)


def analyze_window(x: np.ndarray, *, sr: int, vad: Vad) -> SpeechFeatures:
    """Analyse one window ``x [shape=(n,)]`` of mono float PCM at ``sr`` Hz (8-48 kHz,
    0.25-10 s); ``vad`` is the session's detector, whose state advances by this window."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"a window must be [shape=(n,)], got shape {arr.shape}")
    return analyze_windows(arr[None, :], sr=sr, vads=[vad])[0]
