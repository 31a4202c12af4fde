"""Exposing the server safely: API keys on every door, per-client rate limits, caps on jobs
and followers, security headers, Prometheus metrics and structured logs, against live
servers on loopback with the clients people use (httpx, websockets, python-socketio)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
import websockets
from server import (
    RunningServer,
    create_job,
    sio_client,
    sse_frames,
    start_server,
    upload,
    wait_for_status,
    wait_until,
    write_long_wav,
    write_music,
)

from tonewire.transports.access import ApiKeys, bearer, presented_key, query_token
from tonewire.transports.ratelimit import RateLimiter, retry_after_header

KEY = "k3y-for-tests-0123456789"
OTHER_KEY = "another-key-abcdefghijkl"
ORIGIN = "http://allowed.example"


# -- units -------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_a_burst_then_one_per_interval() -> None:
    clock = FakeClock()
    rl = RateLimiter(10, clock=clock)
    assert [rl.acquire("a") for _ in range(10)] == [None] * 10
    wait = rl.acquire("a")
    assert wait == pytest.approx(6.0)  # 10 per minute: one token every 6 s
    assert rl.acquire("b") is None  # another client has its own bucket
    clock.now += 5.9
    assert rl.acquire("a") is not None
    clock.now += 0.2
    assert rl.acquire("a") is None
    clock.now += 3600
    assert [rl.acquire("a") for _ in range(10)] == [None] * 10  # refills to the burst only
    assert rl.acquire("a") is not None


def test_rate_limiter_never_allows_more_than_twice_the_rate_in_any_minute() -> None:
    clock = FakeClock()
    rl = RateLimiter(10, clock=clock)
    allowed = []
    for step in range(600):  # a client hammering every 0.1 s for a minute
        clock.now = 1000.0 + step * 0.1
        if rl.acquire("a") is None:
            allowed.append(clock.now)
    assert 10 + 9 <= len(allowed) <= 20


def test_rate_limiter_table_is_bounded_and_zero_means_off() -> None:
    clock = FakeClock()
    rl = RateLimiter(5, max_keys=100, clock=clock)
    for i in range(1000):
        rl.acquire(f"10.0.{i // 256}.{i % 256}")
        clock.now += 0.01
    assert len(rl) <= 100
    off = RateLimiter(0, clock=clock)
    assert all(off.acquire("a") is None for _ in range(1000)) and len(off) == 0


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(5.2) == "6"


def test_api_keys_compare_whole_keys() -> None:
    keys = ApiKeys([KEY, OTHER_KEY])
    assert keys.enabled
    assert keys.allows(KEY) and keys.allows(OTHER_KEY)
    for wrong in (None, "", KEY[:-1], KEY + "x", KEY.upper(), " " + KEY):
        assert not keys.allows(wrong), wrong
    assert ApiKeys([]).allows(None)  # no keys configured: open


def test_keys_are_found_in_header_query_or_socketio_auth() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer("Bearer") is None and bearer(None) is None
    assert query_token(b"a=1&token=xyz") == "xyz" and query_token("token=") is None
    assert presented_key({"authorization": "Bearer h"}, b"token=q") == "h"
    assert presented_key({}, b"token=q") == "q"
    assert presented_key({}, b"", {"token": "a"}) == "a"
    assert presented_key({}, b"", {"token": 5}) is None


# -- servers -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("keyed"), workers=1,
                      api_keys=f"{KEY},{OTHER_KEY}", cors_origins=ORIGIN) as s:
        yield s


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("limited"), workers=1,
                      rate_limit_per_minute=3) as s:
        yield s


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("capped"), workers=1, max_active_jobs=1,
                      max_subscribers_per_stream=2, log_format="json") as s:
        yield s


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hardening-audio")


def ws_url(server: RunningServer, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


# -- API keys ----------------------------------------------------------------------------------
def _unauthorized(r: httpx.Response) -> None:
    assert r.status_code == 401, (r.request.url, r.status_code, r.text)
    assert r.json()["code"] == "UNAUTHORIZED"
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_with_keys_nothing_is_reachable_without_one(keyed: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=keyed.url, timeout=30) as c:
        for method, path in [("GET", "/api/jobs"), ("GET", "/api/jobs/x"),
                             ("GET", "/api/job/x"), ("DELETE", "/api/jobs/x"),
                             ("POST", "/api/jobs"), ("POST", "/session/start"),
                             ("GET", "/session/x"), ("GET", "/session/x/stream"),
                             ("GET", "/api/jobs/x/events"), ("GET", "/metrics"),
                             ("GET", "/openapi.json"), ("GET", "/docs"),
                             ("GET", "/no/such/route")]:
            _unauthorized(await c.request(method, path))
            _unauthorized(await c.request(method, path, headers={
                "Authorization": "Bearer not-a-key-at-all-000"}))
            _unauthorized(await c.request(method, path, params={"token": KEY[:-1]}))
        health = await c.get("/health")  # load balancers probe without credentials
        assert health.status_code == 200 and set(health.json()) >= {"status"}


async def test_a_key_in_the_header_or_the_query_opens_every_route(keyed: RunningServer,
                                                                   audio_dir: Path) -> None:
    wav = write_music(audio_dir / "keyed.wav", 3.0, seed=41)
    async with httpx.AsyncClient(base_url=keyed.url, timeout=30,
                                 headers={"Authorization": f"Bearer {KEY}"}) as c:
        job_id = await create_job(c, wav)
        state = await wait_for_status(c, job_id)
        assert state["status"] == "complete"
        assert (await c.get(f"/api/jobs/{job_id}/analysis")).status_code == 200
        assert (await c.get("/openapi.json")).status_code == 200
    async with httpx.AsyncClient(base_url=keyed.url, timeout=30) as c:
        # EventSource cannot set headers: ?token= carries the key.
        async with c.stream("GET", f"/api/jobs/{job_id}/events",
                            params={"token": OTHER_KEY}) as r:
            assert r.status_code == 200
            kinds = [f.event async for f in sse_frames(r) if f.event]
        assert kinds[-1] == "complete"
        r = await c.get("/api/jobs", params={"token": KEY})
        assert r.status_code == 200 and r.json()["total"] >= 1


async def test_ingest_websocket_needs_a_key(keyed: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=keyed.url, timeout=30,
                                 headers={"Authorization": f"Bearer {KEY}"}) as c:
        sid = (await c.post("/session/start", json={})).json()["session_id"]
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws_url(keyed, f"/session/{sid}/audio")):
            pass
    assert refused.value.response.status_code == 401
    with pytest.raises(websockets.InvalidStatus) as wrong:
        async with websockets.connect(ws_url(keyed, f"/session/{sid}/audio?token=nope")):
            pass
    assert wrong.value.response.status_code == 401
    async with websockets.connect(ws_url(keyed, f"/session/{sid}/audio?token={KEY}"),
                                  compression=None) as ws:
        await ws.send(b"\x00\x00" * 1600)
        assert json.loads(await ws.recv()) == {"ok": True, "bytes": 3200, "samples": 1600}
    async with websockets.connect(ws_url(keyed, f"/session/{sid}/audio"),
                                  additional_headers={"Authorization": f"Bearer {KEY}"},
                                  compression=None) as ws:
        await ws.send(b"\x00\x00" * 10)
        assert json.loads(await ws.recv())["ok"] is True


async def test_socketio_refuses_a_connection_without_a_key(keyed: RunningServer) -> None:
    for kwargs in ({}, {"auth": {"token": "wrong-key-wrong-key"}}):
        client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(keyed.url, transports=["websocket"], wait_timeout=10,
                                 **kwargs)
        assert not client.connected
    ways: list[dict[str, Any]] = [
        {"auth": {"token": KEY}},
        {"headers": {"Authorization": f"Bearer {OTHER_KEY}"}},
    ]
    for kwargs in ways:
        client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        connected = asyncio.Event()
        client.on("connected", lambda _data, ev=connected: ev.set())
        await client.connect(keyed.url, transports=["websocket"], wait_timeout=10, **kwargs)
        try:
            await asyncio.wait_for(connected.wait(), 10)
        finally:
            await client.disconnect()
    async with sio_client(f"{keyed.url}?token={KEY}", transports=["polling"]) as rec:
        await rec.next_event("connected")


async def test_cors_names_origins_and_never_sends_credentials(keyed: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=keyed.url, timeout=30) as c:
        pre = await c.options("/api/jobs", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == ORIGIN
        assert "access-control-allow-credentials" not in pre.headers
        other = await c.options("/api/jobs", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers


# -- security headers --------------------------------------------------------------------------
async def test_every_response_carries_security_headers(limited: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=limited.url, timeout=30) as c:
        for path in ("/health", "/api/jobs", "/no/such/route", "/openapi.json"):
            r = await c.get(path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "no-referrer"
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert "microphone=(self)" in r.headers["permissions-policy"]
        docs = await c.get("/docs")  # Swagger UI comes from its CDN: a wider, named policy
        assert docs.status_code == 200
        assert "https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]


# -- rate limits -------------------------------------------------------------------------------
async def test_session_starts_are_rate_limited_per_client(limited: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=limited.url, timeout=30) as c:
        codes = [(await c.post("/session/start", json={})).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        r = await c.post("/session/start", json={})
        assert r.status_code == 429
        assert r.json()["code"] == "RATE_LIMITED"
        assert 1 <= int(r.headers["retry-after"]) <= 20  # 3 per minute: one every 20 s
        assert _metric((await c.get("/metrics")).text, "tonewire_rate_limited_total") >= 1
        # Reading is never limited, and other routes keep working.
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/api/jobs")).status_code == 200


async def test_job_creation_is_rate_limited_per_client(limited: RunningServer,
                                                       audio_dir: Path) -> None:
    wav = write_music(audio_dir / "limited.wav", 2.0, seed=42)
    async with httpx.AsyncClient(base_url=limited.url, timeout=30) as c:
        statuses = [(await upload(c, wav)).status_code for _ in range(3)]
        assert statuses[0] == 202 and all(s in (200, 202) for s in statuses)
        r = await upload(c, wav)
        assert r.status_code == 429, r.text
        assert r.json()["code"] == "RATE_LIMITED" and int(r.headers["retry-after"]) >= 1
        # A refused upload leaves nothing behind.
        await wait_until(lambda: not [n for n in limited.uploads() if n.endswith(".part")],
                         what="no partial uploads")


# -- caps --------------------------------------------------------------------------------------
async def test_active_jobs_are_capped(capped: RunningServer, audio_dir: Path) -> None:
    long = write_long_wav(audio_dir / "capped-long.wav", 20)
    short = write_music(audio_dir / "capped-short.wav", 2.0, seed=43)
    async with httpx.AsyncClient(base_url=capped.url, timeout=60) as c:
        first = await create_job(c, long)
        r = await upload(c, short)
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "JOB_LIMIT"
        assert (await c.delete(f"/api/jobs/{first}")).status_code == 200
        second = await create_job(c, short)
        assert (await wait_for_status(c, second))["status"] == "complete"
    # The refused upload's file was removed at once.
    await wait_until(lambda: not capped.uploads(), what="the upload dir to empty")


async def test_followers_per_stream_are_capped(capped: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=capped.url, timeout=30) as c:
        sid = (await c.post("/session/start", json={})).json()["session_id"]
        stream = f"/session/{sid}/stream"
        async with c.stream("GET", stream) as one, c.stream("GET", stream) as two:
            assert one.status_code == two.status_code == 200
            third = await c.get(stream)
            assert third.status_code == 503
            assert third.json()["code"] == "TOO_MANY_SUBSCRIBERS"
            async with sio_client(capped.url, transports=["websocket"]) as rec:
                await rec.emit("subscribe", {"session_id": sid})
                _, err = await rec.next_event("error")
                assert err["code"] == "TOO_MANY_SUBSCRIBERS"
                assert rec.client.connected
        # Once they leave there is room again.
        async with sio_client(capped.url, transports=["websocket"]) as rec:
            async def admitted() -> bool:
                rec.events.clear()
                await rec.emit("subscribe", {"session_id": sid})
                await rec.wait_for(lambda evs: evs, timeout=10)
                return rec.events[0][0] == "subscribed"
            await wait_until(admitted, what="a follower slot to free up")


# -- metrics and logs --------------------------------------------------------------------------
def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(\{\})?")
    m = re.search(rf"^{pattern} (?P<value>[0-9.e+-]+)$", text, re.MULTILINE)
    assert m, f"{name}{{{labels}}} not in metrics"
    return float(m.group("value"))


async def test_metrics_count_jobs_events_and_live_windows(capped: RunningServer,
                                                          audio_dir: Path) -> None:
    wav = write_music(audio_dir / "metrics.wav", 4.0, seed=44)
    async with httpx.AsyncClient(base_url=capped.url, timeout=30) as c:
        before = (await c.get("/metrics")).text
        job_id = await create_job(c, wav)
        await wait_for_status(c, job_id)
        m = await c.get("/metrics")
        assert m.status_code == 200
        assert m.headers["content-type"].startswith("text/plain")
        text = m.text
        assert _metric(text, "tonewire_jobs", 'state="complete"') >= 1
        assert _metric(text, "tonewire_events_published_total", 'type="chunk"') >= 4
        assert _metric(text, "tonewire_analysis_realtime_factor_count") >= (
            _metric(before, "tonewire_analysis_realtime_factor_count") + 1)
        for name in ("tonewire_live_sessions", "tonewire_live_windows_dropped_total",
                     "tonewire_window_to_event_seconds_count"):
            _metric(text, name)
        assert 'tonewire_subscribers{transport="sse"}' in text


async def test_live_windows_and_their_batches_are_timed_into_histograms(
        tmp_path: Path) -> None:
    with start_server(tmp_path, workers=1) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
            sid = (await c.post("/session/start", json={"window_ms": 500})).json()["session_id"]
            async with websockets.connect(ws_url(srv, f"/session/{sid}/audio"),
                                          compression=None) as ws:
                for _ in range(20):  # 2 s of quiet noise: four windows
                    await ws.send(b"\x01\x00\xff\xff" * 800)
                    assert json.loads(await ws.recv())["ok"]

            async def windows_timed() -> bool:
                text = (await c.get("/metrics")).text
                return _metric(text, "tonewire_window_to_event_seconds_count") >= 4
            await wait_until(windows_timed, what="four windows in the histogram")
            text = (await c.get("/metrics")).text
            # Each window's analysis stage, and the batches that carried them: every window
            # in some batch, no batch empty, none waiting or taking negative time.
            assert _metric(text, "tonewire_window_analysis_seconds_count") >= 4
            batches = _metric(text, "tonewire_live_batch_windows_count")
            assert 1 <= batches <= _metric(text, "tonewire_live_batch_windows_sum")
            assert _metric(text, "tonewire_live_batch_windows_sum") >= 4
            for name in ("tonewire_live_batch_wait_seconds", "tonewire_live_batch_seconds"):
                assert _metric(text, f"{name}_count") == batches
            # A window arriving at an idle worker waits out the gathering time (20 ms), and
            # every batch takes some time in its worker.
            assert _metric(text, "tonewire_live_batch_wait_seconds_sum") >= 0.015 * batches
            assert _metric(text, "tonewire_live_batch_seconds_sum") > 0


async def test_logs_are_json_lines_naming_the_job(capped: RunningServer,
                                                  audio_dir: Path) -> None:
    wav = write_music(audio_dir / "logs.wav", 2.0, seed=45)
    async with httpx.AsyncClient(base_url=capped.url, timeout=30) as c:
        job_id = await create_job(c, wav)
        await wait_for_status(c, job_id)

    def job_lines() -> list[dict[str, Any]]:
        docs = [json.loads(line) for line in capped.output().splitlines()
                if line.startswith("{")]
        return [d for d in docs if d.get("job_id") == job_id]
    lines = await wait_until(job_lines, what="log lines naming the job")
    assert {"ts", "level", "logger", "message"} <= set(lines[0])
    assert any("complete" in d["message"] for d in lines)
    # Everything the server printed is one JSON object per line.
    printed = [ln for ln in capped.output().splitlines() if ln.strip()]
    assert printed and all(ln.startswith("{") for ln in printed), printed[:5]
