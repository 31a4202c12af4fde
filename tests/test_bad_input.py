"""The bad-input suite: a corpus of malformed audio, hostile uploads, oversized and broken
bodies, bogus ``Last-Event-ID`` values, malformed Socket.IO payloads and odd WebSocket frames,
all sent to one live server that already holds good work.

Every case must get a 4xx, an ``error`` event or a close code whose code is documented in
``docs/errors.md``; nothing may answer 5xx; the process stays up; and the job and the live
session made before the onslaught are served byte for byte as they were.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import signals as S
import websockets
from server import (
    RunningServer,
    collect_sse,
    create_job,
    sio_client,
    start_server,
    wait_for_status,
    wait_until,
    write_music,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
MAX_DURATION_S = 600
UPLOAD_LIMIT = 2_000_000


def documented_codes() -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z_]{3,})`", DOCS.read_text()))


@dataclass
class Seen:
    """Every code a case produced, with what produced it."""

    codes: dict[str, list[str]] = field(default_factory=dict)

    def add(self, code: str, case: str) -> None:
        self.codes.setdefault(code, []).append(case)


@pytest.fixture(scope="module")
def seen() -> Iterator[Seen]:
    got = Seen()
    yield got
    undocumented = {c: cases for c, cases in got.codes.items() if c not in documented_codes()}
    assert not undocumented, f"codes missing from docs/errors.md: {undocumented}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("bad"), workers=1,
                      max_duration_s=MAX_DURATION_S, max_upload_bytes=UPLOAD_LIMIT) as s:
        yield s


@dataclass
class Before:
    job_id: str
    analysis: bytes
    stream: list[tuple[str, Any]]
    session_id: str
    history: list[dict[str, Any]]


@pytest.fixture(scope="module")
def before(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Before:
    """Good work done before any bad input arrives."""
    d = tmp_path_factory.mktemp("bad-good")
    return asyncio.run(_good_work(server, write_music(d / "good.wav", 4.0, seed=77)))


async def _good_work(server: RunningServer, wav: Path) -> Before:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
        job_id = await create_job(c, wav)
        await wait_for_status(c, job_id)
        analysis = (await c.get(f"/api/jobs/{job_id}/analysis")).content
        stream = (await collect_sse(c, job_id)).events()
        sid = (await c.post("/session/start", json={"window_ms": 500})).json()["session_id"]
        t = np.arange(32000) / 16000  # 2 s of a voiced, syllabic 180 Hz buzz
        buzz = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 8))
        voice = 0.25 * buzz * (0.6 + 0.4 * np.sin(2 * np.pi * 4.5 * t))
        pcm = (np.clip(voice, -1, 1) * 32767).astype("<i2").tobytes()
        async with websockets.connect(_ws(server, f"/session/{sid}/audio"),
                                      compression=None) as ws:
            for i in range(0, len(pcm), 3200):
                await ws.send(pcm[i:i + 3200])
                assert json.loads(await ws.recv())["ok"]
        await wait_until(lambda: _history(c, sid), what="the session's first events")
        history = await _history(c, sid)
    return Before(job_id, analysis, stream, sid, history)


async def _history(c: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    r = await c.get(f"/session/{sid}/history")
    events: list[dict[str, Any]] = r.json()["events"]
    return events


def _ws(server: RunningServer, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
        yield c


def _check_4xx(r: httpx.Response, case: str, seen: Seen) -> str:
    assert 400 <= r.status_code < 500, f"{case}: {r.status_code} {r.text[:300]}"
    code: str = r.json()["code"]
    seen.add(code, case)
    return code


# -- a corpus of malformed audio ------------------------------------------------------------------
def wav_header(*, rate: int = 16000, channels: int = 1, bits: int = 16, data_bytes: int,
               fmt_tag: int = 1, riff_size: int | None = None) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF,
                      block & 0xFFFF, bits)
    riff = riff_size if riff_size is not None else 4 + 8 + len(fmt) + 8 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt)) + fmt + b"data"
            + struct.pack("<I", data_bytes & 0xFFFFFFFF))


def _corpus(good: bytes, mp3: bytes, flac: bytes) -> dict[str, bytes]:
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, 40_000, dtype=np.uint8).tobytes()
    pcm = (rng.standard_normal(16000) * 3000).astype("<i2").tobytes()
    return {
        "random.mp3": noise,
        "random.wav": noise[:20_000],
        "random": noise[:5_000],
        "empty.wav": b"",
        "one-byte.mp3": b"\xff",
        "image.wav": b"\x89PNG\r\n\x1a\n" + noise[:2000],
        "text-as-audio.flac": b"this is not audio\n" * 200,
        "truncated.mp3": mp3[: len(mp3) // 3],
        "truncated.flac": flac[: len(flac) // 2],
        "truncated.wav": good[: len(good) // 2],
        "header-only.wav": good[:44],
        "corrupt-fmt.wav": good[:20] + b"\xff" * 16 + good[36:],
        "corrupt-magic.wav": b"RIFX" + good[4:],
        "rate-zero.wav": wav_header(rate=0, data_bytes=len(pcm)) + pcm,
        "rate-one.wav": wav_header(rate=1, data_bytes=len(pcm)) + pcm,
        "rate-4ghz.wav": wav_header(rate=4_000_000_000, data_bytes=len(pcm)) + pcm,
        "channels-zero.wav": wav_header(channels=0, data_bytes=len(pcm)) + pcm,
        "channels-65535.wav": wav_header(channels=65535, data_bytes=len(pcm)) + pcm,
        "bits-7.wav": wav_header(bits=7, data_bytes=len(pcm)) + pcm,
        "unknown-format-tag.wav": wav_header(fmt_tag=0x7777, data_bytes=len(pcm)) + pcm,
        "claims-hours.wav": wav_header(rate=8000, data_bytes=0xFFFFFFF0) + pcm[:2000],
        "claims-more-than-it-has.wav": wav_header(data_bytes=10 * len(pcm)) + pcm,
        "mp3-named-wav.wav": mp3,  # the content decides, not the name
        "wav-named-txt.txt": good,
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("bad-corpus")
    x = S.music_like(6.0, seed=78)
    good = S.write_audio(d / "g.wav", x, S.SR).read_bytes()
    mp3 = S.write_audio(d / "g.mp3", x, S.SR).read_bytes()
    flac = S.write_audio(d / "g.flac", x, S.SR).read_bytes()
    return _corpus(good, mp3, flac)


# FFmpeg reads these: the content decides, not the name; a 7-bit claim is read as 8+ bits.
_READABLE = {"mp3-named-wav.wav", "wav-named-txt.txt", "bits-7.wav"}


async def test_malformed_audio_gets_a_documented_code(http: httpx.AsyncClient, before: Before,
                                                      corpus: dict[str, bytes],
                                                      seen: Seen) -> None:
    outcomes: dict[str, str] = {}
    for name, data in corpus.items():
        r = await http.post("/api/jobs", files={"file": (name, data, "audio/wav")})
        if r.status_code >= 400:
            outcomes[name] = _check_4xx(r, name, seen)
            continue
        assert r.status_code in (200, 202), (name, r.status_code, r.text)
        state = await wait_for_status(http, r.json()["job_id"], timeout=60)
        if state["status"] == "complete":
            outcomes[name] = "complete"
            continue
        assert state["status"] == "error", (name, state)
        outcomes[name] = state["error"]["code"]
        seen.add(outcomes[name], name)
    wrong = {n: o for n, o in outcomes.items() if (o == "complete") != (n in _READABLE)}
    assert not wrong, f"unexpected outcomes: {wrong}; all: {outcomes}"
    assert outcomes["claims-hours.wav"] == "TOO_LONG"
    assert outcomes["empty.wav"] in ("EMPTY_AUDIO", "UNSUPPORTED_FORMAT")
    assert outcomes["truncated.wav"] == "DECODE_ERROR"
    assert outcomes["unknown-format-tag.wav"] == "UNSUPPORTED_FORMAT"
    # Shorter than its header says: truncated, and reported so rather than analysed in part.
    assert outcomes["claims-more-than-it-has.wav"] == "DECODE_ERROR"


# -- uploads -------------------------------------------------------------------------------------
async def test_hostile_upload_names_stay_in_the_upload_directory(
        http: httpx.AsyncClient, server: RunningServer, corpus: dict[str, bytes],
        seen: Seen) -> None:
    good = corpus["wav-named-txt.txt"]
    names = ["../../../../tmp/escape.wav", "..\\..\\escape.wav", "/etc/passwd",
             "a/../../b.wav", "\x00nul.wav", "name\r\nX-Injected: 1.wav", "." * 300,
             "é" * 400 + ".wav", "", "CON", ".hidden.wav"]
    outside_before = set(server.data_dir.parent.iterdir())
    for i, name in enumerate(names):
        body = good[:-2] + struct.pack("<h", i)  # new content: no cache hit
        r = await http.post("/api/jobs", files={"file": (name, body, "audio/wav")})
        if name == "" and r.status_code != 202:  # no filename: a form field, not a file
            assert _check_4xx(r, "empty filename", seen) == "MISSING_FILE"
            continue
        assert r.status_code == 202, (name, r.text)
        state = await wait_for_status(http, r.json()["job_id"], timeout=60)
        shown = state["source"]["name"] if state.get("source") else ""
        assert "/" not in shown and "\\" not in shown and "\x00" not in shown, shown
        assert "\n" not in shown and "\r" not in shown and len(shown) <= 200, shown
    assert set(server.data_dir.parent.iterdir()) == outside_before
    assert not Path("/tmp/escape.wav").exists()


async def test_broken_upload_requests(http: httpx.AsyncClient, seen: Seen) -> None:
    cases: dict[str, dict[str, Any]] = {
        "text/plain body": {"content": b"hello", "headers": {"content-type": "text/plain"}},
        "no content type": {"content": b"hello"},
        "multipart without boundary": {
            "content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}},
        "garbage multipart": {
            "content": b"--b\r\nnonsense\r\n\r\n--b--",
            "headers": {"content-type": "multipart/form-data; boundary=b"}},
        "wrong field": {"files": {"audio": ("a.wav", b"RIFF", "audio/wav")}},
    }
    for case, kwargs in cases.items():
        _check_4xx(await http.post("/api/jobs", **kwargs), case, seen)
    # A declared length past the limit is refused before the body is sent.
    status, body = await raw_request(http, (
        "POST /api/jobs HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {UPLOAD_LIMIT * 4}\r\n\r\n--b\r\n").encode())
    assert status == 413 and json.loads(body)["code"] == "UPLOAD_TOO_LARGE"
    big = b"\x00" * (UPLOAD_LIMIT + 100_000)
    r = await http.post("/api/jobs", files={"file": ("big.wav", big, "audio/wav")})
    assert r.status_code == 413 and _check_4xx(r, "over the upload limit", seen) == \
        "UPLOAD_TOO_LARGE"


async def raw_request(http: httpx.AsyncClient, request: bytes) -> tuple[int, bytes]:
    """Send bytes no well-behaved client would, and read the answer's status and body."""
    url = http.base_url
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        body = await reader.readexactly(int(length.group(1))) if length else b""
        return status, body
    finally:
        writer.close()


