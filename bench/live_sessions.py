"""Live sessions under load: N concurrent streams against one `tonewire serve`.

Each stream is an ingest WebSocket sending 100 ms PCM16 frames at 16 kHz in real time (a
synthetic voice, so every 1 s window carries speech and yields a tone event; sessions start
with min_confidence 0) plus one SSE subscriber. Reported, per N:

- window-close-to-event latency: from sending the frame that completes a window to the
  SSE subscriber receiving that window's tone event (both clocks are the client's);
- ack round trip per frame;
- server CPU (share of one core) and RSS, from /proc of the server process tree, over the
  streaming phase only (set-up and tear-down excluded), and per window; and the CPU of the
  server's event-loop thread alone (it is one thread: at 1.0 it is the limit);
- the client processes' own CPU over the same phase, so the reader sees who used the machine;
- the load average at the end of the level (other work on the machine shows there);
- the largest N whose p99 window-to-event latency stays under 100 ms.

The load generator is lean on purpose, so that it costs far less CPU than the server it
measures: raw asyncio Protocols, no websockets or httpx library on the hot path.

- Ingest: an RFC 6455 client handshake (no extensions: permessage-deflate off), then
  pre-built masked binary frames (every 100 ms chunk of the test voice is framed and masked
  once per client process and reused by all its streams), written from one 10 ms ticker per
  process that serves the streams whose phase is due. Like a real client that waits for its
  acks, a stream sends its next frame only once the previous one is acknowledged (it catches
  up at once when the ack arrives late), so the server's backpressure slows it down.
- Acks are counted by walking the server's frame headers; a text frame must start with
  ``{"ok": true``; its JSON is parsed only every 10th frame, to check ``samples`` against the
  count sent.
- SSE is read as bytes: chunked transfer decoding, then frames split on the blank line; every
  ``id:`` must be the previous one plus one (seq order, no gap); a ``tone-event`` frame's
  ``end_time`` is found by a byte search (no JSON) and matched to its window; ``session-end``
  closes the subscriber.
- Session start and end use one short HTTP/1.1 request each (``Connection: close``).

Before the first level, one warm-up session runs end to end (3 s of audio, as fast as it is
acknowledged), so that no level measures the analysis workers' start. Phases per level:
every client process sets up its sessions (start, SSE connected, WebSocket
upgraded), then all start streaming together (starts staggered over one second so windows do
not all close at once), stream ``--seconds`` of audio, then close their sockets, end the
sessions and wait for ``session-end`` on every SSE stream. A level fails its check (marked
``!``) when an ack or tone event is missing, an ack is not ``ok``, a ``samples`` count is wrong
or a seq is out of order.

Options for the performance work: ``--server-path DIR`` runs the server from another source
tree (``PYTHONPATH=DIR``: compare branches with the same load generator); ``--py-spy OUT``
records the server's process tree with py-spy during each level's streaming phase
(``OUT-<N>.raw``, the bench's own server pid, never another one on the machine).

Only 127.0.0.1. Every loop is bounded by `--seconds` plus fixed timeouts.

    python bench/live_sessions.py --streams 50 100 200 300 500 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Final

import numpy as np

SR = 16000
FRAME = 1600  # 100 ms
FRAME_S = FRAME / SR
HOST = "127.0.0.1"
TICK_S = 0.01
SETUP_CONCURRENCY = 32
STEADY_AFTER_S = 2.0
VOICE_S = 20.0


def voice(seconds: float, *, f0: float = 160.0, seed: int = 0) -> bytes:
    """Harmonics on a gliding f0 with a 4 Hz syllable envelope, as PCM16 bytes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t)) ** 2 / 4
    y = 0.3 * x * env / 2.6
    return (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def loop_cpu(pid: int) -> float:
    """CPU seconds of a process's main thread (the server's event loop)."""
    import psutil

    for t in psutil.Process(pid).threads():
        if t.id == pid:
            return float(t.user_time + t.system_time)
    return 0.0


def stolen_cpu() -> float:
    """CPU seconds the hypervisor has taken from this machine's vCPUs since boot (``steal``
    in /proc/stat): time the server was ready to run and could not, on a shared host."""
    import psutil

    return float(getattr(psutil.cpu_times(), "steal", 0.0))


def tree_cpu_rss(pid: int) -> tuple[float, int]:
    """CPU seconds and RSS bytes of a process and its children (Linux /proc)."""
    import psutil

    p = psutil.Process(pid)
    procs = [p, *p.children(recursive=True)]
    cpu = rss = 0
    for q in procs:
        try:
            t = q.cpu_times()
            cpu += t.user + t.system
            rss += q.memory_info().rss
        except psutil.Error:
            pass
    return cpu, rss


# -- wire: RFC 6455 client frames, HTTP/1.1 ------------------------------------------------------

def masked_binary_frame(payload: bytes, mask: bytes) -> bytes:
    """One final binary frame from a client (masked, as RFC 6455 requires)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0x80 | 127]) + n.to_bytes(8, "big")
    reps = -(-n // 4)
    key = np.frombuffer(mask * reps, dtype=np.uint8)[:n]
    body = (np.frombuffer(payload, dtype=np.uint8) ^ key).tobytes()
    return head + mask + body


def masked_control_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """A control frame from a client (payload under 126 bytes, as RFC 6455 requires)."""
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def masked_close_frame(mask: bytes, code: int = 1000) -> bytes:
    return masked_control_frame(0x8, code.to_bytes(2, "big"), mask)


async def http_request(port: int, method: str, path: str, body: bytes = b""
                       ) -> tuple[int, bytes]:
    """One HTTP/1.1 request on its own connection: ``(status, body)``."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        head = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        writer.write(head.encode() + body)
        raw = await reader.read(-1)
    finally:
        writer.close()
    header, _, rest = raw.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in header.lower():
        out = bytearray()
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2 :]
        rest = bytes(out)
    return status, rest


