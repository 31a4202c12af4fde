"""The live-ingest fast path (``transports/ws_protocol.py``'s frame sink, ``ingest``'s ``sink``)
against a live ``tonewire serve``: every reply is the one the ASGI path gives, in the order
the messages were sent, whether a frame is answered directly or falls back (text frames, bad
frames, a window queue that is full), and the direct path is what a well-behaved client gets.

A stand-in sidecar classifier (``/classify`` held behind a gate while a test closes it) lets a
test fill a session's window queue at will; no test waits on a clock to do so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from server import (
    HOST,
    RunningServer,
    free_port,
    serve_in_process,
    start_server,
    wait_until,
    watched_client,
)

from tonewire.config import Settings
from tonewire.sessions.buffer import SampleBuffer
from tonewire.sessions.service import _WINDOW_QUEUE

pytestmark = pytest.mark.asyncio

SR = 16000
FRAME = 3200  # 100 ms of PCM16 at 16 kHz, as the browser sends
MAX_FRAME = 8192
WAIT_S = 30.0
Message = bytes | str
KEEPALIVE = json.dumps({"type": "keepalive"})
FINALIZE = json.dumps({"type": "finalize"})


# -- the stand-in sidecar ------------------------------------------------------------------------

class GatedSidecar:
    """``GET /health`` and ``POST /classify`` (no events); ``/classify`` answers only while
    :attr:`gate` is set, and records each window's ``(session_id, timestamp)``."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.seen: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        sidecar = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _reply(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._reply(b'{"status": "ok"}')

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                sidecar.gate.wait(WAIT_S)
                with sidecar._lock:
                    sidecar.seen.append((body["session_id"], body["timestamp"]))
                self._reply(b'{"events": []}')

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.httpd.server_address[1]}"

    def of(self, sid: str) -> list[float]:
        with self._lock:
            return [ts for s, ts in self.seen if s == sid]


@pytest.fixture(scope="module")
def sidecar() -> Iterator[GatedSidecar]:
    s = GatedSidecar()
    s.thread.start()
    try:
        yield s
    finally:
        s.gate.set()
        s.httpd.shutdown()
        s.httpd.server_close()
        s.thread.join(10)


SERVER_SETTINGS: dict[str, Any] = {"workers": 1, "max_frame_bytes": MAX_FRAME,
                                   "sidecar_timeout_s": WAIT_S}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sidecar: GatedSidecar
           ) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("fastpath"), sidecar_url=sidecar.url,
                      **SERVER_SETTINGS) as s:
        yield s


@pytest.fixture
async def http(server: RunningServer, sidecar: GatedSidecar
               ) -> AsyncIterator[httpx.AsyncClient]:
    sidecar.gate.set()
    try:
        async with watched_client(server, cancel_jobs=False) as client:
            yield client
    finally:
        sidecar.gate.set()


# -- clients -----------------------------------------------------------------------------------

def ws_url(base: str, sid: str) -> str:
    return base.replace("http://", "ws://", 1) + f"/session/{sid}/audio"


def ingest(base: str, sid: str) -> Any:
    return websockets.connect(ws_url(base, sid), compression=None, open_timeout=10,
                              close_timeout=10)


async def start(http: httpx.AsyncClient, **options: Any) -> str:
    r = await http.post("/session/start", json={"classifier": "sidecar", **options})
    assert r.status_code == 200, r.text
    sid: str = r.json()["session_id"]
    return sid


async def recv(ws: Any) -> str:
    reply = await asyncio.wait_for(ws.recv(), WAIT_S)
    assert isinstance(reply, str), reply  # every answer is a text frame
    return reply


async def close_code(ws: Any) -> int | None:
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            print("before the close:", await asyncio.wait_for(ws.recv(), WAIT_S))
    rcvd = info.value.rcvd
    return None if rcvd is None else rcvd.code


async def detached(http: httpx.AsyncClient, sid: str) -> None:
    """Wait until the server has let the session's ingest socket go (its counts are in)."""
    async def free() -> bool:
        return not (await http.get(f"/session/{sid}")).json()["ingest_connected"]
    await wait_until(free, timeout=WAIT_S, what="ingest detached")