# -- bodies ----------------------------------------------------------------------------------
async def test_oversized_and_malformed_json(http: httpx.AsyncClient, seen: Seen) -> None:
    # A declared length past the limit is refused before the body is read...
    status, body = await raw_request(http, (
        b"POST /session/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000000\r\n\r\n{\"pad\": \"aaaa"))
    assert status == 413 and json.loads(body)["code"] == "REQUEST_TOO_LARGE"
    seen.add("REQUEST_TOO_LARGE", "declared huge JSON")
    # ...and a chunked one (no length declared) as soon as it passes the limit.
    chunk = b"a" * 10_000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10))
    status, body = await raw_request(http, (
        b"POST /session/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n9\r\n{\"pad\": \"\r\n" + chunks + b"0\r\n\r\n"))
    assert status == 413 and json.loads(body)["code"] == "REQUEST_TOO_LARGE"
    bodies = [b"{", b"[]", b'"x"', b"1e999", b'{"window_ms": "fast"}',
              b'{"window_ms": 1e12}', b'{"sample_rate": 3}', b'{"hop_ms": -5}',
              b'{"classifier": "gpt"}', b'{"vad": 1}', b'{"min_confidence": 2}',
              b'{"elcor": "maybe"}', b"[" * 5000 + b"]" * 5000, b"\xff\xfe\x00",
              b'{"window_ms": 1000, "window_ms": 2000, "x": 1}']
    for body in bodies:
        r = await http.post("/session/start", content=body,
                            headers={"content-type": "application/json"})
        _check_4xx(r, f"session options {body[:40]!r}", seen)
    r = await http.post("/session/start", content=b"window_ms=5",
                        headers={"content-type": "application/x-www-form-urlencoded"})
    _check_4xx(r, "form body", seen)


