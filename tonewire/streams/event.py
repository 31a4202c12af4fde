"""The event envelope ``{stream, seq, type, data, ts}``."""

from __future__ import annotations

import json
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
    _data_json: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def stored(cls, *, stream: str, seq: int, type: str, data_json: str, ts: float
               ) -> StreamEvent:
        """An event read back from the store, its data still as the JSON it was stored as."""
        ev = cls(stream=stream, seq=seq, type=type, data=json.loads(data_json), ts=ts)
        object.__setattr__(ev, "_data_json", data_json)
        return ev

    def data_json(self) -> str:
        """``data`` as compact JSON, encoded once: the store and every subscriber's wire
        format share it (one event can have hundreds of subscribers)."""
        encoded = self._data_json
        if encoded is None:
            encoded = json.dumps(self.data, separators=(",", ":"), allow_nan=False)
            object.__setattr__(self, "_data_json", encoded)  # a cache: equality ignores it
        return encoded


def job_stream(job_id: str) -> str:
    return f"job:{job_id}"
