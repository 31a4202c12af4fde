"""Server-Sent Events: a pure wire encoder, and the response that follows a stream.

Frames carry ``id:`` (the event's seq, so a browser's ``Last-Event-ID`` resumes exactly where
it stopped), ``event:`` (the type) and ``data:`` (the JSON payload). A comment line is sent as
a heartbeat when the stream is idle, so proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Collection
from typing import Any, Final

from tonewire.streams.bus import SubscriberOverflow
from tonewire.streams.event import StreamEvent
from tonewire.streams.log import StreamLog
from tonewire.transports.errors import ApiError

RETRY_MS: Final = 2000
_MAX_LAST_EVENT_ID: Final = 2**53
_DIGITS: Final = re.compile(r"[0-9]{1,16}")  # ASCII only: str.isdigit also takes "١٢"


def encode_event(*, data: str, event: str | None = None, id: int | str | None = None) -> bytes:
    """One SSE frame. Multi-line data becomes several ``data:`` lines, as the spec requires."""
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if event is not None:
        if "\n" in event or "\r" in event:
            raise ValueError("event names cannot contain newlines")
        lines.append(f"event: {event}")
    lines.extend(f"data: {part}" for part in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


def encode_comment(text: str) -> bytes:
    return "".join(f": {line}\n" for line in text.splitlines() or [""]).encode() + b"\n"


def encode_retry(ms: int) -> bytes:
    return f"retry: {ms}\n\n".encode()


def parse_last_event_id(value: str | None) -> int:
    """``Last-Event-ID`` as the seq to resume after: absent means from the start.

    Raises :class:`ApiError` 400 ``INVALID_LAST_EVENT_ID`` for anything but a non-negative
    integer (browsers send back exactly what we sent, so anything else is hand-made).
    """
    if value is None or value.strip() == "":
        return 0
    text = value.strip()
    if not _DIGITS.fullmatch(text) or int(text) > _MAX_LAST_EVENT_ID:
        raise ApiError(400, "INVALID_LAST_EVENT_ID",
                       "Last-Event-ID must be a non-negative integer event id")
    return int(text)


def payload(ev: StreamEvent) -> dict[str, Any]:
    """The wire payload of an event: its data plus its position."""
    return {**ev.data, "seq": ev.seq}


def payload_json(ev: StreamEvent) -> str:
    """:func:`payload` as compact JSON, spliced onto the data as the store encoded it (so
    an event is encoded once, not again for every subscriber)."""
    if "seq" in ev.data:  # no producer sends one; if one did, the position must win
        return json.dumps(payload(ev), separators=(",", ":"))
    data = ev.data_json()
    return f'{data[:-1]},"seq":{ev.seq}}}' if data != "{}" else f'{{"seq":{ev.seq}}}'


SHUTDOWN_FRAME: Final = encode_event(event="server-shutdown",
                                     data='{"type":"server-shutdown","reconnect":true}')


async def event_stream(log: StreamLog, stream: str, *, after: int, heartbeat_s: float,
                       terminal: Collection[str], maxsize: int,
                       stopping: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """SSE bytes for a stream from ``after``: replay, live events, heartbeats.

    Ends after a terminal event; when this subscriber falls behind its buffer; or when the
    server shuts down (a ``server-shutdown`` event without an id). In the last two cases the
    browser reconnects with ``Last-Event-ID`` and resumes from the log.
    """
    yield encode_retry(RETRY_MS)
    try:
        async for ev in log.follow(stream, after=after, maxsize=maxsize,
                                   heartbeat_s=heartbeat_s):
            if ev is not None:
                yield encode_event(id=ev.seq, event=ev.type, data=payload_json(ev))
                if ev.type in terminal:
                    return
            if stopping is not None and stopping.is_set():
                yield SHUTDOWN_FRAME
                return
            if ev is None:
                yield encode_comment("heartbeat")
    except SubscriberOverflow:
        yield encode_comment("too far behind: reconnect with Last-Event-ID")
