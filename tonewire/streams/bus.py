"""The bus carries new stream events to every subscriber in this process (and, with a
networked backend, between processes). It is chosen by URL; ``memory://`` is the default.

Like encode/broadcaster: ``async with bus.subscribe(stream) as sub`` guarantees the
unsubscribe. Each subscription has a bounded queue; a subscriber that falls behind is marked
overflowed and its reader gets :class:`SubscriberOverflow`, after which it resumes from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from tonewire.errors import TonewireError
from tonewire.streams.event import StreamEvent


class SubscriberOverflow(TonewireError):
    """The subscriber fell behind its bounded buffer; it must resume from the log."""

    code = "SUBSCRIBER_OVERFLOW"


class BusInterrupted(SubscriberOverflow):
    """The bus itself may have dropped events (a lost connection): not the subscriber's
    fault, so followers resume from the log in place."""

    code = "BUS_INTERRUPTED"


class Subscription:
    """One subscriber's bounded buffer of events for one stream."""

    def __init__(self, stream: str, *, maxsize: int) -> None:
        self.stream = stream
        self._queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(maxsize)
        self.overflowed = False
        self.interrupted = False

    def offer(self, event: StreamEvent) -> None:
        """Called by the bus: queue the event, or mark the subscriber as cut off."""
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            while not self._queue.empty():  # free the memory now; the log has everything
                self._queue.get_nowait()
            self._queue.put_nowait(event)  # wakes a waiting reader, which then sees overflow

    def cut_off(self) -> None:
        """A networked bus lost its connection and may have missed events: the reader gets
        :class:`BusInterrupted` and resumes from the log."""
        self.overflowed = self.interrupted = True
        self.nudge()

    def nudge(self) -> None:
        """Wake the reader without an event (``get`` returns ``None``)."""
        with contextlib.suppress(asyncio.QueueFull):  # full: events will wake the reader
            self._queue.put_nowait(None)

    async def get(self, timeout: float | None = None) -> StreamEvent | None:
        """The next event; ``None`` when nudged or after ``timeout`` seconds without one."""
        if timeout is None:
            event = await self._queue.get()
        else:
            try:
                event = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                return None
        if self.interrupted:
            raise BusInterrupted(f"the bus may have dropped events of {self.stream}")
        if self.overflowed:
            raise SubscriberOverflow(f"subscriber to {self.stream} fell behind")
        return event


class Bus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, event: StreamEvent) -> None: ...

    def subscribe(self, stream: str, *, maxsize: int = 1024
                  ) -> AbstractAsyncContextManager[Subscription]: ...


class MemoryBus:
    """In-process fan-out: the single-process default."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._subs.clear()

    async def publish(self, event: StreamEvent) -> None:
        self.deliver(event)

    def deliver(self, event: StreamEvent) -> None:
        for sub in tuple(self._subs.get(event.stream, ())):
            sub.offer(event)

    def subscriber_count(self, stream: str) -> int:
        return len(self._subs.get(stream, ()))

    def cut_off_all(self) -> None:
        """Cut off every subscriber (each resumes from the log): events may have been lost."""
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.cut_off()

    @asynccontextmanager
    async def subscribe(self, stream: str, *, maxsize: int = 1024
                        ) -> AsyncIterator[Subscription]:
        sub = Subscription(stream, maxsize=maxsize)
        self._subs.setdefault(stream, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(stream)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[stream]


def bus_from_url(url: str, *, namespace: str = "tonewire") -> Bus:
    """The bus for a URL: ``memory://`` (default, one process) or ``redis://`` /
    ``rediss://`` (between processes; ``namespace`` prefixes its channels)."""
    if url.startswith("memory://"):
        return MemoryBus()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from tonewire.streams.redis_bus import RedisBus  # lazy: the default install has no redis

        return RedisBus(url, namespace=namespace)
    raise TonewireError(f"unsupported bus URL {url!r}", code="INVALID_SETTING")
