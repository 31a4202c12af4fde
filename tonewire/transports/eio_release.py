"""engine.io connections freed by reference counting as they end.

The server freezes what survives a full garbage collection (``gc_policy.py``): a reference cycle
that runs through a long-lived object is then found only by the complete collection every
``TONEWIRE_GC_FULL_INTERVAL_S`` (10 minutes). engine.io's ASGI driver ties each Socket.IO
connection into two such cycles, so every connection that ended kept its uvicorn protocol
(transport, buffers, scope, queue) for minutes:

- **its request body**: ``translate_request`` defines a new ``AwaitablePayload`` class per
  request, whose ``read`` closes over the connection's ``receive``; a class is always in a
  cycle (it is in its own MRO), and the request's environ keeps it as long as the connection.
  :func:`install` swaps it for a :class:`RequestBody`, one module-level class with the same
  ``read``, before engine.io sees the environ, and the per-request class (garbage at once,
  which the young collections free) is left holding nothing of the connection;
- **its read loop's last error**: at a disconnect the driver's ``wait`` raises ``OSError``,
  which engine.io's read task keeps with a traceback through the frame awaiting that task.
  :class:`ReleasingWebSocket` answers None instead once the read loop runs, which engine.io
  takes as "closed by client", as it does the error; during the upgrade handshake the error
  is raised as before (engine.io expects it there).

Relies on engine.io's ASGI driver (``_async`` with ``translate_request`` and ``websocket``;
the payload's ``event`` and ``payload``; the socket's ``upgraded``), checked by
:func:`install`, which changes nothing when they differ. Pinned by
``tests/test_session_memory.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import engineio
from engineio.async_drivers import asgi as eio_asgi

log = logging.getLogger(__name__)

Translate = Callable[[Any, Any, Any], Awaitable[dict[str, Any]]]


class RequestBody:
    """A request's body as engine.io reads it (``await environ["wsgi.input"].read(n)``): the
    first ASGI event, then the rest from ``receive`` on the first read; what its own
    ``AwaitablePayload`` does, without a class per request."""

    __slots__ = ("_http", "_receive", "event", "payload")

    def __init__(self, event: dict[str, Any], receive: Callable[[], Awaitable[Any]]) -> None:
        self.event = event
        self.payload: bytes | None = None
        self._receive = receive
        self._http = event.get("type") == "http.request"

    async def read(self, length: int | None = None) -> bytes | None:
        if self.payload is None and self._http:
            self.payload = self.event.get("body") or b""
            while self.event.get("more_body"):
                self.event = await self._receive()
                if self.event["type"] == "http.request" and (
                        length is None or len(self.payload) < length):
                    self.payload += self.event.get("body") or b""
        if length is None:
            out, self.payload = self.payload, b""
            return out
        data = self.payload or b""
        out, self.payload = data[:length], data[length:]
        return out


def releasing_translate(translate: Translate) -> Translate:
    """engine.io's ``translate_request`` with its per-request body swapped for a
    :class:`RequestBody` (left alone if it is not the payload this was written for)."""
    async def translate_request(scope: Any, receive: Any, send: Any) -> dict[str, Any]:
        # engine.io's class closes over the ``receive`` it is given: give it one that lets go
        # of the connection once the environ is made.
        target = [receive]

        async def relay() -> Any:
            return await target[0]()

        environ = await translate(scope, relay, send)
        if environ.get("asgi.receive") is relay:
            environ["asgi.receive"] = receive
        body = environ.get("wsgi.input")
        event = getattr(body, "event", None)
        if isinstance(event, dict) and getattr(body, "payload", False) is None:
            environ["wsgi.input"] = RequestBody(event, receive)
            target.clear()
        return environ
    return translate_request


class ReleasingWebSocket(eio_asgi.WebSocket):  # type: ignore[misc]
    """engine.io's ASGI WebSocket wrapper whose ``wait`` answers None for a disconnect once
    the socket is upgraded (see the module's docstring)."""

    async def wait(self) -> Any:
        try:
            return await super().wait()
        except OSError:
            sock = getattr(self.handler, "__self__", None)
            if getattr(sock, "upgraded", False) is not True:
                raise
            return None


def install(eio: Any) -> bool:
    """Make this engine.io server (only) free its connections as they end. False, changing
    nothing, if it is not the ASGI driver this was written for."""
    drivers = getattr(eio, "_async", None)
    if not isinstance(drivers, dict) \
            or drivers.get("translate_request") is not eio_asgi.translate_request \
            or drivers.get("websocket") is not eio_asgi.WebSocket:
        log.warning("engine.io %s: not the ASGI driver; ended Socket.IO connections wait for "
                    "the complete garbage collection", getattr(engineio, "__version__", "?"))
        return False
    eio._async = {**drivers,
                  "translate_request": releasing_translate(drivers["translate_request"]),
                  "websocket": ReleasingWebSocket}  # a copy: other servers untouched
    return True
