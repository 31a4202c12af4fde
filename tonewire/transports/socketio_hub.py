"""Socket.IO: the original job protocol, delivered through rooms, with replay.

One :class:`RoomPump` per followed stream in this process is the room's only sender, so the
order of events is the stream's order. A new subscriber is admitted by the pump itself: it
replays the log from the subscriber's ``since`` up to what the room has already been sent,
then joins the room, with no await in between that could let an event slip past. Live events
go to the room once, not to each client in a loop.

Client events: ``subscribe {job_id, since?}`` -> ``subscribed {job_id}`` then the stream's
``progress``/``chunk``/``complete``/``error`` events (each with its ``seq`` and ``job_id``);
``unsubscribe {job_id}``. Bad payloads get an ``error`` event with a code; the connection stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import socketio

from tonewire.streams.bus import SubscriberOverflow
from tonewire.streams.event import StreamEvent
from tonewire.streams.log import StreamLog
from tonewire.transports.sse import payload

log = logging.getLogger(__name__)

JOB_TERMINAL: Final = frozenset({"complete", "error"})
_MAX_SINCE: Final = 2**53
_SLOW_CHECK_EVERY: Final = 16


class RoomPump:
    """Delivers one stream to its room, in order, and admits new members with a replay."""

    def __init__(self, hub: SocketHub, stream: str) -> None:
        self.hub = hub
        self.stream = stream
        self.room = stream
        self.members: set[str] = set()
        self._joins: list[tuple[str, int]] = []
        self._wake = asyncio.Event()
        self._sent = 0
        self._delivered: int | None = None
        """The last seq sent to the room (None before the first subscription)."""
        self.task = asyncio.create_task(self._run(), name=f"pump-{stream}")

    def admit(self, sid: str, since: int) -> None:
        self._joins.append((sid, since))
        self._wake.set()

    async def remove(self, sid: str) -> None:
        self.members.discard(sid)
        self._joins = [(s, since) for s, since in self._joins if s != sid]
        with contextlib.suppress(KeyError, ValueError):  # already gone from the server
            await self.hub.sio.leave_room(sid, self.room)
        self._wake.set()

    async def _run(self) -> None:
        sio, logs = self.hub.sio, self.hub.log
        try:
            while True:
                async with logs.bus.subscribe(self.stream, maxsize=self.hub.buffer) as sub:
                    # Every event after this point arrives on `sub`; everything up to it is
                    # in the log.
                    cursor = await logs.store.last_seq(self.stream)
                    if self._delivered is not None:  # back after a cut-off: fill the room in
                        for missed in await logs.read(self.stream, after=self._delivered):
                            if missed.seq > cursor:
                                break
                            await self._deliver(missed)
                    self._delivered = cursor
                    waker = asyncio.create_task(self._forward_wakes(sub))
                    try:
                        if await self._pump(sub, cursor, sio):
                            return
                    except SubscriberOverflow:
                        log.warning("room %s fell behind; resuming from the log", self.room)
                        continue  # resubscribe and carry on from the log
                    finally:
                        waker.cancel()
        finally:
            self.hub.pump_done(self)

    async def _forward_wakes(self, sub: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            sub.nudge()

    async def _pump(self, sub: Any, cursor: int, sio: socketio.AsyncServer) -> bool:
        """Run until there is nobody left to deliver to, or the stream has ended (True), or
        the buffer overflows."""
        logs = self.hub.log
        self._wake.set()
        ended = False
        while True:
            while self._joins:  # includes anyone who subscribed while the end was sent
                sid, since = self._joins.pop(0)
                try:
                    for ev in await logs.read(self.stream, after=since):
                        if ev.seq > cursor:
                            break
                        await sio.emit(ev.type, payload(ev), to=sid)
                    await sio.enter_room(sid, self.room)
                except (KeyError, ValueError):  # it left before its replay: skip it only
                    continue
                self.members.add(sid)
            if ended or not self.members:
                self.hub.pump_done(self)  # before any await: a new subscriber makes a new pump
                return True
            ev = await sub.get()
            if ev is None or ev.seq <= cursor:
                continue
            if ev.seq > cursor + 1:  # the bus skipped something: fill from the log
                for missed in await logs.read(self.stream, after=cursor):
                    if missed.seq >= ev.seq:
                        break
                    await self._deliver(missed)
            await self._deliver(ev)
            cursor = self._delivered = ev.seq
            ended = ev.type in self.hub.terminal  # nothing follows it

    async def _deliver(self, ev: StreamEvent) -> None:
        await self.hub.sio.emit(ev.type, payload(ev), room=self.room)
        self._sent += 1
        if self._sent % _SLOW_CHECK_EVERY == 0:
            await self._drop_slow_members()

    async def _drop_slow_members(self) -> None:
        """Disconnect members whose outgoing queue outgrew the buffer: a slow client must
        not hold the server's memory; it reconnects and resumes with ``since``."""
        for sid in list(self.members):
            if self.hub.queued_packets(sid) > self.hub.buffer:
                log.warning("disconnecting slow Socket.IO client %s on %s", sid, self.stream)
                self.members.discard(sid)
                await self.hub.sio.disconnect(sid)


