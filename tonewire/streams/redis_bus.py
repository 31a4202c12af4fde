"""The bus on Redis pub/sub: stream events between server and worker processes.

Shaped like python-socketio's ``AsyncPubSubManager``: delivery to this process's subscribers
is the in-memory bus; this class adds only the cross-process part. One channel per stream
(``<namespace>:s:<stream>``), subscribed while this process has a subscriber to it, so a node
receives only the streams its clients follow.

- ``publish`` delivers locally at once and queues the event for Redis (a bounded outbox,
  pipelined by one task: events leave in append order). A process ignores its own echoes.
- ``subscribe`` returns once Redis has confirmed the channel: ``StreamLog.follow`` subscribes
  *before* reading the log, and an unconfirmed subscription could miss the stream's last event.
- Pub/sub is fire-and-forget; the store holds the log. When the connection drops, every local
  subscriber is cut off (:class:`~tonewire.streams.bus.BusInterrupted`) and resumes from the
  log, so a gap is never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from tonewire.errors import TonewireError
from tonewire.streams.bus import MemoryBus, Subscription
from tonewire.streams.event import StreamEvent

log = logging.getLogger(__name__)

_OUTBOX: Final = 8192
_BATCH: Final = 256
_SUBSCRIBE_TIMEOUT_S: Final = 10.0
_RETRY_S: Final = 0.5


class BusUnavailable(TonewireError):
    code = "BUS_UNAVAILABLE"


class RedisBus:
    def __init__(self, url: str, *, namespace: str = "tonewire") -> None:
        self.url = url
        self.namespace = namespace
        self.node = secrets.token_hex(8)
        """This process, so it can skip its own events coming back from Redis."""
        self._local = MemoryBus()
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(_OUTBOX)
        self._control: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        """(``subscribe`` | ``unsubscribe``, channel), in order; at most two per subscriber."""
        self._refs: dict[str, int] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._confirm: dict[str, deque[asyncio.Future[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def _channel(self, stream: str) -> str:
        return f"{self.namespace}:s:{stream}"

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        # Named, so an operator (and a test) can tell the bus's connections apart.
        self._redis = Redis.from_url(self.url, health_check_interval=30,
                                     client_name=f"tonewire-bus-{self.namespace}-{self.node}")
        self._pubsub = self._redis.pubsub()
        hello = f"{self.namespace}:bus"  # a first channel: the reader needs a connection
        fut = self._expect(hello)
        await self._pubsub.subscribe(hello)
        self._tasks = [asyncio.create_task(self._read_forever(), name="bus-reader"),
                       asyncio.create_task(self._publish_forever(), name="bus-publisher"),
                       asyncio.create_task(self._control_forever(), name="bus-control")]
        await asyncio.wait_for(fut, _SUBSCRIBE_TIMEOUT_S)

    async def close(self) -> None:
        # Let queued events reach Redis (bounded): a worker's last events must not be lost
        # to a clean shutdown.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.join(), 2.0)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        if self._redis is not None:
            await self._redis.aclose()
        await self._local.close()

    # -- the Bus protocol ------------------------------------------------------------------
    async def publish(self, event: StreamEvent) -> None:
        self._local.deliver(event)
        body = json.dumps([self.node, event.seq, event.type, event.data, event.ts],
                          separators=(",", ":"), allow_nan=False).encode()
        await self._outbox.put((self._channel(event.stream), body))  # full: backpressure

    @asynccontextmanager
    async def subscribe(self, stream: str, *, maxsize: int = 1024
                        ) -> AsyncIterator[Subscription]:
        async with self._local.subscribe(stream, maxsize=maxsize) as sub:
            channel = self._channel(stream)
            self._join(channel)
            try:
                try:
                    await asyncio.wait_for(asyncio.shield(self._ready[channel]),
                                           _SUBSCRIBE_TIMEOUT_S)
                except TimeoutError:
                    raise BusUnavailable("Redis did not confirm a subscription") from None
                yield sub
            finally:
                self._leave(channel)

    def subscriber_count(self, stream: str) -> int:
        return self._local.subscriber_count(stream)

    # -- channel bookkeeping (no await: callers may be cancelled at any point) ---------------
    def _expect(self, channel: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(channel, deque()).append(fut)
        return fut

    def _join(self, channel: str) -> None:
        refs = self._refs.get(channel, 0)
        self._refs[channel] = refs + 1
        if refs == 0:
            self._ready[channel] = self._expect(channel)
            self._control.put_nowait(("subscribe", channel))

    def _leave(self, channel: str) -> None:
        refs = self._refs.get(channel, 0) - 1
        if refs > 0:
            self._refs[channel] = refs
            return
        self._refs.pop(channel, None)
        self._ready.pop(channel, None)
        self._control.put_nowait(("unsubscribe", channel))

    # -- tasks -----------------------------------------------------------------------------
    async def _control_forever(self) -> None:
        assert self._pubsub is not None
        while True:
            op, channel = await self._control.get()
            while True:
                try:
                    if op == "subscribe":
                        await self._pubsub.subscribe(channel)
                    else:
                        await self._pubsub.unsubscribe(channel)
                    break
                except (RedisError, OSError) as exc:
                    log.warning("bus: %s %s failed (%s); retrying", op, channel, exc)
                    await asyncio.sleep(_RETRY_S)

    async def _read_forever(self) -> None:
        assert self._pubsub is not None
        while True:
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                log.warning("bus: lost Redis (%s); subscribers resume from the log", exc)
                self._cut_off_everyone()
                await asyncio.sleep(_RETRY_S)
                continue
            if msg is None:
                continue
            kind, channel = msg["type"], _text(msg["channel"])
            if kind == "message":
                self._on_message(channel, msg["data"])
            elif kind == "subscribe":
                waiting = self._confirm.get(channel)
                if waiting:
                    fut = waiting.popleft()
                    if not waiting:
                        del self._confirm[channel]
                    if not fut.done():
                        fut.set_result(None)

    def _on_message(self, channel: str, data: bytes) -> None:
        try:
            node, seq, type_, payload, ts = json.loads(data)
        except (ValueError, TypeError):
            log.warning("bus: ignoring a malformed message on %s", channel)
            return
        if node == self.node:
            return  # already delivered locally when it was published
        stream = channel.removeprefix(f"{self.namespace}:s:")
        self._local.deliver(StreamEvent(stream=stream, seq=int(seq), type=str(type_),
                                        data=payload, ts=float(ts)))

    def _cut_off_everyone(self) -> None:
        self._local.cut_off_all()
        for waiting in self._confirm.values():  # the cut-off subscribers will subscribe again
            for fut in waiting:
                if not fut.done():
                    fut.set_result(None)
        self._confirm.clear()

    async def _publish_forever(self) -> None:
        assert self._redis is not None
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < _BATCH:
                batch.append(self._outbox.get_nowait())
            while True:  # keep the batch until Redis takes it: dropping could lose an end
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for channel, body in batch:
                            pipe.publish(channel, body)
                        await pipe.execute()
                    break
                except (RedisError, OSError) as exc:
                    log.warning("bus: publishing failed (%s); retrying", exc)
                    await asyncio.sleep(_RETRY_S)
            for _ in batch:
                self._outbox.task_done()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
