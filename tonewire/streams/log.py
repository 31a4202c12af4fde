"""The stream log: append (persist, then publish) and follow (replay, then live).

One appender per stream at a time, by ownership: a job's stream is appended by the process
running the job, a live session's by the node holding its ingest. The counter of next seqs is
that ownership, cached in-process; a process taking a stream over (:meth:`StreamLog.take`)
continues from the store's last seq, and a process handing one off forgets its counter. The
store's primary key ``(stream, seq)`` is the fence: an appender that lost its ownership
without knowing (a stalled worker whose job was retried elsewhere) gets
:class:`StreamConflict` instead of writing a seq twice.

``follow`` is where "no gap, no duplicate" is made true: it subscribes to the bus *before*
reading the log, so every event is either in what it read or arrives on the bus afterwards;
bus events at or below what was already yielded are skipped, and a jump in ``seq`` (an event
the bus did not carry) is filled from the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.exc import IntegrityError

from tonewire.errors import TonewireError
from tonewire.store.database import Store
from tonewire.streams.bus import Bus, BusInterrupted
from tonewire.streams.event import StreamEvent


class StreamConflict(TonewireError):
    """Another process appended to this stream: this one no longer owns it."""

    code = "STREAM_CONFLICT"


class StreamLog:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.store = store
        self.bus = bus
        self._next_seq: dict[str, int] = {}
        self._cold = asyncio.Lock()

    async def append(self, stream: str, type: str, data: dict[str, Any], **also: Any
                     ) -> StreamEvent:
        """Append one event (see :meth:`append_many`)."""
        return (await self.append_many(stream, [(type, data)], **also))[0]

    async def append_many(self, stream: str, items: list[tuple[str, dict[str, Any]]],
                          **also: Any) -> list[StreamEvent]:
        """Persist events (in one transaction with ``also``, passed to the store), then
        publish them. Seqs are reserved before any await, so concurrent producers on one
        stream (a session's analysis, its warnings, its end) never collide."""
        if stream not in self._next_seq:
            async with self._cold:  # two producers must not both read the same last seq
                if stream not in self._next_seq:
                    self._next_seq[stream] = await self.store.last_seq(stream) + 1
        seq = self._next_seq[stream]
        events = [StreamEvent(stream=stream, seq=seq + i, type=t, data=d)
                  for i, (t, d) in enumerate(items)]
        # Reserve the seqs before awaiting: if this caller is cancelled while the store
        # commits (the write still happens, in the store's writer), the next append must not
        # reuse them. If the write fails, forget the counter and re-read it from the store.
        self._next_seq[stream] = seq + len(events)
        try:
            await self.store.append_events(events, **also)
        except IntegrityError as exc:
            self._next_seq.pop(stream, None)
            raise StreamConflict(f"seq {seq} of {stream} was taken by another process"
                                 ) from exc
        except Exception:
            self._next_seq.pop(stream, None)
            raise
        for ev in events:
            await self.bus.publish(ev)
        return events

    async def take(self, stream: str) -> int:
        """Become the stream's appender: continue from the store's last seq (returned), never
        from a counter cached before another process appended."""
        async with self._cold:
            last = await self.store.last_seq(stream)
            # Seqs this process reserved for writes still committing count as taken.
            self._next_seq[stream] = max(last + 1, self._next_seq.get(stream, 0))
        return last

    def forget(self, stream: str) -> None:
        """Drop the cached counter of a stream that has ended, been deleted, or been handed
        to another process (a queued job, a session whose ingest moved)."""
        self._next_seq.pop(stream, None)

    async def read(self, stream: str, *, after: int = 0, limit: int | None = None
                   ) -> list[StreamEvent]:
        return await self.store.read_events(stream, after=after, limit=limit)

    async def follow(self, stream: str, *, after: int = 0, maxsize: int = 1024,
                     heartbeat_s: float | None = None) -> AsyncIterator[StreamEvent | None]:
        """Every event after ``after``, in order, then live ones, forever (caller stops).

        Yields ``None`` after ``heartbeat_s`` seconds without an event. Raises
        :class:`~tonewire.streams.bus.SubscriberOverflow` when the live buffer overflows;
        the caller can follow again from the last ``seq`` it handled. A bus that lost its
        connection is followed again in place, from the log.
        """
        cursor = after
        while True:
            try:
                async with self.bus.subscribe(stream, maxsize=maxsize) as sub:
                    for ev in await self.read(stream, after=cursor):
                        yield ev
                        cursor = ev.seq
                    while True:
                        got = await sub.get(heartbeat_s)
                        if got is None:
                            if heartbeat_s is not None:
                                yield None
                            continue
                        ev = got
                        if ev.seq <= cursor:
                            continue
                        if ev.seq > cursor + 1:
                            for missed in await self.read(stream, after=cursor):
                                if missed.seq >= ev.seq:
                                    break
                                yield missed
                                cursor = missed.seq
                        yield ev
                        cursor = ev.seq
            except BusInterrupted:
                continue  # subscribe again; what the bus dropped is read from the log
