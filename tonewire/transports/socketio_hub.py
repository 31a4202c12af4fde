"""Socket.IO: the original job protocol, delivered through rooms, with replay.

One :class:`RoomPump` per followed stream in this process is the room's only sender, so the
order of events is the stream's order. A new subscriber is admitted by the pump itself: it
replays the log from the subscriber's ``since`` up to what the room has already been sent,
then joins the room, with no await in between that could let an event slip past. Each event
is encoded once per room (:mod:`tonewire.transports.sio_fanout`) and handed to each member's
connection without a task or coroutine per member; the pump yields to the event loop after
each event, so pings, other rooms and the job's own writes are served between events.

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
from tonewire.transports import sio_fanout
from tonewire.transports.sio_fanout import Encoded, Outlet
from tonewire.transports.sse import payload

log = logging.getLogger(__name__)

JOB_TERMINAL: Final = frozenset({"complete", "error"})
_MAX_SINCE: Final = 2**53
_SLOW_CHECK_EVERY: Final = 16
_ENCODED_KEPT: Final = 32  # newest encoded events a pump keeps (replays to a crowd joining)
FANOUT_MODES: Final = ("direct", "queue", "emit")


class RoomPump:
    """Delivers one stream to its room, in order, and admits new members with a replay."""

    def __init__(self, hub: SocketHub, stream: str) -> None:
        self.hub = hub
        self.stream = stream
        self.room = stream
        self.members: dict[str, Outlet | None] = {}  # None: reach it through sio.emit
        self._encoded: dict[int, Encoded] = {}
        self._joins: list[tuple[str, int]] = []
        self._wake = asyncio.Event()
        self._sent = 0
        self._delivered: int | None = None
        """The last seq sent to the room (None before the first subscription)."""
        self.task = asyncio.create_task(self._run(), name=f"pump-{stream}")

    @property
    def pending(self) -> list[tuple[str, int]]:
        return self._joins

    def admit(self, sid: str, since: int) -> None:
        self._joins.append((sid, since))
        self._wake.set()

    async def remove(self, sid: str) -> None:
        self.members.pop(sid, None)
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
                out = self.hub.outlet(sid)
                try:
                    for ev in await logs.read(self.stream, after=since):
                        if ev.seq > cursor:
                            break
                        if out is None:
                            await sio.emit(ev.type, payload(ev), to=sid)
                        elif not out.send(self._encode(ev), direct=self.hub.direct):
                            raise KeyError(sid)  # closed
                    await sio.enter_room(sid, self.room)
                except (KeyError, ValueError):  # it left before its replay: skip it only
                    continue
                self.members[sid] = out
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

    def _encode(self, ev: StreamEvent) -> Encoded:
        enc = self._encoded.get(ev.seq)
        if enc is None:
            enc = self._encoded[ev.seq] = Encoded(ev.type, payload(ev))
            if len(self._encoded) > _ENCODED_KEPT:
                del self._encoded[next(iter(self._encoded))]  # the oldest
        return enc

    async def _deliver(self, ev: StreamEvent) -> None:
        hub = self.hub
        if hub.mode == "emit":
            await hub.sio.emit(ev.type, payload(ev), room=self.room)
            hub.on_delivered("emit", len(self.members))
        else:
            enc, direct, gone = self._encode(ev), hub.direct, []
            counts = [0, 0, 0]  # closed, queued, direct
            for sid, out in tuple(self.members.items()):  # emit below may await
                if out is None:
                    await hub.sio.emit(ev.type, payload(ev), to=sid)  # rare: no outlet
                    continue
                how = out.send(enc, direct=direct)
                counts[how] += 1
                if how == sio_fanout.CLOSED:
                    gone.append(sid)  # its disconnect handler is on its way
            for sid in gone:
                self.members.pop(sid, None)
            if counts[sio_fanout.DIRECT]:
                hub.on_delivered("direct", counts[sio_fanout.DIRECT])
            if counts[sio_fanout.QUEUED]:
                hub.on_delivered("queued", counts[sio_fanout.QUEUED])
        self._sent += 1
        if self._sent % _SLOW_CHECK_EVERY == 0:
            await self._drop_slow_members()
        await asyncio.sleep(0)  # fairness: pings, other rooms, the producer, between events

    async def _drop_slow_members(self) -> None:
        """Cut off members whose outgoing queue outgrew the buffer: a slow client must not
        hold the server's memory; it reconnects and resumes with ``since``. (A member served
        directly has at most the transport's high-water mark unsent before its events go to
        the queue, so the queue is where falling behind shows.) Its backlog is dropped and
        its connection closed at once (:meth:`Outlet.cut_off`)."""
        for sid, out in list(self.members.items()):
            queued = out.backlog() if out is not None else self.hub.queued_packets(sid)
            if queued > self.hub.buffer:
                log.warning("disconnecting slow Socket.IO client %s on %s", sid, self.stream)
                self.members.pop(sid, None)
                self.hub.on_cut_off()
                if out is None or not out.cut_off():
                    await self.hub.sio.disconnect(sid)


class SocketHub:
    """Socket.IO handlers and the pumps of this process.

    ``resolve`` maps a subscribe payload to ``(stream, key)`` or raises ``LookupError``
    for an unknown target: the hub knows nothing of jobs or sessions.
    """

    def __init__(self, sio: socketio.AsyncServer, log: StreamLog, *, buffer: int,
                 resolve: Callable[[dict[str, Any]], Awaitable[tuple[str, str, str]]],
                 terminal: frozenset[str] = JOB_TERMINAL,
                 authorize: Callable[[dict[str, Any], Any], bool] = lambda _env, _auth: True,
                 has_room: Callable[[str], bool] = lambda _stream: True,
                 on_cut_off: Callable[[], None] = lambda: None,
                 fanout: str = "direct",
                 on_delivered: Callable[[str, int], None] = lambda _path, _n: None) -> None:
        if fanout not in FANOUT_MODES:
            raise ValueError(f"fanout must be one of {FANOUT_MODES}")
        if fanout != "emit" and not sio_fanout.install(sio):
            fanout = "queue"
        self.mode = fanout
        self.on_delivered = on_delivered
        self.direct = fanout == "direct"
        self.sio = sio
        self.authorize = authorize
        self.has_room = has_room
        self.on_cut_off = on_cut_off
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
        if not self.authorize(environ, auth):
            raise socketio.exceptions.ConnectionRefusedError(
                {"code": "UNAUTHORIZED", "message": "an API key is required: "
                 "auth={'token': KEY}, Authorization: Bearer KEY, or ?token=KEY"})
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
        elif not self.has_room(stream):
            await self.error(sid, "TOO_MANY_SUBSCRIBERS",
                             "this stream already has as many subscribers as it may")
            return
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
        return len(pump.members) + len(pump.pending) if pump is not None else 0

    def total_members(self) -> int:
        return sum(len(p.members) for p in self.pumps.values())

    async def announce_shutdown(self) -> None:
        """Tell every connected client the server is going away, then let them go: they
        reconnect (to this server restarted, or another) and resume with ``since``."""
        await self.sio.emit("server-shutdown", {"type": "server-shutdown", "reconnect": True})
        for sid in list(self.following):
            with contextlib.suppress(KeyError, ValueError):
                await self.sio.disconnect(sid)

    def outlet(self, sid: str) -> Outlet | None:
        return None if self.mode == "emit" else sio_fanout.outlet(self.sio, sid)

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
