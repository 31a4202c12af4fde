"""Socket.IO room fan-out (``transports/sio_fanout.py``) against a live ``tonewire serve``:
many clients each get every event once and in order, the frames on the wire are the ones
python-socketio's own ``emit`` sends, and a client that stops reading is cut off (its backlog
dropped, its connection closed) while the others carry on, then resumes with ``since``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import socketio
from server import (
    RunningServer,
    cancel_unfinished,
    check_stream,
    create_job,
    sio_client,
    start_server,
    variant,
    wait_for_status,
    write_long_wav,
)

pytestmark = pytest.mark.asyncio

WS = ["websocket"]
_seeds = itertools.count(500)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fanout-audio")


@pytest.fixture(scope="module")
def medium_wav(audio_dir: Path) -> Path:
    """3 minutes: about 180 chunks."""
    return write_long_wav(audio_dir / "medium.wav", 3)


@pytest.fixture(scope="module")
def long_wav(audio_dir: Path) -> Path:
    """20 minutes: about 1200 chunks and a complete event of about a megabyte."""
    return write_long_wav(audio_dir / "long.wav", 20)


@pytest.fixture
def fresh(audio_dir: Path) -> Iterator[Any]:
    def make(src: Path) -> Path:
        n = next(_seeds)
        return variant(src, audio_dir / f"{src.stem}-{n}.wav", n)
    yield make


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # A small buffer, so that a client that stops reading falls behind it within one job.
    with start_server(tmp_path_factory.mktemp("fanout"), workers=2,
                      subscriber_buffer=16) as s:
        yield s


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        yield client
    await cancel_unfinished(server)
    assert server.alive(), "the server died"


async def metric(http: httpx.AsyncClient, name: str, **labels: str) -> float:
    text = (await http.get("/metrics")).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


async def test_many_clients_each_get_every_event_once_in_order(
        server: RunningServer, http: httpx.AsyncClient, medium_wav: Path, fresh: Any) -> None:
    direct_before = await metric(http, "tonewire_socketio_deliveries_total", path="direct")
    job_id = await create_job(http, fresh(medium_wav))
    async with contextlib.AsyncExitStack() as stack:
        # Mostly WebSocket clients (the direct path), a few that start on long-polling.
        clients = [await stack.enter_async_context(
            sio_client(server.url, transports=WS if i % 4 else None)) for i in range(24)]
        await asyncio.gather(*(c.subscribe(job_id) for c in clients))
        streams = await asyncio.gather(*(c.until_terminal(job_id, timeout=60.0)
                                         for c in clients))
    check_stream(streams[0], job_id)
    for got in streams[1:]:
        assert got == streams[0]
    assert await metric(http, "tonewire_socketio_deliveries_total",
                        path="direct") > direct_before


async def test_frames_are_the_ones_python_socketio_sends(
        server: RunningServer, http: httpx.AsyncClient, medium_wav: Path, fresh: Any) -> None:
    """Raw WebSocket frames: each is engine.io ``4`` + python-socketio's own encoding of the
    event, one per frame, as ``emit`` would have sent them."""
    job_id = await create_job(http, fresh(medium_wav))
    ws_url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    frames: list[str] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        assert (await ws.receive_str(timeout=10)).startswith("0{")
        await ws.send_str("40")
        await ws.send_str("42" + json.dumps(["subscribe", {"job_id": job_id}]))
        while True:
            text = await ws.receive_str(timeout=60)
            if text == "2":
                await ws.send_str("3")
                continue
            frames.append(text)
            if text.startswith('42["complete"') or text.startswith('42["error"'):
                break
    events = []
    for text in frames:
        if not text.startswith("42"):
            continue  # the namespace's connect answer
        name, data = json.loads(text[2:])
        assert text == "4" + socketio.packet.Packet(
            socketio.packet.EVENT, data=[name, data], namespace="/").encode()
        events.append((name, data))
    assert [n for n, _ in events[:2]] == ["connected", "subscribed"]
    check_stream([(n, d) for n, d in events[2:]], job_id)


async def _stalled_client(url: str, job_ids: list[str]) -> tuple[asyncio.StreamReader,
                                                                  asyncio.StreamWriter]:
    """A Socket.IO client that subscribes to jobs and then never reads again (with a small
    receive buffer; the server's kernel still takes a few MB before its writes back up)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head

    def frame(text: str) -> bytes:  # a masked client text frame (short payloads only)
        data, mask = text.encode(), os.urandom(4)
        assert len(data) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return struct.pack("!BB", 0x81, 0x80 | len(data)) + mask + masked

    writer.write(frame("40"))
    for job_id in job_ids:
        writer.write(frame("42" + json.dumps(["subscribe", {"job_id": job_id}])))
    await writer.drain()
    return reader, writer


async def test_a_client_that_stops_reading_is_cut_off_and_the_others_carry_on(
        server: RunningServer, http: httpx.AsyncClient, long_wav: Path, fresh: Any) -> None:
    cut_before = await metric(http, "tonewire_subscribers_cut_off_total", transport="socketio")
    # About 2 MB of events each: more than the server's kernel buffers for one connection.
    jobs = [await create_job(http, fresh(long_wav)) for _ in range(3)]
    async with sio_client(server.url, transports=WS) as a, \
            sio_client(server.url, transports=WS) as b:
        for job_id in jobs:
            await a.subscribe(job_id)
        await b.subscribe(jobs[0])
        reader, writer = await _stalled_client(server.url, jobs)
        try:
            fulls = [await a.until_terminal(job_id, timeout=180.0) for job_id in jobs]
            assert await b.until_terminal(jobs[0], timeout=60.0) == fulls[0]
            for job_id, full in zip(jobs, fulls, strict=True):
                check_stream(full, job_id)
            assert await metric(http, "tonewire_subscribers_cut_off_total",
                                transport="socketio") == cut_before + 1
            # Its connection was closed: reading what was sent before ends, without a hang.
            async def drain() -> None:
                with contextlib.suppress(ConnectionError):
                    while await reader.read(1 << 16):
                        pass
            await asyncio.wait_for(drain(), 30.0)
        finally:
            writer.close()
    # It comes back and resumes where it likes, with nothing missing or repeated.
    job_id, full = jobs[-1], fulls[-1]
    k = len(full) // 2
    async with sio_client(server.url, transports=WS) as back:
        await back.subscribe(job_id, since=k)
        assert await back.until_terminal(job_id, timeout=60.0) == full[k:]
    await wait_for_status(http, job_id, "complete")


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 300_000])
async def test_ws_frame_is_websockets_own_unmasked_text_frame(n: int) -> None:
    from websockets.frames import Frame, Opcode

    from tonewire.transports.wsframe import ws_frame

    text = ("a\u00e9" * n)[:n]
    assert ws_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False,
                                                                          extensions=[])


