"""Live session routes, as the original live-ingest protocol: REST, SSE and the PCM socket.

The ingest socket is always accepted first and then closed with a code, because a browser
never sees a close code sent instead of the handshake (the original's 403 at handshake
became an opaque 1006). Close codes: 4004 unknown or ended session, 4009 another ingest
socket is connected, 4000 the session ended while streaming, 1009 frame over the size limit.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response, WebSocket
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from tonewire.metrics import Metrics
from tonewire.sessions.model import (
    CLOSE_ALREADY_STREAMING,
    CLOSE_FRAME_TOO_LARGE,
    CLOSE_UNKNOWN_SESSION,
    SessionOptions,
    SessionState,
    session_stream,
)
from tonewire.sessions.service import (
    SESSION_TERMINAL,
    IngestBusy,
    SessionLimit,
    SessionNotFound,
    SessionService,
)
from tonewire.transports.limits import limit_session_start
from tonewire.transports.sse import encode_event, event_stream, parse_last_event_id
from tonewire.transports.ws_protocol import set_frame_sink

router = APIRouter()
CLOSE_TRY_AGAIN = 1013  # RFC 6455 "try again later": this node is full, another may not be


def _sessions(request: Request | WebSocket) -> SessionService:
    service: SessionService = request.app.state.services.sessions
    return service


@router.post("/session/start", dependencies=[Depends(limit_session_start)],
             responses={429: {"description": "RATE_LIMITED (with Retry-After) or "
                                             "SESSION_LIMIT"}})
async def start_session(request: Request,
                        options: Annotated[SessionOptions | None, Body()] = None
                        ) -> dict[str, Any]:
    """Start a live session: ``{session_id, state, elcor, options, ...}``."""
    return await _sessions(request).create(options or SessionOptions())


@router.get("/session/{session_id}")
async def get_session(request: Request, session_id: str) -> dict[str, Any]:
    service = _sessions(request)
    return service.view(await service.get_row(session_id))


@router.delete("/session/{session_id}/end")
async def end_session(request: Request, session_id: str) -> dict[str, Any]:
    """End the session: subscribers get ``session-end`` and their streams close; the ingest
    socket closes with 4000. History and export stay available."""
    return await _sessions(request).end(session_id)


@router.get("/session/{session_id}/history")
async def session_history(request: Request, session_id: str,
                          min_confidence: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
                          limit: Annotated[int, Query(ge=1, le=100_000)] = 1000
                          ) -> dict[str, Any]:
    events = await _sessions(request).history(session_id, min_confidence=min_confidence,
                                              limit=limit)
    return {"session_id": session_id, "events": events, "count": len(events)}


@router.get("/session/{session_id}/export")
async def session_export(request: Request, session_id: str,
                         format: Annotated[Literal["json", "csv"], Query()] = "json"
                         ) -> Response:
    body, media = await _sessions(request).export(session_id, format)
    name = f"tonewire-session-{session_id}.{format}"
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/session/{session_id}/stream",
            responses={200: {"content": {"text/event-stream": {}}}})
async def session_events(request: Request, session_id: str,
                         last_event_id: Annotated[str | None, Header()] = None,
                         since: Annotated[str | None, Query()] = None) -> Response:
    """Server-Sent Events: ``tone-event``, ``vad-event``, ``service-event``,
    ``transcript-event``, ``speaker-event``; ``session-end`` closes the stream."""
    after = parse_last_event_id(last_event_id if last_event_id is not None else since)
    service = _sessions(request)
    row = await service.get_row(session_id)
    settings = request.app.state.settings
    stream = session_stream(session_id)
    if row["state"] == SessionState.ENDED and after >= await service.store.last_seq(stream):
        return Response(status_code=204)  # ended and fully seen: EventSource stops here
    request.app.state.limits.admit_follower(stream)
    prelude = b""
    if after > 0:  # resuming: tell the current service status at once (no id: not a replay)
        status = await service.store.read_latest_event(stream, "service-event")
        if status is not None and status.seq <= after:
            prelude = encode_event(event="service-event",
                                   data=json.dumps({**status.data, "seq": status.seq}))

    async def body() -> AsyncIterator[bytes]:
        service.subscriber_enter(session_id)
        try:
            if prelude:
                yield prelude
            async for chunk in event_stream(service.log, stream, after=after,
                                            heartbeat_s=settings.sse_heartbeat_s,
                                            terminal=SESSION_TERMINAL,
                                            maxsize=settings.subscriber_buffer,
                                            stopping=request.app.state.services.stopping):
                yield chunk
        finally:
            service.subscriber_leave(session_id)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class _SocketHandle:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def close_ingest(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            await self.ws.close(code, reason)


def _nack(code: str, message: str) -> str:
    return json.dumps({"ok": False, "code": code, "message": message})


def _ack(n: int, samples: int) -> str:
    return f'{{"ok": true, "bytes": {n}, "samples": {samples}}}'


_EMPTY_FRAME: Final = _nack("EMPTY_FRAME", "an empty frame carries no audio")
_ODD_LENGTH: Final = _nack("ODD_LENGTH", "PCM16 frames have an even number of bytes")


def _refusal(n: int) -> str | None:
    """The answer to a binary frame of ``n`` bytes that carries no PCM16 audio, else None."""
    return _EMPTY_FRAME if not n else _ODD_LENGTH if n % 2 else None
_COUNT_EVERY: Final = 100


class _FrameCounts:
    """Frames acknowledged by each path, added to the metric every :data:`_COUNT_EVERY`
    and at the end (a counter update, with its lock, per frame costs more than it tells)."""

    __slots__ = ("asgi", "direct", "metrics")

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.direct = self.asgi = 0

    def flush(self) -> None:
        if self.direct:
            self.metrics.ingest_frames.labels("direct").inc(self.direct)
        if self.asgi:
            self.metrics.ingest_frames.labels("asgi").inc(self.asgi)
        self.direct = self.asgi = 0


@router.websocket("/session/{session_id}/audio")
async def ingest(ws: WebSocket, session_id: str) -> None:
    """Binary frames: PCM16 little-endian mono at the session's rate, each acknowledged
    ``{"ok": true, "bytes": N, "samples": total}``. Text frames: JSON control messages
    ``{"type": "keepalive" | "finalize" | "close"}``. Anything else gets
    ``{"ok": false, "code": ...}`` and the socket stays open.

    Served by ``tonewire serve`` (``transports/ws_protocol.py``), a binary frame is answered
    by :func:`sink` when nothing would be overtaken, without the ASGI round trip; what it
    declines (a frame over the limit, or one that must wait for the analysis) and every
    text frame come through the loop below, with the same answers."""
    await ws.accept()
    service = _sessions(ws)
    max_frame = ws.app.state.settings.max_frame_bytes
    handle = _SocketHandle(ws)
    try:
        live = await service.attach_ingest(session_id, handle)
    except SessionLimit:
        await ws.close(CLOSE_TRY_AGAIN, "the server is at its session limit")
        return
    except SessionNotFound:
        await ws.close(CLOSE_UNKNOWN_SESSION, "unknown or ended session")
        return
    except IngestBusy:
        await ws.close(CLOSE_ALREADY_STREAMING, "another ingest socket is connected")
        return
    counts = _FrameCounts(ws.app.state.services.metrics)

    def sink(data: bytes | bytearray | memoryview) -> str | None:
        """The loop's answer to a binary frame, if it needs no waiting (None: the loop's)."""
        n = len(data)
        if n > max_frame:
            return None  # the loop closes the socket
        refusal = _refusal(n)
        if refusal is not None:
            return refusal
        if not service.try_push(live, data):
            return None  # analysis is behind: the loop waits in push
        counts.direct += 1
        if counts.direct >= _COUNT_EVERY:
            counts.flush()
        return _ack(n, live.buffer.total)

    set_frame_sink(ws.scope, sink)
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("bytes")
            if data is not None:
                n = len(data)
                if n > max_frame:
                    await ws.close(CLOSE_FRAME_TOO_LARGE, f"frames are limited to {max_frame}")
                    return
                refusal = _refusal(n)
                if refusal is not None:
                    await ws.send_text(refusal)
                else:
                    await service.push(live, data)
                    await ws.send_text(_ack(n, live.buffer.total))
                    counts.asgi += 1
                continue
            reply = await _control(service, live, msg.get("text"))
            if reply is None:
                await ws.close(1000, "closed by client")
                return
            await ws.send_text(reply)
    except WebSocketDisconnect:
        return
    finally:
        set_frame_sink(ws.scope, None)
        counts.flush()
        await service.detach_ingest(live, handle)


async def _control(service: SessionService, live: Any, text: str | None) -> str | None:
    """Reply to a text frame; ``None`` means close the socket normally."""
    try:
        msg = json.loads(text or "")
    except ValueError:
        return _nack("INVALID_JSON", "text frames must be JSON control messages")
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind == "keepalive":
        return json.dumps({"ok": True, "type": "keepalive", "samples": live.buffer.total})
    if kind == "finalize":
        flushed = service.finalize(live)
        return json.dumps({"ok": True, "type": "finalize", "flushed": flushed,
                           "samples": live.buffer.total})
    if kind == "close":
        return None
    return _nack("UNKNOWN_CONTROL", "control messages are keepalive, finalize or close")


def session_resolver(service: SessionService) -> Any:
    async def resolve(data: dict[str, Any]) -> tuple[str, str, str]:
        session_id = data.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            raise LookupError("INVALID_SESSION", "session_id must be a string")
        row = await service.store.get_session(session_id)
        if row is None:
            raise LookupError("SESSION_NOT_FOUND", f"no session {session_id}")
        return session_stream(session_id), "session_id", session_id
    return resolve


__all__ = ["SessionState", "router", "session_resolver"]
