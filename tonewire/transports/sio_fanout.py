"""Socket.IO room fan-out without per-member work beyond one write.

python-socketio's ``emit(room=...)`` encodes an event once, then creates one asyncio task per
member, each of which queues the packet on the member's engine.io socket; each socket's writer
task then wakes, and hands the packet to uvicorn, which frames it as a WebSocket message and
writes it. At 500 members and ~115 events a second that is ~57 000 tasks, wake-ups and frames a
second, about 45-65 us of server CPU per delivery on this project's 2-core machines (about
8 us the task per member, about 30 us the writer task and uvicorn's framing; see
``bench/README.md``, "Fan-out: where the time went"). The path below costs about 10 us,
most of it the ``send`` syscall.

Here an event is encoded once per room into an :class:`Encoded`: the engine.io packet (for the
members' queues) and, for WebSocket members, the finished WebSocket frame (server frames are not
masked, so the bytes are the same for every member). A member is then served by
:meth:`Outlet.send`, in order of preference:

1. **direct**: when its engine.io writer is idle (parked on an empty queue, so it holds no
   packet it has taken but not yet written) and its uvicorn connection is open and not paused,
   the frame is written to the connection's transport at once. Nothing is overtaken, so order
   is kept; a ping or any other packet that engine.io or python-socketio queues meanwhile is
   written by engine.io's writer as usual, and everything after it queues behind it.
2. **queued**: otherwise the pre-encoded packet goes on the member's engine.io queue, exactly
   as ``emit`` would have put it there (long polling, a connection that is paused because the
   client reads slowly, anything already waiting).

The bytes on the wire are the ones python-socketio and uvicorn would have sent: one text
frame per packet ``4`` + ``2["event",{...}]``. The direct path is taken only for connections
served by uvicorn's ``websockets-sansio`` implementation without per-message deflate on the
connection (an uncompressed frame is still valid with deflate, but we keep to what we tested);
anything else uses the queue. The engine.io socket learns its uvicorn connection from
:class:`TrackedWebSocket`, installed in place of engine.io's ASGI WebSocket wrapper by
:func:`install`.

What this relies on beyond public APIs, checked where it is used so that a change falls back
to the queue (or, if the engine.io socket itself cannot be found, to ``emit``): engine.io's
socket attributes ``queue``, ``closed``, ``closing``, ``upgraded``, ``upgrading`` and its
writer's ``queue.get()`` (``asyncio.Queue._getters`` tells that it is parked); uvicorn's
websockets-sansio protocol attributes ``transport``, ``writable`` (cleared while the transport
is paused), ``close_sent``, ``disconnected`` and ``conn``. Pinned by the tests in
``tests/test_socketio_fanout.py`` (same frames as ``emit``, order, cut-off, long-polling).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import engineio
import socketio
from engineio import packet as eio_packet
from engineio.async_drivers import asgi as eio_asgi
from socketio import packet as sio_packet

from tonewire.transports.eio_release import ReleasingWebSocket
from tonewire.transports.wsframe import ws_frame

log = logging.getLogger(__name__)

CLOSED: Final = 0
QUEUED: Final = 1
DIRECT: Final = 2
_PROTO_ATTR: Final = "_tonewire_ws_protocol"


class Encoded:
    """One Socket.IO event for the default namespace, encoded once for every member."""

    __slots__ = ("event", "frame", "packet", "size")

    def __init__(self, event: str, data: Any) -> None:
        encoded = socketio.packet.Packet(sio_packet.EVENT, data=[event, data],
                                         namespace="/").encode()
        if not isinstance(encoded, str):  # binary attachments: not used by our events
            raise ValueError("binary payloads are not supported by the room fan-out")
        self.event = event
        self.packet = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        text = self.packet.encode()  # cached on the packet: engine.io's writer reuses it
        self.frame = ws_frame(text)
        self.size = len(self.frame)


def _sansio_protocol(send: Any) -> Any:
    """The uvicorn websockets-sansio connection behind an ASGI ``send``, or None."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    proto = getattr(send, "__self__", None)
    if not isinstance(proto, WebSocketsSansIOProtocol):  # ours subclasses it (ws_protocol)
        return None
    needed = ("transport", "writable", "conn", "close_sent", "disconnected")
    if not all(hasattr(proto, a) for a in needed):
        return None
    if getattr(proto.conn, "extensions", None):  # per-message deflate negotiated
        return None
    return proto