# -- Last-Event-ID -----------------------------------------------------------------------------
HOSTILE_IDS = ["abc", "-1", "1.5", "1e9", "0x10", "12abc", "99999999999999999999",
               "9007199254740993", "１２", "٣", "1,2", "1 2", "seq=3", "' OR 1=1 --",
               "9" * 5000]


async def test_hostile_last_event_ids(http: httpx.AsyncClient, before: Before,
                                      seen: Seen) -> None:
    paths = [f"/api/jobs/{before.job_id}/events", f"/session/{before.session_id}/stream"]
    for path in paths:
        for value in HOSTILE_IDS:
            # Headers travel as bytes: non-ASCII arrives as its UTF-8 bytes.
            r = await http.get(path, headers={"Last-Event-ID": value.encode()})
            assert r.status_code == 400, (path, value, r.status_code)
            _check_4xx(r, f"Last-Event-ID {value[:20]!r}", seen)
            r = await http.get(path, params={"since": value})
            assert r.status_code == 400, (path, value, r.status_code)
    # Past the end of a finished stream: nothing to send, and EventSource must not retry.
    r = await http.get(paths[0], headers={"Last-Event-ID": "9007199254740992"})
    assert r.status_code == 204


# -- Socket.IO -----------------------------------------------------------------------------------
MALFORMED_PAYLOADS: list[Any] = [
    None, "job", 42, 4.2, True, [], ["job_id"], {}, {"job_id": None}, {"job_id": 5},
    {"job_id": ""}, {"job_id": ["x"]}, {"job_id": {"$ne": 1}}, {"job_id": "x" * 10_000},
    {"job_id": "../../etc/passwd"}, {"job_id": "nope", "since": 0},
    {"job_id": "nope", "since": -1}, {"job_id": "nope", "since": "5"},
    {"job_id": "nope", "since": 2**60}, {"job_id": "nope", "since": 1.5},
    {"session_id": 7}, {"session_id": ""}, {"session_id": "nope"},
]