# -- one stream: an ingest socket and an SSE subscriber ------------------------------------------

class Stats:
    def __init__(self) -> None:
        self.window_ms: list[float] = []
        self.window_at: list[float] = []  # when each window closed, s into the streaming phase
        self.base = 0.0
        self.ack_ms: list[float] = []
        self.acks = 0
        self.tone_events = 0
        self.errors: list[str] = []

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text)


class Stream:
    """State shared by one session's two connections."""

    def __init__(self, sid: str, n_frames: int, frames: list[bytes], stats: Stats) -> None:
        self.sid = sid
        self.n_frames = n_frames
        self.frames = frames
        self.stats = stats
        self.next = 0  # next frame to send
        self.t0 = 0.0  # when frame 0 is due
        self.in_flight: collections.deque[float] = collections.deque()
        self.window_sent: dict[int, float] = {}  # frames sent at the window's end -> when
        self.ws: WsClient | None = None
        self.sse: SseClient | None = None
        self.measuring = False
        self.acked_all = asyncio.get_running_loop().create_future()

    def due(self, now: float) -> bool:
        return (not self.in_flight and self.next < self.n_frames
                and self.t0 + self.next * FRAME_S <= now)

    def send(self) -> None:
        assert self.ws is not None and self.ws.transport is not None
        i = self.next
        self.next += 1
        now = time.perf_counter()
        if (i + 1) % 10 == 0:
            self.window_sent[i + 1] = now
        self.in_flight.append(now)
        self.ws.transport.write(self.frames[i % len(self.frames)])


