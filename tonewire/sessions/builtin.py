"""The builtin classifier: tonewire's own speech analysis and tone interpretation.

The DSP (framing, pitch, voice activity) runs in worker processes through the
:class:`~tonewire.sessions.batcher.WindowBatcher`, batched across sessions; each session's
voice-activity detector travels with its window and comes back advanced. The tone tracker
(rolling baseline, hysteresis) is small and O(1) per window, so it stays in this process.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from tonewire.sessions.batcher import WindowBatcher
from tonewire.sessions.buffer import DueWindow
from tonewire.sessions.classifier import WindowEvents
from tonewire.sessions.model import SessionOptions


class VadRegistry:
    """Worker-side voice-activity detectors, one per session, created on first use.

    Detectors keep state across windows and some (Silero's native model) cannot be pickled,
    so they live in the worker that each session is pinned to. Least recently used ones are
    dropped past ``capacity`` (a session that comes back simply starts a fresh detector)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._vads: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str, spec: str) -> Any:
        vad = self._vads.pop(key, None)
        if vad is None:
            vad = make_vad(spec)
        self._vads[key] = vad
        while len(self._vads) > self.capacity:
            self._vads.popitem(last=False)
        return vad

    def forget(self, keys: list[str]) -> None:
        for key in keys:
            self._vads.pop(key, None)


_REGISTRY = VadRegistry()  # per worker process: the state of the sessions pinned to it


def speech_batch(x: np.ndarray, sr: int, keys: list[str], specs: list[str]) -> list[Any]:
    """Worker-side: analyse ``x [shape=(n, window)]``, each row with its session's VAD."""
    from tonewire.analysis.speech import analyze_windows

    vads = [_REGISTRY.get(k, s) for k, s in zip(keys, specs, strict=True)]
    return list(analyze_windows(x, sr=sr, vads=vads))


def forget_sessions(keys: list[str]) -> None:
    _REGISTRY.forget(keys)


def make_vad(kind: str) -> Any:
    from tonewire.analysis import vad

    return vad.SileroVad() if kind == "silero" else vad.EnergyVad()


class BuiltinClassifier:
    def __init__(self, session_id: str, options: SessionOptions, *,
                 batcher: WindowBatcher) -> None:
        from tonewire.analysis.tone import ToneTracker

        self.session_id = session_id
        self.options = options
        self.batcher = batcher
        if options.vad == "silero":
            make_vad("silero")  # fail at start (VAD_UNAVAILABLE), not in every window
        self.tracker = ToneTracker(min_confidence=options.min_confidence, elcor=options.elcor)

    async def readiness(self) -> dict[str, Any]:
        return {"status": "ready", "service": "builtin",
                "message": f"builtin speech analysis ({self.options.vad} voice activity)"}

    async def classify(self, win: DueWindow) -> WindowEvents:
        sr = self.options.sample_rate
        feats = await self.batcher.analyze(win.samples, sr=sr, key=self.session_id,
                                           spec=self.options.vad)
        t0 = win.start_sample / sr
        out = WindowEvents()
        for start in feats.speech_starts_s:
            out.events.append(("vad-event", {"speech": True, "timestamp": round(t0 + start, 3)}))
        for stop in feats.speech_stops_s:
            out.events.append(("vad-event", {"speech": False, "timestamp": round(t0 + stop, 3)}))
        out.events.sort(key=lambda e: float(e[1]["timestamp"]))
        reading = self.tracker.update(feats)
        if reading is not None:
            out.events.append(("tone-event", {
                "label": reading.label, "confidence": round(reading.confidence, 4),
                "speaker_id": None, "shift_magnitude": round(reading.shift_magnitude, 4),
                "timestamp": round(t0, 3), "subtext": reading.subtext,
                "affect": reading.affect, "shift_direction": reading.shift_direction,
                "prosody_flags": list(reading.prosody_flags),
                "end_time": round(win.end_sample / sr, 3),
                "warmed_up": reading.warmed_up,
                "features": _features(feats)}))
        return out

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