async def test_unknown_fanout_mode_is_refused() -> None:
    from tonewire.transports.socketio_hub import SocketHub

    async def resolve(_data: dict[str, Any]) -> tuple[str, str, str]:
        raise LookupError("nothing")

    with pytest.raises(ValueError):
        SocketHub(socketio.AsyncServer(async_mode="asgi"), None,  # type: ignore[arg-type]
                  buffer=16, resolve=resolve, fanout="broadcast")


async def test_emit_mode_still_serves_the_protocol(tmp_path: Path, medium_wav: Path,
                                                   fresh: Any) -> None:
    """TONEWIRE_SOCKETIO_FANOUT=emit (python-socketio's room emit, kept to compare) gives
    the same stream."""
    with start_server(tmp_path, workers=1, socketio_fanout="emit") as s:
        async with httpx.AsyncClient(base_url=s.url, timeout=30.0) as http:
            job_id = await create_job(http, fresh(medium_wav))
            async with sio_client(s.url, transports=WS) as a, sio_client(s.url) as b:
                await a.subscribe(job_id)
                await b.subscribe(job_id)
                got_a = await a.until_terminal(job_id, timeout=60.0)
                assert await b.until_terminal(job_id, timeout=60.0) == got_a
            check_stream(got_a, job_id)
            assert await metric(http, "tonewire_socketio_deliveries_total", path="emit") > 0
            assert await metric(http, "tonewire_socketio_deliveries_total",
                                path="direct") == 0