class WsClient(asyncio.Protocol):
    def __init__(self, stream: Stream, port: int) -> None:
        self.stream = stream
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET /session/{self.stream.sid}/audio HTTP/1.1\r\n"
                         f"Host: {HOST}:{self.port}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.buf[: self.buf.find(b"\r\n")]:
                self.upgraded.set_exception(RuntimeError(bytes(self.buf[:200]).decode()))
                return
            del self.buf[: end + 4]
            self.upgraded.set_result(None)
        buf, pos, n = self.buf, 0, len(self.buf)
        s = self.stream
        while n - pos >= 2:
            op, ln = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            hdr = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln, hdr = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln, hdr = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if n - pos < hdr + ln:
                break
            start = pos + hdr
            pos = start + ln
            if op == 1:
                self.on_ack(buf, start, ln, s)
            elif op == 9 and self.transport is not None:
                # The server's keepalive ping (uvicorn: every 20 s, closing the socket if no
                # pong comes within 20 s more), answered as browsers do.
                self.transport.write(masked_control_frame(0xA, bytes(buf[start:pos]),
                                                          os.urandom(4)))
            elif op == 8 and not self.closed.done():
                self.closed.set_result(bytes(buf[start : start + 2]))
        del buf[:pos]

    def on_ack(self, buf: bytearray, start: int, ln: int, s: Stream) -> None:
        now = time.perf_counter()
        st = s.stats
        if not s.in_flight:
            st.error("ack without a frame in flight")
            return
        sent = s.in_flight.popleft()
        st.acks += 1
        if buf[start : start + 11] != b'{"ok": true':
            st.error(f"not ok: {bytes(buf[start : start + ln])!r}")
        elif s.next % 10 == 0:  # parse every 10th ack only
            msg = json.loads(bytes(buf[start : start + ln]))
            if msg.get("bytes") != FRAME * 2 or msg.get("samples") != s.next * FRAME:
                st.error(f"bad ack {msg} after {s.next} frames")
        if s.measuring:
            st.ack_ms.append((now - sent) * 1000)
        if s.next >= s.n_frames:
            if not s.acked_all.done():
                s.acked_all.set_result(None)
        elif s.due(now):  # late: catch up at once, as a client waiting for acks does
            s.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(b"")
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed before the upgrade"))


class SseClient(asyncio.Protocol):
    def __init__(self, stream: Stream, port: int) -> None:
        self.stream = stream
        self.port = port
        self.raw = bytearray()
        self.body = bytearray()
        self.headers_done = False
        self.chunk_left = -1  # -1: expecting a size line
        self.connected = asyncio.get_running_loop().create_future()
        self.ended = asyncio.get_running_loop().create_future()
        self.last_id = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write((f"GET /session/{self.stream.sid}/stream HTTP/1.1\r\n"
                         f"Host: {HOST}:{self.port}\r\nAccept: text/event-stream\r\n\r\n"
                         ).encode())

    def data_received(self, data: bytes) -> None:
        raw = self.raw
        raw += data
        if not self.headers_done:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(raw[:end]).lower()
            if b" 200 " not in head.split(b"\r\n", 1)[0] or b"chunked" not in head:
                self.connected.set_exception(RuntimeError(head[:200].decode()))
                return
            del raw[: end + 4]
            self.headers_done = True
            self.connected.set_result(None)
        # Chunked transfer decoding into ``body``; ``chunk_left`` counts the chunk's CRLF.
        pos = 0
        while True:
            if self.chunk_left < 0:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(raw[pos:eol], 16)
                pos = eol + 2
                if size == 0:
                    break
                self.chunk_left = size + 2
            take = min(self.chunk_left, len(raw) - pos)
            data_take = min(take, max(self.chunk_left - 2, 0))
            self.body += raw[pos : pos + data_take]
            pos += take
            self.chunk_left -= take
            if self.chunk_left:
                break
            self.chunk_left = -1
        del raw[:pos]
        self.frames()

    def frames(self) -> None:
        body = self.body
        start = 0
        while True:
            end = body.find(b"\n\n", start)
            if end < 0:
                break
            self.on_frame(bytes(body[start:end]))
            start = end + 2
        del body[:start]

    def on_frame(self, frame: bytes) -> None:
        if not frame.startswith(b"id: "):
            return  # retry, heartbeat or a comment: no event
        s = self.stream
        eol = frame.index(b"\n")
        seq = int(frame[4:eol])
        if seq != self.last_id + 1:
            s.stats.error(f"seq {seq} after {self.last_id}")
        self.last_id = seq
        kind_end = frame.index(b"\n", eol + 1)
        kind = frame[eol + 8 : kind_end]
        if kind == b"tone-event":
            now = time.perf_counter()
            s.stats.tone_events += 1
            at = frame.find(b'"end_time":')
            stop = at + 11
            while frame[stop] not in b",}":
                stop += 1
            frames_done = round(float(frame[at + 11 : stop]) / FRAME_S)
            sent = s.window_sent.pop(frames_done, None)
            if sent is not None and s.measuring:
                s.stats.window_ms.append((now - sent) * 1000)
                s.stats.window_at.append(sent - s.stats.base)
        elif kind == b"session-end" and not self.ended.done():
            self.ended.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("closed before the headers"))


