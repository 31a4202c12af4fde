"""An ended live session, its ingest socket and its followers (SSE and Socket.IO) are freed by
reference counting.

The server freezes what survives a full garbage collection (``gc_policy.py``), so cyclic
garbage that includes a long-lived object waits for the next complete collection, minutes
away: a session that ended inside a reference cycle kept its buffers, queues and connection
objects (about 85 KiB a session, measured under the live-session bench) until then, and that
collection's pause grew with every session in between. Here the app runs in this process
under uvicorn with tonewire's WebSocket protocol (as ``tonewire serve`` runs it, on uvloop
and on asyncio's own loop), the collector is off while a real session streams, is followed
and ends, and then the session and every WebSocket connection it had must have been freed
(weak references to them die), and nothing of tonewire's may be in the cyclic garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from server import HOST, SioRecorder, free_port, serve_in_process, sse_frames, wait_until
from signals import voice

from tonewire.config import Settings
from tonewire.transports.ws_protocol import WebSocketProtocol

SR = 16000
FRAME = 1600  # samples: 100 ms
WAIT_S = 60.0
FREED_S = 15.0
"""How long freed objects may take to go: the app's tasks for a closed connection finish, and
engine.io's service task lets go of the last socket it checked (every ping timeout, 1 s here)."""


def run_on(loop: str, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on a fresh event loop of the named kind: ``tonewire serve`` runs on uvloop
    when it is installed, whose transports differ from asyncio's own."""
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if loop == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


LOOPS = pytest.mark.parametrize("loop", ["uvloop", "asyncio"])


@contextlib.asynccontextmanager
async def in_process_server(tmp_path: Path, **settings_kw: Any
                            ) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    from tonewire.app import create_app

    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=0, live_workers=1,
                        socketio_ping_interval_s=1.0, socketio_ping_timeout_s=1.0,
                        **settings_kw)
    config = uvicorn.Config(create_app(settings), host=HOST, port=free_port(),
                            ws=WebSocketProtocol, ws_per_message_deflate=False,
                            ws_max_size=settings.max_frame_bytes, lifespan="on",
                            log_config=None, log_level="warning")
    async with serve_in_process(config, timeout=WAIT_S) as server:
        yield f"http://{HOST}:{config.port}", server


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """No automatic collection: every cycle made meanwhile is still there to be found, and an
    object that goes meanwhile went by reference counting."""
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


class Watched:
    """Weak references to the objects that must be freed."""

    def __init__(self) -> None:
        self.refs: dict[str, weakref.ref[Any]] = {}

    def add(self, name: str, obj: Any) -> None:
        self.refs[f"{name} #{len(self.refs)}"] = weakref.ref(obj)

    def add_sockets(self, server: uvicorn.Server) -> None:
        """Every open WebSocket connection (the ingest socket, the Socket.IO follower)."""
        for conn in list(server.server_state.connections):
            if isinstance(conn, WebSocketProtocol) and not any(
                    r() is conn for r in self.refs.values()):
                self.add(f"WebSocketProtocol {getattr(conn, 'scope', {}).get('path')}", conn)

    async def still_alive(self) -> list[str]:
        """What is still alive after up to :data:`FREED_S`."""
        deadline = time.monotonic() + FREED_S
        while True:
            alive = sorted(name for name, ref in self.refs.items() if ref() is not None)
            if not alive or time.monotonic() > deadline:
                return alive
            await asyncio.sleep(0.05)


async def follow(client: httpx.AsyncClient, sid: str, seen: list[str]) -> None:
    async with client.stream("GET", f"/session/{sid}/stream") as r:
        assert r.status_code == 200
        async for frame in sse_frames(r):
            if frame.event is not None:
                seen.append(frame.event)


@LOOPS
def test_an_ended_session_and_its_sockets_are_freed_at_once(tmp_path: Path, loop: str) -> None:
    run_on(loop, ended_session(tmp_path))


async def ended_session(tmp_path: Path) -> None:
    pcm = (voice(150.0, 2.0, sr=SR) * 32767).astype("<i2")
    async with in_process_server(tmp_path) as (url, server), httpx.AsyncClient(
            base_url=url, timeout=WAIT_S) as client:
        services = server.config.app.state.services  # type: ignore[attr-defined]
        cyclic_garbage()  # what start-up left
        watched = Watched()
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
                watched.add("LiveSession", services.sessions.live[sid])
                watched.add_sockets(server)
                r = await client.delete(f"/session/{sid}/end")
                assert r.status_code == 200, r.text
                with contextlib.suppress(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), WAIT_S)  # the server closes it
            await asyncio.wait_for(follower, WAIT_S)  # the stream ends after session-end
            assert seen[-1] == "session-end", seen
            await sio.wait_for(lambda ev: any(name == "session-end" for name, _ in ev),
                               timeout=WAIT_S, what="session-end over Socket.IO")
            await sio.disconnect()
            # engine.io's service task holds the last socket it checked until it checks
            # another: a follower that stays gives it one.
            other = SioRecorder(url)
            await other.connect()
            try:
                assert len(watched.refs) == 3, watched.refs  # session, ingest, Socket.IO
                alive = await watched.still_alive()
                leftovers = ours(cyclic_garbage())
            finally:
                await other.disconnect()
        assert alive == [], f"not freed by reference counting: {alive}"
        assert leftovers == [], leftovers


@LOOPS
def test_a_reaped_session_after_dropped_sockets_and_bad_frames_is_freed(
        tmp_path: Path, loop: str) -> None:
    run_on(loop, reaped_session(tmp_path))


async def reaped_session(tmp_path: Path) -> None:
    pcm = (voice(150.0, 2.0, sr=SR) * 32767).astype("<i2")
    half = pcm.size // 2
    async with in_process_server(tmp_path, session_idle_ttl_s=1.0) as (url, server), \
            httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
        services = server.config.app.state.services  # type: ignore[attr-defined]
        cyclic_garbage()
        watched = Watched()
        with collector_off():
            r = await client.post("/session/start", json={"min_confidence": 0})
            assert r.status_code == 200, r.text
            sid = r.json()["session_id"]
            ingest = f"ws://{HOST}:{server.config.port}/session/{sid}/audio"
            for n, part in enumerate((pcm[:half], pcm[half:])):  # a socket drops; one resumes
                async with websockets.connect(ingest) as ws:
                    await ws.send(b"\x00")  # odd byte count: an error answer, socket open
                    assert json.loads(await ws.recv())["ok"] is False
                    await ws.send("not json")
                    assert json.loads(await ws.recv())["ok"] is False
                    for i in range(0, part.size, FRAME):
                        await ws.send(part[i : i + FRAME].tobytes())
                        assert json.loads(await ws.recv())["ok"] is True
                    watched.add_sockets(server)
                    if n == 0:
                        watched.add("LiveSession", services.sessions.live[sid])
            assert len(watched.refs) == 3, watched.refs  # two ingest sockets, the session
            # Nobody follows it and its socket is gone: the reaper ends it.
            alive = await watched.still_alive()
            async def ended() -> dict[str, Any] | None:
                view: dict[str, Any] = (await client.get(f"/session/{sid}")).json()
                return view if view["state"] == "ended" else None
            # The end's store writes follow the session's release.
            view = await wait_until(ended, timeout=WAIT_S, what="the session ended")
            assert view["end_reason"] == "idle", view
            r = await client.get(f"/session/{sid}/history")
            assert r.status_code == 200 and r.json(), r.text  # its tone events were kept
            leftovers = ours(cyclic_garbage())
        assert alive == [], f"not freed by reference counting: {alive}"
        assert leftovers == [], leftovers
