"""The builtin classifier: tonewire's own speech analysis and tone interpretation.

The DSP (framing, pitch, voice activity) runs in worker processes through the
:class:`~tonewire.sessions.batcher.WindowBatcher`, batched across sessions; each session's
voice-activity detector travels with its window and comes back advanced. The tone tracker
(rolling baseline, hysteresis) is small and O(1) per window, so it stays in this process.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tonewire.sessions.batcher import WindowBatcher
from tonewire.sessions.buffer import DueWindow
from tonewire.sessions.classifier import WindowEvents
from tonewire.sessions.model import SessionOptions


def speech_batch(x: np.ndarray, sr: int, vads: list[Any]) -> list[tuple[Any, Any]]:
    """Worker-side: analyse ``x [shape=(n, window)]`` with each row's VAD."""
    from tonewire.analysis.speech import analyze_windows

    feats = analyze_windows(x, sr=sr, vads=vads)
    return list(zip(feats, vads, strict=True))


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
        self.vad = make_vad(options.vad)
        self.tracker = ToneTracker(min_confidence=options.min_confidence, elcor=options.elcor)

    async def readiness(self) -> dict[str, Any]:
        return {"status": "ready", "service": "builtin",
                "message": f"builtin speech analysis ({self.options.vad} voice activity)"}

    async def classify(self, win: DueWindow) -> WindowEvents:
        sr = self.options.sample_rate
        feats, self.vad = await self.batcher.analyze(win.samples, sr=sr, vad_state=self.vad)
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
        return None


def _features(f: Any) -> dict[str, Any]:
    """The measurements behind a tone reading, for meters and for checking the label."""
    def r(v: float | None, nd: int = 2) -> float | None:
        return None if v is None else round(float(v), nd)

    return {"f0_mean_hz": r(f.f0_mean_hz, 1), "f0_min_hz": r(f.f0_min_hz, 1),
            "f0_max_hz": r(f.f0_max_hz, 1), "f0_std_semitones": r(f.f0_std_semitones),
            "loudness_dbfs": r(f.loudness_dbfs), "speaking_rate": r(f.speaking_rate),
            "voiced_ratio": r(f.voiced_ratio, 3), "pause_ratio": r(f.pause_ratio, 3),
            "longest_pause_s": r(f.longest_pause_s, 3)}