# -- one client process -------------------------------------------------------------------------

def client_process(port: int, n: int, seconds: float, seed: int, q: Any, go: Any) -> None:
    # uvloop where the server has it (uvicorn's extra): the load generator shares the
    # machine with the server, so its own event loop's overhead is the server's loss.
    try:
        import uvloop
        run: Any = uvloop.run  # (uvloop 0.18 and later)
    except (ImportError, AttributeError):
        run = asyncio.run
    q.put(run(client_main(port, n, seconds, seed, q, go)))


async def client_main(port: int, n: int, seconds: float, seed: int, q: Any, go: Any
                      ) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pcm = voice(VOICE_S, seed=seed)
    mask = os.urandom(4)
    frames = [masked_binary_frame(pcm[i * FRAME * 2 : (i + 1) * FRAME * 2], mask)
              for i in range(int(VOICE_S * SR) // FRAME)]
    stats = Stats()
    n_frames = round(seconds * 10)
    streams: list[Stream] = []
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def setup() -> None:
        async with gate:
            status, body = await http_request(port, "POST", "/session/start",
                                              b'{"min_confidence": 0.0}')
            if status != 200:
                raise RuntimeError(f"start: {status} {body[:200]!r}")
            s = Stream(json.loads(body)["session_id"], n_frames, frames, stats)
            _, s.sse = await loop.create_connection(lambda: SseClient(s, port), HOST, port)
            await asyncio.wait_for(s.sse.connected, 30)
            _, s.ws = await loop.create_connection(lambda: WsClient(s, port), HOST, port)
            await asyncio.wait_for(s.ws.upgraded, 30)
            streams.append(s)

    await asyncio.gather(*(setup() for _ in range(n)))
    q.put("ready")
    await loop.run_in_executor(None, go.wait)

    # Stream: start k at k/n s; one ticker serves the streams whose phase is due.
    cpu0 = time.process_time()
    base = time.perf_counter() + 0.05
    stats.base = base
    slots: list[list[Stream]] = [[] for _ in range(10)]
    for k, s in enumerate(streams):
        offset = k / max(n, 1)
        s.t0 = base + offset
        s.measuring = True
        slots[round((offset % FRAME_S) / TICK_S) % 10].append(s)
    deadline = base + seconds + 30
    tick = 0
    pending = set(streams)
    while pending and time.perf_counter() < deadline:
        now = time.perf_counter()
        for slot in (slots[tick % 10], slots[(tick - 1) % 10]):
            for s in slot:
                if s.due(now):
                    s.send()
        if tick % 10 == 0:
            pending = {s for s in pending if not s.acked_all.done()}
        tick += 1
        await asyncio.sleep(max(0.0, base + tick * TICK_S - time.perf_counter()))
    # The last window's tone event may still be on its way: wait for it (bounded).
    t_end = time.perf_counter() + 10
    while any(s.window_sent for s in streams) and time.perf_counter() < t_end:  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # polls every stream's pending windows; bounded
    cpu = time.process_time() - cpu0
    q.put("streamed")
    for s in streams:
        s.measuring = False

    # Tear down: close the ingest sockets, end the sessions, wait for every session-end.
    async def teardown(s: Stream) -> None:
        assert s.ws is not None and s.ws.transport is not None and s.sse is not None
        s.ws.transport.write(masked_close_frame(mask))
        async with gate:
            status, _ = await http_request(port, "DELETE", f"/session/{s.sid}/end")
        if status != 200:
            stats.error(f"end: {status}")
        try:
            await asyncio.wait_for(asyncio.shield(s.sse.ended), 15)
        except TimeoutError:
            stats.error("no session-end")
        for t in (s.ws.transport, s.sse.transport):
            if t is not None:
                t.close()

    await asyncio.gather(*(teardown(s) for s in streams))
    missing = sum(len(s.window_sent) for s in streams)
    if stats.acks != n * n_frames:
        stats.error(f"{stats.acks} acks for {n * n_frames} frames")
    return {"window_ms": stats.window_ms, "window_at": stats.window_at,
            "ack_ms": stats.ack_ms, "acks": stats.acks,
            "tone_events": stats.tone_events, "missing_windows": missing,
            "errors": stats.errors, "cpu": cpu}


# -- the driver ---------------------------------------------------------------------------------

async def warm_up(port: int, seconds: int = 3) -> None:
    """One session end to end (audio sent as fast as it is acknowledged) before the first
    level, so that no level measures the analysis workers' start (imports, first calls)."""
    loop = asyncio.get_running_loop()
    pcm = voice(float(seconds))
    mask = os.urandom(4)
    frames = [masked_binary_frame(pcm[i : i + FRAME * 2], mask)
              for i in range(0, len(pcm), FRAME * 2)]
    status, body = await http_request(port, "POST", "/session/start", b'{"min_confidence": 0}')
    assert status == 200, body
    s = Stream(json.loads(body)["session_id"], len(frames), frames, Stats())
    _, s.sse = await loop.create_connection(lambda: SseClient(s, port), HOST, port)
    await asyncio.wait_for(s.sse.connected, 60)
    _, s.ws = await loop.create_connection(lambda: WsClient(s, port), HOST, port)
    await asyncio.wait_for(s.ws.upgraded, 60)
    s.t0 = 0.0  # every frame is due: each is sent as the previous one is acknowledged
    s.send()
    await asyncio.wait_for(s.acked_all, 60)
    await http_request(port, "DELETE", f"/session/{s.sid}/end")
    await asyncio.wait_for(s.sse.ended, 60)
    if s.stats.tone_events < seconds:
        raise RuntimeError(f"warm-up: {s.stats.tone_events} tone events for {seconds} s")
    for t in (s.ws.transport, s.sse.transport):
        if t is not None:
            t.close()


_STAGES: Final = {"analysis": b"tonewire_window_analysis_seconds",
                  "event": b"tonewire_window_to_event_seconds",
                  "batch": b"tonewire_live_batch_windows",
                  "batch_wait": b"tonewire_live_batch_wait_seconds",
                  "batch_work": b"tonewire_live_batch_seconds"}


def stage_sums(port: int) -> tuple[dict[str, tuple[float, float]], float]:
    """``(sum, count)`` of the server's window and batch histograms, and how many windows it
    published within 100 ms (its share of the tail), from ``/metrics``."""
    status, body = asyncio.run(http_request(port, "GET", "/metrics"))
    if status != 200:
        raise RuntimeError(f"/metrics: {status}")
    sums = {name: (metric_value(body, metric + b"_sum "), metric_value(body, metric + b"_count "))
            for name, metric in _STAGES.items()}
    return sums, metric_value(body, b'tonewire_window_to_event_seconds_bucket{le="0.1"} ')


def metric_value(body: bytes, prefix: bytes) -> float:
    for line in body.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p)) if xs else float("nan")


