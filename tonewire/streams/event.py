"""The event envelope ``{stream, seq, type, data, ts}``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class StreamEvent:
    stream: str
    """The stream's id: ``job:<job id>`` or ``session:<session id>``."""
    seq: int
    """Position in the stream, counting from 1 with no gaps."""
    type: str
    data: dict[str, Any]
    ts: float = field(default_factory=time.time)
    """Wall-clock time of the append, seconds since the epoch."""


def job_stream(job_id: str) -> str:
    return f"job:{job_id}"
