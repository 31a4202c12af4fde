"""The builtin classifier: tonewire's own speech analysis and tone interpretation.

The DSP (framing, pitch, voice activity) runs in worker processes through the
:class:`~tonewire.sessions.batcher.WindowBatcher`, batched across sessions. Each session's
state (its voice-activity detector and its tone tracker: rolling baseline, hysteresis) lives
in the worker the session is pinned to, so a window comes back as its finished events and the
event loop only appends them (the tracker's small numpy steps were a tenth of the event
loop's time under a few hundred streams).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tonewire.sessions.batcher import WindowBatcher
from tonewire.sessions.buffer import DueWindow
from tonewire.sessions.classifier import WindowEvents
from tonewire.sessions.model import SessionOptions

if TYPE_CHECKING:  # the analysis (scipy) is imported in the workers, not by the server
    from tonewire.analysis.tone import ToneTracker


@dataclass
class WorkerSession:
    """What a session keeps in its worker: its voice-activity detector and tone tracker."""

    vad: Any
    tracker: ToneTracker


def session_spec(options: SessionOptions) -> str:
    """How a worker makes a session's state (sent with every window, parsed once)."""
    return json.dumps({"vad": options.vad, "min_confidence": options.min_confidence,
                       "elcor": options.elcor})


def make_session(spec: str) -> WorkerSession:
    from tonewire.analysis.tone import ToneTracker

    opts = json.loads(spec)
    return WorkerSession(vad=make_vad(opts["vad"]),
                         tracker=ToneTracker(min_confidence=opts["min_confidence"],
                                             elcor=opts["elcor"]))


class SessionRegistry:
    """Worker-side session state (voice-activity detector and tone tracker), one per
    session, created on first use.

    Detectors keep state across windows and some (Silero's native model) cannot be pickled,
    so they live in the worker that each session is pinned to; the tone tracker (rolling
    baseline, hysteresis) lives beside it, so a window's events are complete when they leave
    the worker and the event loop only appends them. Least recently used sessions are dropped
    past ``capacity`` (a session that comes back simply starts afresh)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._sessions: OrderedDict[str, WorkerSession] = OrderedDict()

    def get(self, key: str, spec: str) -> WorkerSession:
        state = self._sessions.pop(key, None)
        if state is None:
            state = make_session(spec)
        self._sessions[key] = state
        while len(self._sessions) > self.capacity:
            self._sessions.popitem(last=False)
        return state

    def forget(self, keys: list[str]) -> None:
        for key in keys:
            self._sessions.pop(key, None)


_REGISTRY = SessionRegistry()  # per worker process: the state of the sessions pinned to it


def speech_batch(x: np.ndarray, sr: int, keys: list[str], specs: list[str],
                 spans: list[Any]) -> list[Any]:
    """Worker-side: analyse ``x [shape=(n, window)]`` (float32 in [-1, 1), or PCM16), each row
    with its session's state; ``spans[i]`` is row ``i``'s ``(start_sample, end_sample)``.
    Returns each row's events, ``[(type, data), ...]``, in order."""
    from tonewire.analysis.speech import analyze_windows

    if x.dtype == np.int16:
        x = x.astype(np.float32) / np.float32(32768.0)
    states = [_REGISTRY.get(k, s) for k, s in zip(keys, specs, strict=True)]
    feats = analyze_windows(x, sr=sr, vads=[st.vad for st in states])
    return [window_events(f, st.tracker, sr=sr, span=span)
            for f, st, span in zip(feats, states, spans, strict=True)]


def window_events(feats: Any, tracker: ToneTracker, *, sr: int, span: tuple[int, int]
                  ) -> list[tuple[str, dict[str, Any]]]:
    """A window's events from its speech features: ``vad-event``s in time order, then the
    ``tone-event`` if the tracker has something to say."""
    start_sample, end_sample = span
    t0 = start_sample / sr
    events: list[tuple[str, dict[str, Any]]] = []
    for start in feats.speech_starts_s:
        events.append(("vad-event", {"speech": True, "timestamp": round(t0 + start, 3)}))
    for stop in feats.speech_stops_s:
        events.append(("vad-event", {"speech": False, "timestamp": round(t0 + stop, 3)}))
    events.sort(key=lambda e: float(e[1]["timestamp"]))
    reading = tracker.update(feats)
    if reading is not None:
        events.append(("tone-event", {
            "label": reading.label, "confidence": round(reading.confidence, 4),
            "speaker_id": None, "shift_magnitude": round(reading.shift_magnitude, 4),
            "timestamp": round(t0, 3), "subtext": reading.subtext,
            "affect": reading.affect, "shift_direction": reading.shift_direction,
            "prosody_flags": list(reading.prosody_flags),
            "end_time": round(end_sample / sr, 3),
            "warmed_up": reading.warmed_up,
            "features": _features(feats)}))
    return events


def forget_sessions(keys: list[str]) -> None:
    _REGISTRY.forget(keys)


def warm_up_speech(rows: int) -> None:
    """Worker-side, at start: analyse ``rows`` windows of a synthetic voice in the default
    shape (one second at 16 kHz) and forget them, so the first batches of live sessions do
    not pay for scipy's first calls or for growing the heap (see ``heap_policy``)."""
    opts = SessionOptions()
    sr, n = opts.sample_rate, opts.window_samples
    t = np.arange(n) / sr
    voice = sum(np.sin(2 * np.pi * 150.0 * k * t) / k for k in range(1, 6))
    noise = np.random.default_rng(0).standard_normal((rows, n))
    x = (3000.0 * (voice + 0.1 * noise)).astype(np.int16)
    keys = [f"warm-up-{i}" for i in range(rows)]
    speech_batch(x, sr, keys, [session_spec(opts)] * rows, [(0, n)] * rows)
    forget_sessions(keys)


def make_vad(kind: str) -> Any:
    from tonewire.analysis import vad

    return vad.SileroVad() if kind == "silero" else vad.EnergyVad()


class BuiltinClassifier:
    def __init__(self, session_id: str, options: SessionOptions, *,
                 batcher: WindowBatcher) -> None:
        self.session_id = session_id
        self.options = options
        self.batcher = batcher
        self.spec = session_spec(options)
        if options.vad == "silero":
            make_vad("silero")  # fail at start (VAD_UNAVAILABLE), not in every window

    async def readiness(self) -> dict[str, Any]:
        return {"status": "ready", "service": "builtin",
                "message": f"builtin speech analysis ({self.options.vad} voice activity)"}

    async def classify(self, win: DueWindow) -> WindowEvents:
        events = await self.batcher.analyze(win.rows, sr=self.options.sample_rate,
                                            key=self.session_id, spec=self.spec,
                                            span=(win.start_sample, win.end_sample))
        return WindowEvents(events=events)

    async def close(self) -> None:
        self.batcher.forget(self.session_id)


def _features(f: Any) -> dict[str, Any]:
    """The measurements behind a tone reading, for meters and for checking the label."""
    def r(v: float | None, nd: int = 2) -> float | None:
        return None if v is None else round(float(v), nd)

    return {"f0_mean_hz": r(f.f0_mean_hz, 1), "f0_min_hz": r(f.f0_min_hz, 1),
            "f0_max_hz": r(f.f0_max_hz, 1), "f0_std_semitones": r(f.f0_std_semitones),
            "loudness_dbfs": r(f.loudness_dbfs), "speaking_rate": r(f.speaking_rate),
            "voiced_ratio": r(f.voiced_ratio, 3), "pause_ratio": r(f.pause_ratio, 3),
            "longest_pause_s": r(f.longest_pause_s, 3)}
