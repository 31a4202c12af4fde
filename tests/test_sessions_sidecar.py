"""Live sessions with ``classifier=sidecar`` against a real ``tonewire serve`` and a stand-in
sidecar this module runs itself (``http.server`` in a thread on 127.0.0.1): what the server
posts, the events it makes of the answers, and that a failing, slow or stopped sidecar only
ever produces ``service-event`` warnings and the session carries on when it comes back."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from server import RunningServer, SseFrame, sse_frames, start_server, watched_client

SR = 16000
WINDOW_BYTES = 2 * SR  # the default window: 1 s of PCM16
FRAME = 3200
WAIT_S = 20.0
SIDECAR_TIMEOUT_S = 1.0
Events = list[tuple[str, dict[str, Any]]]


# -- the stand-in sidecar ---------------------------------------------------------------------

class Sidecar:
    """``GET /health`` and ``POST /classify`` as the original's voice sidecar.

    ``mode``: ``ok`` (a tone and a transcript per window, plus an unknown event type and a
    tone under the confidence floor, which the server must drop), ``fail`` (500 from
    /classify), ``garbage`` (200 with a body that is not JSON), ``slow`` (answers after the
    server's timeout), ``unhealthy`` (503 from /health, /classify still works)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()  # lets a slow answer go at once on stop

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (on the same port as before, after a :meth:`stop`)."""
        sidecar = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _reply(self, status: int, body: bytes,
                       content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != "/health":
                    self._reply(404, b'{"detail": "not found"}')
                elif sidecar.mode == "unhealthy":
                    self._reply(503, b'{"status": "starting"}')
                else:
                    self._reply(200, b'{"status": "ok"}')

            def do_POST(self) -> None:
                if self.path != "/classify":
                    self._reply(404, b'{"detail": "not found"}')
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with sidecar._lock:
                    sidecar.requests.append(body)
                mode = sidecar.mode
                if mode == "fail":
                    self._reply(500, b'{"detail": "model crashed"}')
                    return
                if mode == "garbage":
                    self._reply(200, b"<html>oops</html>", "text/html")
                    return
                if mode == "slow":
                    sidecar._release.wait(SIDECAR_TIMEOUT_S * 3)
                ts = body["timestamp"]
                events = [
                    {"event_type": "tone", "label": "warm", "confidence": 0.9,
                     "timestamp": ts, "speaker_id": "s1"},
                    {"event_type": "transcript", "text": "hello", "timestamp": ts,
                     "speaker_id": "s1"},
                    {"event_type": "tone", "label": "unsure", "confidence": 0.1,
                     "timestamp": ts},
                    {"event_type": "laughter", "timestamp": ts},
                    "not an object",
                ]
                self._reply(200, json.dumps({"events": events}).encode())

        self._release.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join(10)
        self._httpd = None

    def of(self, sid: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r.get("session_id") == sid]


@pytest.fixture(scope="module")
def sidecar() -> Iterator[Sidecar]:
    s = Sidecar()
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def sidecar_up(sidecar: Sidecar) -> Iterator[None]:
    """Every test starts and ends with a healthy sidecar."""
    sidecar.mode = "ok"
    if sidecar._httpd is None:
        sidecar.start()
    yield
    sidecar.mode = "ok"
    if sidecar._httpd is None:
        sidecar.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sidecar: Sidecar
           ) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("sidecar"), workers=1, sse_heartbeat_s=0.2,
                      sidecar_url=sidecar.url, sidecar_timeout_s=SIDECAR_TIMEOUT_S) as s:
        yield s


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with watched_client(server, cancel_jobs=False) as client:
        yield client


# -- clients ------------------------------------------------------------------------------------

def voice(seconds: float, f0: float = 150.0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 20))
    env = np.sin(np.pi * ((t * 4.0) % 1.0)) ** 2
    out: np.ndarray = (0.3 * x * env / np.max(np.abs(x))).astype(np.float32)
    return out


def pcm16(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()


def ingest(server: RunningServer, sid: str) -> Any:
    url = server.url.replace("http://", "ws://", 1) + f"/session/{sid}/audio"
    return websockets.connect(url, compression=None, open_timeout=10, close_timeout=10)


async def start(http: httpx.AsyncClient, **options: Any) -> str:
    r = await http.post("/session/start", json={"classifier": "sidecar", **options})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["options"]["classifier"] == "sidecar"
    sid: str = body["session_id"]
    return sid


async def send(ws: Any, data: bytes, *, start: int = 0) -> int:
    total = start
    for i in range(0, len(data), FRAME):
        frame = data[i : i + FRAME]
        await ws.send(frame)
        total += len(frame) // 2
        ack = json.loads(await ws.recv())
        assert ack == {"ok": True, "bytes": len(frame), "samples": total}, ack
    return total


def parse(frames: list[SseFrame]) -> Events:
    out: Events = []
    for f in frames:
        if f.event is not None and f.data is not None:
            data = json.loads(f.data)
            if f.id is not None:
                assert int(f.id) == data["seq"]
            out.append((f.event, data))
    return out


async def wait_events(http: httpx.AsyncClient, sid: str, until: Callable[[Events], bool], *,
                      timeout: float = WAIT_S) -> Events:
    """Follow the session's SSE stream (from the start) until ``until(events)``."""
    frames: list[SseFrame] = []
    try:
        async with asyncio.timeout(timeout):
            async with http.stream("GET", f"/session/{sid}/stream") as r:
                assert r.status_code == 200
                async for f in sse_frames(r):
                    frames.append(f)
                    if f.event is not None and until(parse(frames)):
                        break
    except TimeoutError:
        raise AssertionError(f"timed out; got {parse(frames)}") from None
    return parse(frames)


async def end(http: httpx.AsyncClient, sid: str) -> Events:
    r = await http.delete(f"/session/{sid}/end")
    assert r.status_code == 200, r.text
    events = await wait_events(http, sid, lambda evs: evs[-1][0] == "session-end")
    assert [d["seq"] for _, d in events] == list(range(1, len(events) + 1))
    return events


def of(events: Events, kind: str) -> list[dict[str, Any]]:
    return [d for t, d in events if t == kind]


def warnings(events: Events) -> list[dict[str, Any]]:
    return [d for d in of(events, "service-event") if d["status"] == "warning"]


async def state(http: httpx.AsyncClient, sid: str) -> str:
    r = await http.get(f"/session/{sid}")
    assert r.status_code == 200, r.text
    value: str = r.json()["state"]
    return value


# -- tests --------------------------------------------------------------------------------------

async def test_sidecar_windows_become_tone_and_transcript_events(
        http: httpx.AsyncClient, server: RunningServer, sidecar: Sidecar) -> None:
    sid = await start(http)
    data = pcm16(voice(3.0))
    async with ingest(server, sid) as ws:
        await send(ws, data)
    events = await end(http, sid)
    assert events[0][0] == "service-event"
    assert events[0][1]["status"] == "ready" and events[0][1]["service"] == "sidecar"
    assert events[0][1]["seq"] == 1

    # What the server posted: each window's PCM16, its start on the sample clock, the session.
    posted = sidecar.of(sid)
    assert [r["timestamp"] for r in posted] == [0.0, 1.0, 2.0]
    for i, req in enumerate(posted):
        assert set(req) == {"audio_b64", "sample_rate", "timestamp", "session_id"}
        assert req["sample_rate"] == SR
        audio = base64.b64decode(req["audio_b64"], validate=True)
        assert len(audio) == WINDOW_BYTES
        assert audio == data[i * WINDOW_BYTES : (i + 1) * WINDOW_BYTES]

    tones = of(events, "tone-event")
    assert [t["timestamp"] for t in tones] == [0.0, 1.0, 2.0]
    for t in tones:
        assert t["label"] == "warm" and t["confidence"] == 0.9
        assert t["speaker_id"] == "s1" and t["session_id"] == sid
        # The original's tone fields are all there, defaulted where the sidecar is silent.
        assert t["shift_magnitude"] == 0.0 and t["shift_direction"] == "stable"
        assert t["prosody_flags"] == [] and t["subtext"] == "" and t["affect"] is None
    transcripts = of(events, "transcript-event")
    assert [(t["text"], t["timestamp"], t["speaker_id"]) for t in transcripts] == [
        ("hello", 0.0, "s1"), ("hello", 1.0, "s1"), ("hello", 2.0, "s1")]
    # The tone under the floor, the unknown type and the non-object are dropped.
    assert {t for t, _ in events} == {"service-event", "tone-event", "transcript-event",
                                      "session-end"}
    assert warnings(events) == []
    # History holds the sidecar's tone events.
    history = (await http.get(f"/session/{sid}/history")).json()
    assert [e["label"] for e in history["events"]] == ["warm"] * 3


async def test_min_confidence_applies_to_sidecar_tones(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http, min_confidence=0.0)
    async with ingest(server, sid) as ws:
        await send(ws, pcm16(voice(1.0)))
    events = await end(http, sid)
    assert sorted(t["label"] for t in of(events, "tone-event")) == ["unsure", "warm"]
    sid = await start(http, min_confidence=0.95)
    async with ingest(server, sid) as ws:
        await send(ws, pcm16(voice(1.0)))
    events = await end(http, sid)
    assert of(events, "tone-event") == []
    assert len(of(events, "transcript-event")) == 1


@pytest.mark.parametrize("mode", ["fail", "garbage", "slow"])
async def test_a_failing_sidecar_warns_and_the_session_recovers(
        http: httpx.AsyncClient, server: RunningServer, sidecar: Sidecar, mode: str) -> None:
    sid = await start(http)
    sidecar.mode = mode
    async with ingest(server, sid) as ws:
        total = await send(ws, pcm16(voice(2.0)))
        events = await wait_events(http, sid, lambda evs: bool(warnings(evs)))
        warning = warnings(events)[0]
        assert warning["service"] == "sidecar" and warning["session_id"] == sid
        assert "sidecar failed" in warning["message"]
        assert of(events, "tone-event") == []
        assert await state(http, sid) == "active"
        # Back to health: the next windows are classified, on the same socket.
        sidecar.mode = "ok"
        await send(ws, pcm16(voice(2.0)), start=total)
        events = await wait_events(http, sid, lambda evs: any(
            t["timestamp"] == 3.0 for t in of(evs, "tone-event")))
        assert {2.0, 3.0} <= {t["timestamp"] for t in of(events, "tone-event")}
        assert await state(http, sid) == "active"
    events = await end(http, sid)
    assert len(warnings(events)) == 1  # warnings are rate-limited per session
    assert events[-1][1]["reason"] == "ended"


async def test_a_stopped_sidecar_warns_and_the_session_recovers(
        http: httpx.AsyncClient, server: RunningServer, sidecar: Sidecar) -> None:
    running = await start(http)
    sidecar.stop()
    # A session started while the sidecar is down says so at once, and is still started.
    down = await start(http)
    first = await wait_events(http, down, lambda evs: len(evs) >= 1)
    assert first[0][0] == "service-event" and first[0][1]["status"] == "error"
    assert "unreachable" in first[0][1]["message"]
    async with ingest(server, running) as ws:
        total = await send(ws, pcm16(voice(1.0)))
        events = await wait_events(http, running, lambda evs: bool(warnings(evs)))
        assert "sidecar failed" in warnings(events)[0]["message"]
        assert await state(http, running) == "active"
        sidecar.start()  # on the same port
        await send(ws, pcm16(voice(2.0)), start=total)
        events = await wait_events(http, running, lambda evs: any(
            t["timestamp"] == 2.0 for t in of(evs, "tone-event")))
        assert [t["timestamp"] for t in of(events, "tone-event")] == [1.0, 2.0]
    async with ingest(server, down) as ws:
        await send(ws, pcm16(voice(1.0)))
    events = await end(http, down)
    assert [t["timestamp"] for t in of(events, "tone-event")] == [0.0]
    await end(http, running)


async def test_an_unhealthy_sidecar_is_a_warning_at_start(
        http: httpx.AsyncClient, sidecar: Sidecar) -> None:
    sidecar.mode = "unhealthy"
    sid = await start(http)
    events = await end(http, sid)
    assert events[0][0] == "service-event"
    assert events[0][1]["status"] == "warning" and "503" in events[0][1]["message"]


async def test_no_sidecar_configured(tmp_path: Path) -> None:
    with start_server(tmp_path, workers=1) as plain:
        async with httpx.AsyncClient(base_url=plain.url, timeout=30) as http:
            sid = await start(http)
            first = await wait_events(http, sid, lambda evs: len(evs) >= 1)
            status = first[0][1]
            assert first[0][0] == "service-event"
            assert status["status"] == "error" and status["service"] == "sidecar"
            assert "no sidecar is configured" in status["message"]
            async with ingest(plain, sid) as ws:
                await send(ws, pcm16(voice(1.0)))
                events = await wait_events(http, sid, lambda evs: bool(warnings(evs)))
                assert "no sidecar is configured" in warnings(events)[0]["message"]
                assert await state(http, sid) == "active"
            events = await end(http, sid)
            assert of(events, "tone-event") == []