async def test_malformed_socketio_payloads(server: RunningServer, before: Before,
                                           seen: Seen) -> None:
    async with sio_client(server.url, transports=["websocket"]) as rec:
        await rec.next_event("connected")
        for payload in MALFORMED_PAYLOADS:
            for event in ("subscribe", "unsubscribe"):
                start = len(rec.events)
                await rec.emit(event, payload)
                if event == "unsubscribe" and isinstance(payload, dict):
                    continue  # leaving what one does not follow is a no-op, not an error
                _, err = await rec.next_event("error", after=start)
                assert err["type"] == "error" and err["message"], (payload, err)
                seen.add(err["code"], f"socket.io {event} {str(payload)[:40]}")
        await rec.emit("no-such-event", {"x": 1})
        await rec.emit("subscribe", b"\x00\x01binary")
        # Still connected, and still useful: a good subscribe replays the whole job.
        start = len(rec.events)
        await rec.emit("subscribe", {"job_id": before.job_id})
        await rec.wait_for(lambda evs: any(e == "complete" for e, _ in evs[start:]),
                           timeout=30)
        got = [(e, d) for e, d in rec.events[start:] if isinstance(d, dict) and "seq" in d]
        assert [(e, d["seq"]) for e, d in got] == [(e, d["seq"]) for e, d in before.stream]
        assert rec.client.connected


# -- the ingest WebSocket ------------------------------------------------------------------------
async def test_odd_websocket_frames(server: RunningServer, http: httpx.AsyncClient,
                                    seen: Seen) -> None:
    sid = (await http.post("/session/start", json={})).json()["session_id"]
    async with websockets.connect(_ws(server, f"/session/{sid}/audio"), compression=None,
                                  max_size=None) as ws:
        replies: list[dict[str, Any]] = []
        for frame in [b"", b"\x01", b"\x01\x02\x03", "hello", "", "{", "[]", "null", "42",
                      '{"type": 5}', '{"type": "explode"}', '{"kind": "keepalive"}',
                      "\x00\x00", "é" * 1000]:
            await ws.send(frame)
            reply = json.loads(await ws.recv())
            assert reply["ok"] is False, (frame, reply)
            seen.add(reply["code"], f"ingest frame {str(frame)[:20]!r}")
            replies.append(reply)
        await ws.send(b"\x00\x00" * 800)  # and audio still flows, counted from zero
        assert json.loads(await ws.recv()) == {"ok": True, "bytes": 1600, "samples": 800}
        await ws.send("x" * (64 * 1024 + 1))  # a text frame over the limit
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1009
    async with websockets.connect(_ws(server, f"/session/{sid}/audio"), compression=None,
                                  max_size=None) as ws:
        await ws.send(b"\x00" * (64 * 1024 + 2))
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1009
    for path in ("/session/nope/audio", "/session/" + "x" * 5000 + "/audio"):
        async with websockets.connect(_ws(server, path), compression=None) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4004, path
    # Not a session route at all (the id would hold a slash): refused at the handshake.
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(_ws(server, "/session/%2e%2e%2fetc/audio")):
            pass
    assert 400 <= refused.value.response.status_code < 500


# -- afterwards ----------------------------------------------------------------------------------
async def test_the_server_is_up_and_earlier_work_is_intact(
        http: httpx.AsyncClient, server: RunningServer, before: Before) -> None:
    assert server.alive()
    assert (await http.get("/health")).status_code == 200
    assert (await http.get(f"/api/jobs/{before.job_id}/analysis")).content == before.analysis
    assert (await collect_sse(http, before.job_id)).events() == before.stream
    history = await _history(http, before.session_id)
    assert history[: len(before.history)] == before.history
    log = server.output()
    assert "Traceback" not in log, log[-3000:]
    assert not re.search(r'" 5\d\d\b', log), "a request was answered with 5xx"
