"""Session options, states and the public view of a session."""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SessionState(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


# Close codes of the ingest WebSocket (4000-4999 are the application's own).
CLOSE_SESSION_ENDED: Final = 4000
"""The session ended (by request or by the reaper) while the socket was open."""
CLOSE_UNKNOWN_SESSION: Final = 4004
"""No such session (or it has ended): as the original protocol."""
CLOSE_ALREADY_STREAMING: Final = 4009
"""Another ingest socket is already connected to this session."""
CLOSE_FRAME_TOO_LARGE: Final = 1009
"""A binary frame over the size limit (RFC 6455 "message too big")."""


class SessionOptions(BaseModel):
    """``POST /session/start`` body. Every field is optional."""

    model_config = ConfigDict(extra="forbid")

    window_ms: int = Field(default=1000, ge=250, le=10_000,
                           description="analysis window length")
    hop_ms: int | None = Field(default=None, ge=100, le=10_000,
                               description="time between windows (default: the window)")
    sample_rate: int = Field(default=16000, ge=8000, le=48000, description="PCM rate, Hz")
    elcor: bool = Field(default=False, description="subtext as a bracketed tone prefix")
    classifier: Literal["builtin", "sidecar"] = "builtin"
    vad: Literal["energy", "silero"] = "energy"
    min_confidence: float = Field(default=0.3, ge=0.0, le=1.0,
                                  description="tone events under this are not emitted")

    @model_validator(mode="after")
    def _hop(self) -> SessionOptions:
        if self.hop_ms is None:
            self.hop_ms = self.window_ms
        if self.hop_ms > self.window_ms:
            raise ValueError("hop_ms cannot exceed window_ms")
        return self

    @property
    def window_samples(self) -> int:
        return self.sample_rate * self.window_ms // 1000

    @property
    def hop_samples(self) -> int:
        return self.sample_rate * (self.hop_ms or self.window_ms) // 1000


def new_session_id() -> str:
    """128 random bits, URL-safe: no existence oracle by enumeration."""
    return secrets.token_urlsafe(16)


def session_stream(session_id: str) -> str:
    return f"session:{session_id}"


def session_view(row: dict[str, Any], *, live: dict[str, Any] | None = None) -> dict[str, Any]:
    opts = SessionOptions.model_validate_json(row["options"])
    out = {
        "session_id": row["id"],
        "state": row["state"],
        "elcor": opts.elcor,
        "options": opts.model_dump(),
        "created_at": row["created_at"],
        "ended_at": row["ended_at"],
        "end_reason": row["end_reason"],
        "samples": row["samples"],
        "seconds": row["samples"] / opts.sample_rate,
        "dropped_windows": row.get("dropped_windows") or 0,
    }
    if live is not None:
        out.update(live)
    return out