async def frames_metric(http: httpx.AsyncClient, path: str) -> float:
    text = (await http.get("/metrics")).text
    m = re.search(r'^tonewire_ingest_frames_total\{path="' + path + r'"\} (\S+)$', text,
                  re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def ack(n: int, samples: int) -> str:
    return f'{{"ok": true, "bytes": {n}, "samples": {samples}}}'


def frame(i: int, n: int = FRAME) -> bytes:
    """``n`` bytes of PCM16 that differ from frame to frame."""
    return bytes((i * 7 + k) & 0xFF for k in range(n))


def expected(script: Sequence[Message], *, start: int = 0, window: int = SR) -> list[Any]:
    """What the server answers to ``script``, from a model of the session's sample buffer:
    acks as exact text, other answers as parsed JSON (the nack texts are the server's)."""
    buf = SampleBuffer(window=window, hop=window, start_sample=start)
    out: list[Any] = []
    for msg in script:
        if isinstance(msg, bytes):
            if not msg:
                out.append({"ok": False, "code": "EMPTY_FRAME"})
            elif len(msg) % 2:
                out.append({"ok": False, "code": "ODD_LENGTH"})
            else:
                buf.push(msg)
                out.append(ack(len(msg), buf.total))
        elif msg == KEEPALIVE:
            out.append({"ok": True, "type": "keepalive", "samples": buf.total})
        elif msg == FINALIZE:
            flushed = buf.flush() is not None
            out.append({"ok": True, "type": "finalize", "flushed": flushed,
                        "samples": buf.total})
        else:
            out.append({"ok": False, "code": "INVALID_JSON" if msg == "not json"
                        else "UNKNOWN_CONTROL"})
    return out


def check(replies: Sequence[str], want: Sequence[Any]) -> None:
    assert len(replies) == len(want)
    for i, (got, w) in enumerate(zip(replies, want, strict=True)):
        if isinstance(w, str):
            assert got == w, (i, got, w)
        else:
            assert got.startswith("{"), (i, got, w)
            parsed = json.loads(got)
            assert {k: parsed.get(k) for k in w} == w, (i, got, w)


async def pipelined(ws: Any, script: Sequence[Message]) -> list[str]:
    """Send the whole script without waiting, then read one reply per message."""
    for msg in script:
        await ws.send(msg)
    return [await recv(ws) for _ in script]


def mixed_script() -> list[Message]:
    """Frames of several sizes among control messages and bad frames."""
    script: list[Message] = [frame(i) for i in range(12)]
    script += [KEEPALIVE, frame(12), frame(13, 882), b"", frame(14), b"\x00" * 3,
               frame(15), FINALIZE, frame(16), FINALIZE, "not json", frame(17, 2),
               json.dumps({"type": "bogus"}), frame(18, MAX_FRAME)]
    script += [frame(19 + i) for i in range(25)] + [KEEPALIVE]
    return script


# -- tests -------------------------------------------------------------------------------------

async def test_a_well_behaved_client_is_answered_directly(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http)
    direct, asgi = await frames_metric(http, "direct"), await frames_metric(http, "asgi")
    async with ingest(server.url, sid) as ws:
        await ws.send(KEEPALIVE)  # the route's loop is running once this is answered
        assert json.loads(await recv(ws))["samples"] == 0
        for i in range(30):
            await ws.send(frame(i))
            assert await recv(ws) == ack(FRAME, (i + 1) * FRAME // 2)
    await detached(http, sid)
    assert await frames_metric(http, "direct") - direct == 30
    assert await frames_metric(http, "asgi") - asgi == 0
    await http.delete(f"/session/{sid}/end")


async def test_interleaved_messages_are_answered_in_order(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http)
    script = mixed_script()
    async with ingest(server.url, sid) as ws:
        check(await pipelined(ws, script), expected(script))
        # One at a time too: every answer comes before the next message is sent.
        total = sum(len(m) // 2 for m in script if isinstance(m, bytes) and not len(m) % 2)
        again: list[str] = []
        for msg in script:
            await ws.send(msg)
            again.append(await recv(ws))
        check(again, expected(script, start=total))
    await http.delete(f"/session/{sid}/end")


async def test_oversized_frame_closes_1009_and_a_new_socket_continues_the_count(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http)
    script: list[Message] = [frame(i) for i in range(5)] + [b"", frame(5, MAX_FRAME)]
    async with ingest(server.url, sid) as ws:
        check(await pipelined(ws, script), expected(script))
        await ws.send(frame(7, MAX_FRAME + 2))  # over the limit
        assert await close_code(ws) == 1009
    await detached(http, sid)
    total = (5 * FRAME + MAX_FRAME) // 2  # the oversized frame was not counted
    ws = await ingest(server.url, sid)  # then a connection that drops without a close
    try:
        check(await pipelined(ws, script), expected(script, start=total))
        ws.transport.abort()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT_S)
    finally:
        await ws.close()
    await detached(http, sid)
    total *= 2
    assert (await http.get(f"/session/{sid}")).json()["samples"] == total
    async with ingest(server.url, sid) as ws:
        script = [KEEPALIVE, frame(9), frame(10)]
        check(await pipelined(ws, script), expected(script, start=total))
    await http.delete(f"/session/{sid}/end")


async def test_a_full_window_queue_falls_back_without_loss_or_reordering(
        http: httpx.AsyncClient, server: RunningServer, sidecar: GatedSidecar) -> None:
    """Windows of 250 ms (2.5 frames): with the sidecar held, the consumer holds one window
    and the queue the next eight, so the first 22 frames are answered (8 windows) and a
    frame completing the tenth window must wait in ``push``. Frames behind it that complete
    no window (and bad frames) could be answered directly; they must wait their turn."""
    window = SR // 4
    sid = await start(http, window_ms=250)
    frames = [frame(i) for i in range(40)]
    script: list[Message] = [*frames[:30], KEEPALIVE, b"\x00", *frames[30:], KEEPALIVE]
    want = expected(script, window=window)
    free = (_WINDOW_QUEUE * window) // (FRAME // 2)  # frames answered with the queue full
    assert free == 20
    direct, asgi = await frames_metric(http, "direct"), await frames_metric(http, "asgi")
    sidecar.gate.clear()
    async with ingest(server.url, sid) as ws:
        await ws.send(KEEPALIVE)
        assert json.loads(await recv(ws))["samples"] == 0
        for msg in script:
            await ws.send(msg)
        replies = [await recv(ws) for _ in range(free)]
        sidecar.gate.set()  # analysis catches up: the waiting push goes on
        replies += [await recv(ws) for _ in script[free:]]
    check(replies, want)
    await detached(http, sid)
    assert await frames_metric(http, "asgi") - asgi >= 1  # the full queue was waited for
    assert await frames_metric(http, "direct") - direct >= free
    view = (await http.delete(f"/session/{sid}/end")).json()
    assert view["dropped_windows"] == 0
    assert view["samples"] == 40 * FRAME // 2
    # Every window reached the analysis, in order.
    assert sidecar.of(sid) == [i * 0.25 for i in range(16)]


# -- the same answers without the fast path ------------------------------------------------------

@contextlib.asynccontextmanager
async def stock_uvicorn(tmp_path: Path, sidecar: GatedSidecar) -> AsyncIterator[str]:
    """The app in this process under uvicorn's own websockets-sansio protocol (no sink)."""
    from tonewire.app import create_app

    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=0,
                        sidecar_url=sidecar.url, **SERVER_SETTINGS)
    port = free_port()
    config = uvicorn.Config(create_app(settings), host=HOST, port=port,
                            ws="websockets-sansio", ws_per_message_deflate=False,
                            ws_max_size=MAX_FRAME, lifespan="on", log_config=None,
                            log_level="warning")
    async with serve_in_process(config, timeout=WAIT_S):
        yield f"http://{HOST}:{port}"


async def test_the_asgi_path_alone_gives_the_same_answers(
        http: httpx.AsyncClient, server: RunningServer, sidecar: GatedSidecar,
        tmp_path: Path) -> None:
    script = mixed_script()
    answers: list[list[str]] = []
    async with (stock_uvicorn(tmp_path, sidecar) as base,
                httpx.AsyncClient(base_url=base, timeout=WAIT_S) as stock):
        for client, url in ((http, server.url), (stock, base)):
            sid = await start(client)
            async with ingest(url, sid) as ws:
                answers.append(await pipelined(ws, script))
                await ws.send(frame(0, MAX_FRAME + 2))
                assert await close_code(ws) == 1009
            await client.delete(f"/session/{sid}/end")
    fast, stock_answers = answers
    # Byte for byte, but for the nack messages' wording there is nothing to differ in.
    assert fast == stock_answers
    check(fast, expected(script))
