"""Classifier backends: what turns a session's window into events.

``builtin`` runs tonewire's own speech and tone analysis (batched across sessions in worker
processes); ``sidecar`` posts each window to an external service, as the original did, but
through one pooled HTTP client per sidecar with timeouts, and a failing sidecar only ever
produces ``service-event`` warnings: it never ends the session.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import httpx
import numpy as np

from tonewire.sessions.buffer import DueWindow
from tonewire.sessions.model import SessionOptions

SIDECAR_EVENT_TYPES: Final = {"tone": "tone-event", "transcript": "transcript-event",
                              "speaker": "speaker-event"}


@dataclass
class WindowEvents:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """``(type, data)`` pairs; the service adds ``session_id``."""
    warnings: list[str] = field(default_factory=list)


class Classifier(Protocol):
    async def readiness(self) -> dict[str, Any]:
        """``{"status": "ready" | "error" | "warning", "service": ..., "message": ...}``."""
        ...

    async def classify(self, win: DueWindow) -> WindowEvents: ...

    async def close(self) -> None: ...


ClassifierFactory = Callable[[str, SessionOptions], Classifier]


def pcm16(samples: np.ndarray) -> bytes:
    """float32 [-1, 1) back to little-endian PCM16 (for the sidecar's wire format only)."""
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()


class SidecarClassifier:
    """POST ``{url}/classify`` ``{audio_b64, sample_rate, timestamp, session_id}``; the
    response ``{"events": [{"event_type", "label", "confidence", "timestamp",
    "speaker_id", ...}]}`` becomes ``tone-event``, ``transcript-event``, ``speaker-event``."""

    def __init__(self, session_id: str, options: SessionOptions, *, client: httpx.AsyncClient,
                 url: str | None) -> None:
        self.session_id = session_id
        self.options = options
        self.client = client
        self.url = url.rstrip("/") if url else None

    async def readiness(self) -> dict[str, Any]:
        base = {"service": "sidecar"}
        if self.url is None:
            return {**base, "status": "error", "message": "no sidecar is configured"}
        try:
            r = await self.client.get(f"{self.url}/health")
        except httpx.HTTPError as exc:
            return {**base, "status": "error", "message": f"sidecar unreachable: {exc}"}
        if r.status_code >= 400:
            return {**base, "status": "warning",
                    "message": f"sidecar health returned {r.status_code}"}
        return {**base, "status": "ready", "message": "sidecar ready"}

    async def classify(self, win: DueWindow) -> WindowEvents:
        if self.url is None:
            return WindowEvents(warnings=["no sidecar is configured"])
        ts = win.start_sample / self.options.sample_rate
        body = {"audio_b64": base64.b64encode(pcm16(win.samples)).decode("ascii"),
                "sample_rate": self.options.sample_rate, "timestamp": ts,
                "session_id": self.session_id}
        try:
            r = await self.client.post(f"{self.url}/classify", json=body)
            r.raise_for_status()
            items = r.json().get("events", [])
            if not isinstance(items, list):
                raise ValueError("'events' is not a list")
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            return WindowEvents(warnings=[f"sidecar failed: {type(exc).__name__}: {exc}"[:300]])
        out = WindowEvents()
        for item in items:
            if not isinstance(item, dict):
                continue
            etype = SIDECAR_EVENT_TYPES.get(str(item.get("event_type")))
            if etype is None:
                continue
            data = {k: v for k, v in item.items() if k != "event_type"}
            data.setdefault("timestamp", ts)
            data.setdefault("speaker_id", None)
            if etype == "tone-event":
                try:
                    confidence = float(data.get("confidence", 0.0))
                except (TypeError, ValueError):
                    continue
                if confidence < self.options.min_confidence:
                    continue
                data["confidence"] = confidence
                for key, default in (("shift_magnitude", 0.0), ("shift_direction", "stable"),
                                     ("prosody_flags", []), ("subtext", ""), ("affect", None)):
                    data.setdefault(key, default)
            out.events.append((etype, data))
        return out

    async def close(self) -> None:
        return None  # the client is shared by every session of this sidecar
