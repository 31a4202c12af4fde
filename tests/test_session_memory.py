"""An ended live session, its ingest socket and its followers (SSE and Socket.IO) are freed by
reference counting.

The server freezes what survives a full garbage collection (``gc_policy.py``), so cyclic
garbage that includes a long-lived object waits for the next complete collection, minutes
away: a session that ended inside a reference cycle kept its buffers, queues and connection
objects (about 85 KiB a session, measured under the live-session bench) until then, and that
collection's pause grew with every session in between. Here the app runs in this process
under uvicorn with tonewire's WebSocket protocol (as ``tonewire serve`` runs it), the
collector is off while a real session streams, is followed and ends (the Socket.IO client
leaving too), and then nothing of tonewire's may be in the cyclic garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from server import HOST, SioRecorder, free_port, sse_frames, wait_until
from signals import voice

from tonewire.config import Settings
from tonewire.transports.ws_protocol import WebSocketProtocol

pytestmark = pytest.mark.asyncio

SR = 16000
FRAME = 1600  # samples: 100 ms
WAIT_S = 60.0


@contextlib.asynccontextmanager
async def in_process_server(tmp_path: Path, **settings_kw: Any
                            ) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    from tonewire.app import create_app

    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=0, live_workers=1,
                        **settings_kw)
    config = uvicorn.Config(create_app(settings), host=HOST, port=free_port(),
                            ws=WebSocketProtocol, ws_per_message_deflate=False,
                            ws_max_size=settings.max_frame_bytes, lifespan="on",
                            log_config=None, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), timeout=WAIT_S,
                         what="uvicorn started")
        assert server.started, f"uvicorn did not start: {task}"
        yield f"http://{HOST}:{config.port}", server
    finally:
        server.should_exit = True
        await asyncio.wait([task], timeout=WAIT_S)
        task.cancel()


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """No automatic collection: every cycle made meanwhile is still there to be found."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def cyclic_garbage() -> list[Any]:
    """Everything only the cyclic collector could free now (frozen objects included)."""
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = list(gc.garbage)
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
    return found


def ours(garbage: list[Any]) -> list[str]:
    names = []
    for obj in garbage:
        kind = type(obj)
        if kind.__module__.startswith("tonewire."):
            names.append(f"{kind.__module__}.{kind.__qualname__}")
        elif isinstance(obj, asyncio.Task) and obj.get_name().startswith("session-"):
            names.append(f"Task {obj.get_name()}")
    return sorted(set(names))


async def follow(client: httpx.AsyncClient, sid: str, seen: list[str]) -> None:
    async with client.stream("GET", f"/session/{sid}/stream") as r:
        assert r.status_code == 200
        async for frame in sse_frames(r):
            if frame.event is not None:
                seen.append(frame.event)


async def test_an_ended_session_leaves_no_cyclic_garbage(tmp_path: Path) -> None:
    pcm = (voice(150.0, 2.0, sr=SR) * 32767).astype("<i2")
    async with in_process_server(tmp_path) as (url, server), httpx.AsyncClient(
            base_url=url, timeout=WAIT_S) as client:
        cyclic_garbage()  # what start-up left
        with collector_off():
            r = await client.post("/session/start", json={"min_confidence": 0})
            assert r.status_code == 200, r.text
            sid = r.json()["session_id"]
            seen: list[str] = []
            follower = asyncio.create_task(follow(client, sid, seen))
            sio = SioRecorder(url)
            await sio.connect()
            await sio.call("subscribe", {"session_id": sid})
            async with websockets.connect(f"ws://{HOST}:{server.config.port}"
                                          f"/session/{sid}/audio") as ws:
                for i in range(0, pcm.size, FRAME):
                    await ws.send(pcm[i : i + FRAME].tobytes())
                    assert json.loads(await ws.recv())["ok"] is True
                await wait_until(lambda: "tone-event" in seen, timeout=WAIT_S,
                                 what="a tone event")
                r = await client.delete(f"/session/{sid}/end")
                assert r.status_code == 200, r.text
                with contextlib.suppress(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), WAIT_S)  # the server closes it
            await asyncio.wait_for(follower, WAIT_S)  # the stream ends after session-end
            assert seen[-1] == "session-end", seen
            await sio.wait_for(lambda ev: any(name == "session-end" for name, _ in ev),
                               timeout=WAIT_S, what="session-end over Socket.IO")
            await sio.disconnect()
            services = server.config.app.state.services  # type: ignore[attr-defined]
            # The session, its sockets, and the app's tasks serving them (an idle keep-alive
            # connection of the HTTP client has none) are all gone.
            await wait_until(lambda: sid not in services.sessions.live
                             and not server.server_state.tasks and not any(
                                 isinstance(c, WebSocketProtocol)
                                 for c in server.server_state.connections),
                             timeout=WAIT_S, what="the session, its sockets and tasks gone")
            leftovers = ours(cyclic_garbage())
        assert leftovers == [], leftovers


async def test_a_reaped_session_after_dropped_sockets_and_bad_frames_leaves_none(
        tmp_path: Path) -> None:
    pcm = (voice(150.0, 2.0, sr=SR) * 32767).astype("<i2")
    half = pcm.size // 2
    async with in_process_server(tmp_path, session_idle_ttl_s=1.0) as (url, server), \
            httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
        cyclic_garbage()
        with collector_off():
            r = await client.post("/session/start", json={"min_confidence": 0})
            assert r.status_code == 200, r.text
            sid = r.json()["session_id"]
            ingest = f"ws://{HOST}:{server.config.port}/session/{sid}/audio"
            for part in (pcm[:half], pcm[half:]):  # the first socket drops; a second resumes
                async with websockets.connect(ingest) as ws:
                    await ws.send(b"\x00")  # odd byte count: an error answer, socket open
                    assert json.loads(await ws.recv())["ok"] is False
                    await ws.send("not json")
                    assert json.loads(await ws.recv())["ok"] is False
                    for i in range(0, part.size, FRAME):
                        await ws.send(part[i : i + FRAME].tobytes())
                        assert json.loads(await ws.recv())["ok"] is True
            services = server.config.app.state.services  # type: ignore[attr-defined]
            # Nobody follows it and its socket is gone: the reaper ends it.
            await wait_until(lambda: sid not in services.sessions.live
                             and not server.server_state.tasks and not any(
                                 isinstance(c, WebSocketProtocol)
                                 for c in server.server_state.connections),
                             timeout=WAIT_S, what="the session reaped, its sockets gone")
            r = await client.get(f"/session/{sid}")
            assert r.json()["state"] == "ended" and r.json()["end_reason"] == "idle", r.json()
            r = await client.get(f"/session/{sid}/history")
            assert r.status_code == 200 and r.json(), r.text  # its tone events were kept
            leftovers = ours(cyclic_garbage())
        assert leftovers == [], leftovers