class TrackedWebSocket(ReleasingWebSocket):
    """engine.io's ASGI WebSocket wrapper (as :mod:`~tonewire.transports.eio_release`
    installs it), which also tells the engine.io socket it serves which uvicorn connection it
    writes to (so that :class:`Outlet` can write to it)."""

    async def __call__(self, environ: dict[str, Any]) -> Any:
        sock = getattr(self.handler, "__self__", None)
        proto = _sansio_protocol(environ.get("asgi.send"))
        if sock is not None and proto is not None:
            setattr(sock, _PROTO_ATTR, proto)
        return await super().__call__(environ)


def install(sio: socketio.AsyncServer) -> bool:
    """Make ``sio``'s engine.io server use :class:`TrackedWebSocket` (this server only).
    False if engine.io is not in the ASGI mode this was written for."""
    if sio.packet_class is not socketio.packet.Packet:  # e.g. msgpack: let emit encode
        return False
    eio = sio.eio
    drivers = getattr(eio, "_async", None)
    if not isinstance(drivers, dict) or drivers.get("websocket") not in (eio_asgi.WebSocket,
                                                                         ReleasingWebSocket):
        log.warning("engine.io %s: not the ASGI driver; Socket.IO fan-out uses the queue",
                    getattr(engineio, "__version__", "?"))
        return False
    eio._async = {**drivers, "websocket": TrackedWebSocket}  # a copy: other servers untouched
    return True


def writer_idle(queue: Any) -> bool:
    """True if engine.io's writer is parked in ``queue.get()``: it holds no packet it has
    taken but not yet written (it takes everything queued at once, then writes it, possibly
    waiting for a paused connection in between), so a direct write overtakes nothing."""
    getters: Any = getattr(queue, "_getters", None)
    if not getters:
        return False
    return any(not g.done() for g in getters)


class Outlet:
    """One member's way in: its engine.io socket, and its uvicorn connection if any."""

    __slots__ = ("sock",)

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    @property
    def alive(self) -> bool:
        return not (self.sock.closed or self.sock.closing)

    def backlog(self) -> int:
        """Packets waiting in the member's engine.io queue."""
        return int(self.sock.queue.qsize())

    def send(self, ev: Encoded, *, direct: bool = True) -> int:
        """Deliver one encoded event in order: :data:`DIRECT`, :data:`QUEUED`, or
        :data:`CLOSED` (0) if the socket is closed."""
        sock = self.sock
        if sock.closed or sock.closing:
            return CLOSED
        queue = sock.queue
        if direct and queue.empty() and writer_idle(queue) and sock.upgraded \
                and not sock.upgrading:
            proto = getattr(sock, _PROTO_ATTR, None)
            if (proto is not None and proto.writable.is_set() and not proto.close_sent
                    and not proto.disconnected and not proto.transport.is_closing()):
                proto.transport.write(ev.frame)
                return DIRECT
        queue.put_nowait(ev.packet)
        return QUEUED


    def cut_off(self) -> bool:
        """Drop every packet waiting for this member and close its WebSocket connection at
        once (the client sees the connection drop, reconnects and resumes with ``since``).
        False if it has no WebSocket connection here: the caller disconnects it politely.

        Only the transport is closed: engine.io and python-socketio then see the connection
        end and clean up as for any dropped client. A polite ``disconnect`` would queue its
        packet behind the backlog it is meant to free, and never be read by a stuck client.
        """
        proto = getattr(self.sock, _PROTO_ATTR, None)
        if proto is None or proto.transport.is_closing():
            return False
        queue = self.sock.queue
        while not queue.empty():
            queue.get_nowait()
            queue.task_done()
        proto.transport.abort()
        return True


def outlet(sio: socketio.AsyncServer, sid: str) -> Outlet | None:
    """The outlet of a connected Socket.IO client (default namespace), or None."""
    try:
        eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
        sock = sio.eio.sockets.get(eio_sid) if eio_sid is not None else None
    except AttributeError:  # internals moved: the caller falls back to emit
        return None
    if sock is None or not hasattr(sock, "queue"):
        return None
    return Outlet(sock)