class SocketHub:
    """Socket.IO handlers and the pumps of this process.

    ``resolve`` maps a subscribe payload to ``(stream, key)`` or raises ``LookupError``
    for an unknown target: the hub knows nothing of jobs or sessions.
    """

    def __init__(self, sio: socketio.AsyncServer, log: StreamLog, *, buffer: int,
                 resolve: Callable[[dict[str, Any]], Awaitable[tuple[str, str, str]]],
                 terminal: frozenset[str] = JOB_TERMINAL) -> None:
        self.sio = sio
        self.terminal = terminal
        self.log = log
        self.buffer = buffer
        self.resolve = resolve
        self.pumps: dict[str, RoomPump] = {}
        self.following: dict[str, dict[str, str]] = {}  # sid -> {key: stream}
        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        sio.on("subscribe", self.on_subscribe)
        sio.on("unsubscribe", self.on_unsubscribe)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        self.following[sid] = {}
        await self.sio.emit("connected", {"type": "connected", "job_id": ""}, to=sid)

    async def on_disconnect(self, sid: str, *_reason: Any) -> None:
        for stream in self.following.pop(sid, {}).values():
            pump = self.pumps.get(stream)
            if pump is not None:
                await pump.remove(sid)

    async def error(self, sid: str, code: str, message: str) -> None:
        await self.sio.emit("error", {"type": "error", "code": code, "message": message},
                            to=sid)

    async def on_subscribe(self, sid: str, data: Any = None) -> None:
        if not isinstance(data, dict):
            await self.error(sid, "INVALID_PAYLOAD", "subscribe takes an object: {job_id}")
            return
        since = data.get("since", 0)
        if since is None:
            since = 0
        if isinstance(since, bool) or not isinstance(since, int) or not 0 <= since <= _MAX_SINCE:
            await self.error(sid, "INVALID_SINCE", "since must be a non-negative integer seq")
            return
        try:
            stream, key_name, key = await self.resolve(data)
        except LookupError as exc:
            code, message = exc.args if len(exc.args) == 2 else ("NOT_FOUND", str(exc))
            await self.error(sid, code, message)
            return
        following = self.following.setdefault(sid, {})
        if stream in following.values():  # re-subscribing: start over from `since`
            pump = self.pumps.get(stream)
            if pump is not None:
                await pump.remove(sid)
        following[key] = stream
        await self.sio.emit("subscribed", {key_name: key}, to=sid)
        pump = self.pumps.get(stream)
        if pump is None or pump.task.done():
            pump = self.pumps[stream] = RoomPump(self, stream)
        pump.admit(sid, since)

    async def on_unsubscribe(self, sid: str, data: Any = None) -> None:
        if not isinstance(data, dict):
            await self.error(sid, "INVALID_PAYLOAD", "unsubscribe takes an object: {job_id}")
            return
        key = data.get("job_id") or data.get("session_id")
        stream = self.following.get(sid, {}).pop(key, None) if isinstance(key, str) else None
        if stream is not None and (pump := self.pumps.get(stream)) is not None:
            await pump.remove(sid)

    def member_count(self, stream: str) -> int:
        """Socket.IO clients following a stream in this process (the reaper asks)."""
        pump = self.pumps.get(stream)
        return len(pump.members) if pump is not None else 0

    def queued_packets(self, sid: str) -> int:
        """Packets waiting in a client's engine.io queue (0 if unknown)."""
        try:
            eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
            sock = self.sio.eio.sockets.get(eio_sid)
            return int(sock.queue.qsize()) if sock is not None else 0
        except (AttributeError, KeyError):  # engine.io internals moved: skip the check
            return 0

    def pump_done(self, pump: RoomPump) -> None:
        if self.pumps.get(pump.stream) is pump:
            del self.pumps[pump.stream]

    async def close(self) -> None:
        pumps = list(self.pumps.values())
        for p in pumps:
            p.task.cancel()
        await asyncio.gather(*(p.task for p in pumps), return_exceptions=True)