def run_level(port: int, pid: int, streams: int, seconds: float, clients: int,
              py_spy: str | None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    go = ctx.Event()
    per = [streams // clients + (1 if i < streams % clients else 0) for i in range(clients)]
    procs = [ctx.Process(target=client_process, args=(port, k, seconds, i, q, go))
             for i, k in enumerate(per) if k]
    for p in procs:
        p.start()
    for _ in procs:
        msg = q.get(timeout=300)
        if msg != "ready":
            raise RuntimeError(f"client failed in set-up: {str(msg)[:500]}")
    spy = None
    if py_spy:
        spy = subprocess.Popen(["py-spy", "record", "-p", str(pid), "--subprocesses",
                                "-r", "100", "-f", "raw", "-o", f"{py_spy}-{streams}.raw",
                                "-d", str(int(seconds))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics0, under0 = stage_sums(port)
    cpu0, _ = tree_cpu_rss(pid)
    loop0 = loop_cpu(pid)
    steal0 = stolen_cpu()
    t0 = time.perf_counter()
    started_at = time.time()  # wall clock, to line the level up with the server's logs
    go.set()
    results: list[dict[str, Any]] = []
    streamed = 0
    while streamed < len(procs):  # a quick client's results may come before a slow one is done
        msg = q.get(timeout=seconds + 120)
        if msg == "streamed":
            streamed += 1
        elif isinstance(msg, dict):
            results.append(msg)
        else:
            raise RuntimeError(f"client failed while streaming: {str(msg)[:500]}")
    wall = time.perf_counter() - t0
    cpu1, rss = tree_cpu_rss(pid)
    loop1 = loop_cpu(pid)
    steal1 = stolen_cpu()
    metrics1, under1 = stage_sums(port)
    stage = {k: (metrics1[k][0] - metrics0[k][0]) / max(metrics1[k][1] - metrics0[k][1], 1)
             for k in _STAGES}  # means over the level
    published = metrics1["event"][1] - metrics0["event"][1]
    server_late = published - (under1 - under0)
    load = os.getloadavg()[0]
    results += [q.get(timeout=180) for _ in range(len(procs) - len(results))]
    for p in procs:
        p.join(timeout=30)
    if spy is not None:
        spy.wait(timeout=60)
    window = [x for r in results for x in r["window_ms"]]
    at = [x for r in results for x in r["window_at"]]
    # Without the first seconds: all streams start within one second, a burst no steady
    # load has (sessions set up, the worker's first batches).
    steady = [w for w, t in zip(window, at, strict=True) if t >= STEADY_AFTER_S]
    by_second: dict[int, list[float]] = {}
    for w, t in zip(window, at, strict=True):
        by_second.setdefault(int(t), []).append(w)
    ack = [x for r in results for x in r["ack_ms"]]
    errors = [e for r in results for e in r["errors"]]
    expected = streams * int(seconds)
    return {"streams": streams, "started_at": started_at, "events": len(window),
            "expected": expected,
            "tone_events": sum(r["tone_events"] for r in results),
            "acks": sum(r["acks"] for r in results), "frames": streams * int(seconds * 10),
            "errors": errors,
            "window_p50": pct(window, 50), "window_p99": pct(window, 99),
            "steady_p99": pct(steady, 99),
            # Server side, from its histograms: mean ms from a window's last sample to its
            # analysis being back, and from there to its events being published.
            "analysis_ms": stage["analysis"] * 1000,
            "store_ms": (stage["event"] - stage["analysis"]) * 1000,
            # Batches to the live workers: mean windows, ms the oldest waited, ms in the worker.
            "batch_windows": stage["batch"], "batch_wait_ms": stage["batch_wait"] * 1000,
            "batch_work_ms": stage["batch_work"] * 1000,
            # Windows over 100 ms: as the server timed them (last sample in to events
            # published) and as the clients did (last frame sent to tone event read).
            "late_server": server_late, "late_client": sum(w > 100 for w in window),
            "p99_by_second": {k: round(pct(v, 99), 1) for k, v in sorted(by_second.items())},
            "ack_p50": pct(ack, 50), "ack_p99": pct(ack, 99),
            "server_cpu": (cpu1 - cpu0) / wall, "rss_mib": rss / 2**20,
            "loop_cpu": (loop1 - loop0) / wall,
            "server_ms_per_window": (cpu1 - cpu0) * 1000 / max(expected, 1),
            "client_cpu": sum(r["cpu"] for r in results) / wall, "load": load,
            "steal": (steal1 - steal0) / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, nargs="+", default=[50, 100, 200, 300, 500])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--live-workers", type=int, default=None,
                    help="TONEWIRE_LIVE_WORKERS for the server (default: the server's)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting for the server, e.g. --set LIVE_GATHER_MS=10 "
                    "(TONEWIRE_ is added; repeatable)")
    ap.add_argument("--server-path", default=None,
                    help="run the server with PYTHONPATH=DIR (another checkout)")
    ap.add_argument("--py-spy", default=None, metavar="OUT",
                    help="record the server tree with py-spy per level to OUT-<N>.raw")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write results here")
    args = ap.parse_args()
    port = free_port()
    data = tempfile.mkdtemp(prefix="tonewire-bench-")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TONEWIRE_")},
           "TONEWIRE_DATA_DIR": data, "TONEWIRE_MAX_SESSIONS": "5000",
           "TONEWIRE_RATE_LIMIT_PER_MINUTE": "0", "TONEWIRE_WORKERS": "1"}
    if args.live_workers is not None:
        env["TONEWIRE_LIVE_WORKERS"] = str(args.live_workers)
    for setting in args.set:
        name, sep, value = setting.partition("=")
        if not sep:
            ap.error(f"--set wants NAME=VALUE, got {setting!r}")
        env["TONEWIRE_" + name.upper().removeprefix("TONEWIRE_")] = value
    if args.server_path:
        env["PYTHONPATH"] = args.server_path
    log_path = os.path.join(data, "server.log")
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        server = subprocess.Popen([sys.executable, "-m", "tonewire.cli", "serve", "--host", HOST,
                                   "--port", str(port)], env=env, stdout=log, stderr=log,
                                  start_new_session=True,
                                  cwd=data)  # `-m` puts the cwd first: it would beat PYTHONPATH
    rows = []
    try:
        for _ in range(300):
            try:
                if asyncio.run(http_request(port, "GET", "/health"))[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        print(f"server pid {server.pid}, log {log_path}", flush=True)
        asyncio.run(warm_up(port))
        print(f"{'streams':>7} {'events':>11} {'win p50':>8} {'win p99':>8} {'p99 2s+':>8} "
              f"{'ack p50':>8} {'ack p99':>8} {'an ms':>6} {'st ms':>6} {'batch':>15} "
              f"{'late s/c':>9} {'cpu':>5} {'loop':>5} {'ms/win':>6} {'rss MiB':>7} {'client':>6} "
              f"{'load':>5} {'steal':>5}  check")
        best = 0
        for n in args.streams:
            r = run_level(port, server.pid, n, args.seconds, args.clients, args.py_spy)
            rows.append(r)
            ok = (not r["errors"] and r["acks"] == r["frames"]
                  and r["tone_events"] >= r["expected"])
            print(f"{r['streams']:>7} {r['events']:>5}/{r['expected']:<5} "
                  f"{r['window_p50']:>8.1f} {r['window_p99']:>8.1f} {r['steady_p99']:>8.1f} "
                  f"{r['ack_p50']:>8.2f} {r['ack_p99']:>8.2f} {r['analysis_ms']:>6.1f} "
                  f"{r['store_ms']:>6.1f} {r['batch_windows']:>5.1f}"
                  f"/{r['batch_wait_ms']:>4.1f}/{r['batch_work_ms']:>4.1f} "
                  f"{r['late_server']:>4.0f}/{r['late_client']:<4} {r['server_cpu']:>5.2f} "
                  f"{r['loop_cpu']:>5.2f} {r['server_ms_per_window']:>6.2f} {r['rss_mib']:>7.0f} "
                  f"{r['client_cpu']:>6.2f} {r['load']:>5.1f} {r['steal']:>5.2f}  "
                  f"{'ok' if ok else '! ' + '; '.join(r['errors'][:3])}", flush=True)
            if r["window_p99"] < 100 and r["events"] >= 0.9 * r["expected"]:
                best = n
        print(f"largest N with window-to-event p99 < 100 ms: {best} (target 500)")
        print("latencies in ms; an ms / st ms = the server's mean ms from a window's last "
              "sample to its analysis back / from there to its events published; batch = mean "
              "windows per worker call / ms its oldest window waited / ms in the worker; late s/c "
              "= windows over 100 ms as the server timed them / as the clients did; "
              "cpu = server process tree CPU seconds per second (2.0 = both cores) while "
              "streaming; loop = its event-loop thread alone; "
              "ms/win = server CPU ms per window; "
              "client = load-generator processes' CPU, same units; load = 1-min load average; "
              "steal = CPU the hypervisor took from this machine, same units (a shared host)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump([{k: v for k, v in r.items()} for r in rows], f, indent=1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
