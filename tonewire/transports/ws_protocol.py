"""uvicorn's websockets-sansio protocol, with two shortcuts for the live-ingest socket.

**Reads pause at a high-water mark, not per message.** The stock protocol pauses reading the
socket after *every* message it queues for the app and resumes when the app takes it: with one
ingest frame per 100 ms per socket, that is two ``epoll_ctl`` system calls (and their Python
around them) for every frame, which profiled as about a fifth of the event loop's time under a
few hundred live streams. Here reading pauses only once :data:`HIGH_WATER` messages wait for
the app (and resumes as before, when the app has taken them all): the app still applies
backpressure to a client that floods it, through a queue bounded by this mark plus what one
read carries, and a well-behaved client (one frame in flight) never pauses anything.

**A frame sink.** Through the ASGI queue, every ingest frame costs a queue put, a task
wake-up, the app's ``receive``, its ``send_text`` through Starlette's wrappers and uvicorn's
``send`` (about half of the event loop's time at 500 live streams). An app may instead
register a synchronous *frame sink* on its connection (:func:`set_frame_sink`, found through
the scope extension :data:`SINK_EXTENSION`): a callable that takes a binary message and
returns the text to answer with, or ``None`` for "not now". A binary message is handed to the
sink, and its answer written straight to the transport as one text frame, only when nothing
can be overtaken or lost:

- the app is parked in ``receive`` with nothing queued for it (so it holds no earlier message
  it has yet to answer, and once anything is queued, everything after it queues too until
  the app has drained the queue and waits again);
- the message is one final frame; the closing handshake has not started; the transport is
  open and not paused for writing (a client that does not read its answers is slowed down by
  the app's ``send`` as before); no extension (per-message deflate) is negotiated.

Otherwise, or when the sink answers ``None``, the message goes through the ASGI queue as
usual. Text, ping, pong and close frames always do. The bytes on the wire are those the app's
``send_text`` would have produced (:func:`~tonewire.transports.wsframe.ws_frame`).

This relies on uvicorn internals beyond the ASGI interface (0.54: ``handle_connect``,
``handle_bytes``, ``receive``, ``scope``, ``queue``, ``writable``, ``close_sent``,
``transport``, ``conn``) and on websockets' ``ServerProtocol.state`` and ``extensions``. They
are checked when a sink is registered: if any is missing, registration fails and the app keeps
to the ASGI path; under another server there is no extension and likewise nothing changes.
Pinned by ``tests/test_ingest_fastpath.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableMapping
from typing import Any, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.protocol import State

from tonewire.transports.wsframe import ws_frame

HIGH_WATER: Final = 8
"""Messages waiting for the app before reading the socket pauses."""
SINK_EXTENSION: Final = "tonewire.frame_sink"
"""Scope extension offering :meth:`WebSocketProtocol.set_frame_sink` as ``register``."""

FrameSink = Callable[[bytes | bytearray | memoryview], "str | None"]
"""A binary message in, the text to answer it with (or None: use the ASGI path) out."""

_NEEDED: Final = ("queue", "writable", "close_sent", "transport", "conn")


class WebSocketProtocol(WebSocketsSansIOProtocol):
    _frame_sink: FrameSink | None = None
    _app_waiting = False  # the app is parked in receive()

    def send_receive_event_to_app(self) -> None:
        paused = self.read_paused
        self.read_paused = True  # the base class pauses unless it believes it already has
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        if not self.read_paused and self.queue.qsize() >= HIGH_WATER:
            self.read_paused = True
            self.transport.pause_reading()

    # -- the frame sink ----------------------------------------------------------------------
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if isinstance(scope, dict) and not self.close_sent:  # an upgrade the app will see
            extensions = scope.get("extensions")
            if isinstance(extensions, dict):
                extensions[SINK_EXTENSION] = {"register": self.set_frame_sink}

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            # The offer in the scope (a bound method of this protocol) and the sink (which
            # holds the app's connection, and so the scope) make cycles: without them the
            # connection is freed by reference counting when it ends, not by the next full
            # collection, which frozen long-lived objects put off for minutes (gc_policy.py).
            self._frame_sink = None
            scope: Any = getattr(self, "scope", None)
            extensions = scope.get("extensions") if isinstance(scope, dict) else None
            if isinstance(extensions, dict):
                extensions.pop(SINK_EXTENSION, None)

    def set_frame_sink(self, sink: FrameSink | None) -> bool:
        """Register ``sink`` (None: unregister). False if this connection cannot take one."""
        if sink is None:
            self._frame_sink = None
            return True
        if not all(hasattr(self, a) for a in _NEEDED) or not hasattr(self.conn, "state") \
                or getattr(self.conn, "extensions", None) != [] \
                or not isinstance(self.queue, asyncio.Queue):
            return False
        self._frame_sink = sink
        return True

    def handle_bytes(self, event: Frame) -> None:
        sink = self._frame_sink
        if (sink is not None and self._app_waiting and event.fin and self.queue.empty()
                and not self.close_sent and self.conn.state is State.OPEN
                and self.writable.is_set() and not self.transport.is_closing()):
            try:
                answer = sink(event.data)
            except Exception:
                # As when the app raises: logged, and the connection dropped (the app's
                # receive then returns the disconnect, and it cleans up).
                self.logger.exception("Exception in WebSocket frame sink")
                self._frame_sink = None
                self.transport.close()
                return
            if answer is not None:
                self.transport.write(ws_frame(answer))
                return
        super().handle_bytes(event)

    async def receive(self) -> Any:
        self._app_waiting = True
        try:
            return await super().receive()
        finally:
            self._app_waiting = False


def set_frame_sink(scope: MutableMapping[str, Any], sink: FrameSink | None) -> bool:
    """Register (or with None, unregister) the connection's frame sink through the scope.
    False if the server offers none (another server or protocol, or internals changed)."""
    offer = (scope.get("extensions") or {}).get(SINK_EXTENSION)
    register = offer.get("register") if isinstance(offer, dict) else None
    return bool(register(sink)) if callable(register) else False
