"""Past one machine, for real: ``tonewire serve`` and ``tonewire worker`` processes on loopback
sharing a Redis (bus and job queue) and a PostgreSQL database (store).

The main test runs two servers that only serve and two workers, submits jobs to one server,
follows them on both (Socket.IO on one, SSE on the other), kills a worker with SIGKILL in the
middle of a job, and checks that every stream is complete and gap-free on both servers: the
job is retried by the other worker, its stream continuing from the store without a duplicated
segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_sessions as T
import websockets
from backends import Backend, scale_backend
from cluster import start_worker
from server import (
    Events,
    SseFrame,
    check_stream,
    collect_sse,
    create_job,
    sio_client,
    sse_frames,
    start_server,
    variant,
    wait_for_status,
    wait_until,
    write_long_wav,
    write_music,
)

pytestmark = pytest.mark.slow


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    async with scale_backend() as be:
        yield be


def _settings(be: Backend, **more: Any) -> dict[str, Any]:
    return {**be.settings(), "queue_url": be.bus_url, "workers": 1, "job_lease_s": 2,
            **more}


async def test_two_servers_two_workers_one_killed_mid_job(
        backend: Backend, tmp_path: Path) -> None:
    long = write_long_wav(tmp_path / "long.wav", 8)  # about 2 s of analysis per job
    inputs = [variant(long, tmp_path / f"job{i}.wav", i) for i in range(3)]
    env = _settings(backend)
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(start_server(tmp_path / "a", **env, run_jobs="false"))
        b = stack.enter_context(start_server(tmp_path / "b", **env, run_jobs="false"))
        w1 = stack.enter_context(start_worker(tmp_path, "w1", **env))
        stack.enter_context(start_worker(tmp_path, "w2", **env))
        async with httpx.AsyncClient(base_url=a.url, timeout=30) as http_a, \
                httpx.AsyncClient(base_url=b.url, timeout=30) as http_b, \
                sio_client(b.url, transports=["websocket"]) as sio_b:
            jobs = [await create_job(http_a, p) for p in inputs]
            for job_id in jobs:  # followed on the server that did not take the upload
                await sio_b.subscribe(job_id, since=0)
            sse_a = [asyncio.create_task(collect_sse(http_a, j, timeout=120)) for j in jobs]

            # Kill w1 once the job it runs has streamed some segments (mid-job).
            def running_on_w1() -> str | None:
                started = [j for j in w1.jobs_started() if j in jobs]
                return started[0] if started else None

            victim: str = await wait_until(running_on_w1, timeout=30, what="a job on w1")
            await wait_until(lambda: sum(1 for n, _ in sio_b.job_events(victim)
                                         if n == "chunk") >= 20,
                             timeout=30, what="segments of the victim")
            w1.kill()
            chunks_before = sum(1 for n, _ in sio_b.job_events(victim) if n == "chunk")

            on_b: dict[str, Events] = {}
            for job_id in jobs:
                on_b[job_id] = await sio_b.until_terminal(job_id, timeout=90)
            on_a = [r.events() for r in await asyncio.gather(*sse_a)]
            for job_id, events_a in zip(jobs, on_a, strict=True):
                analysis = check_stream(on_b[job_id], job_id)  # gap-free, no duplicates
                assert on_b[job_id] == events_a  # the same stream on both servers
                assert len(analysis["segments"]) == 480
                for http in (http_a, http_b):
                    view = await wait_for_status(http, job_id, "complete", timeout=10)
                    assert view["progress"] == 100
            victim_chunks = [d for n, d in on_b[victim] if n == "chunk"]
            assert len(victim_chunks) > chunks_before  # the retry carried on where it was
            assert "attempt 2" in (tmp_path / "worker-w2.log").read_text()


async def test_a_worker_stopped_cleanly_hands_its_job_back_at_once(
        backend: Backend, tmp_path: Path) -> None:
    """SIGTERM: the running job goes back to the queue without waiting for its lease."""
    env = _settings(backend, job_lease_s=600)  # a retry now cannot come from the lease
    with start_server(tmp_path, **env, run_jobs="false") as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http, \
                sio_client(srv.url, transports=["websocket"]) as sio:
            job_id = await create_job(http, write_long_wav(tmp_path / "l.wav", 15))
            await sio.subscribe(job_id, since=0)
            with start_worker(tmp_path, "first", **env):
                await wait_until(lambda: sum(1 for n, _ in sio.job_events(job_id)
                                             if n == "chunk") >= 20,
                                 timeout=30, what="segments from the first worker")
            # (leaving the block stopped it with SIGTERM, mid-job)
            with start_worker(tmp_path, "second", **env) as second:
                check_stream(await sio.until_terminal(job_id, timeout=60), job_id)
                assert "attempt 2" in second.output()


async def test_a_server_alone_runs_jobs_from_the_redis_queue(
        backend: Backend, tmp_path: Path) -> None:
    """``tonewire serve`` with a Redis queue still works jobs in-process."""
    with start_server(tmp_path, **_settings(backend)) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            job_id = await create_job(http, write_music(tmp_path / "m.wav", 6.0, seed=5))
            async with sio_client(srv.url, transports=["websocket"]) as sio:
                await sio.subscribe(job_id, since=0)
                check_stream(await sio.until_terminal(job_id), job_id)
            # Cancelling through the queue: a long job, deleted while it runs.
            long_id = await create_job(http, write_long_wav(tmp_path / "l.wav", 10))
            await wait_for_status(http, long_id, {"analyzing"})
            assert (await http.delete(f"/api/jobs/{long_id}")).status_code == 200
            assert (await http.get(f"/api/jobs/{long_id}")).status_code == 404


def test_serving_without_a_worker_needs_a_shared_queue(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tonewire.cli", "serve", "--no-worker", "--port", "0"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "TONEWIRE_DATA_DIR": str(tmp_path),
             **{k: v for k, v in os.environ.items()
                if k in ("PYTHONPATH", "HOME")}})
    assert proc.returncode != 0
    assert "shared job queue" in proc.stdout + proc.stderr


def test_a_worker_needs_a_shared_queue(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tonewire.cli", "worker"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "TONEWIRE_DATA_DIR": str(tmp_path),
                               **{k: v for k, v in os.environ.items()
                                  if k in ("PYTHONPATH", "HOME")}})
    assert proc.returncode == 2
    assert "INVALID_SETTING" in proc.stderr


# -- live sessions across nodes -----------------------------------------------------------------

async def _follow_session(http: httpx.AsyncClient, sid: str, into: list[SseFrame]) -> None:
    """A session's SSE stream into ``into`` until the server closes it (at ``session-end``)."""
    async with http.stream("GET", f"/session/{sid}/stream") as r:
        assert r.status_code == 200
        async for frame in sse_frames(r):
            into.append(frame)


async def _ingest_through(server: Any, sid: str, *, expect_samples: int) -> Any:
    """Connect an ingest socket, retrying while the session is still held (4009): the dead
    node's lease has to run out first."""
    for _ in range(60):
        ws = await T.ingest(server, sid).__aenter__()
        try:  # the 4009 close can come before our keepalive is even sent
            await ws.send(json.dumps({"type": "keepalive"}))
            reply = await T.recv_json(ws)
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code == 4009, exc
            await asyncio.sleep(0.25)
            continue
        assert reply["samples"] == expect_samples, reply
        return ws
    raise AssertionError("the session was never released")


async def test_a_live_session_fails_over_to_another_node(
        backend: Backend, tmp_path: Path) -> None:
    """Ingest on A, a subscriber on B; A is killed; the client reconnects through B and the
    session continues from its sample count, its stream gap-free on B."""
    env = _settings(backend, session_lease_s=1.5)
    with start_server(tmp_path / "a", **env) as a, start_server(tmp_path / "b", **env) as b:
        async with httpx.AsyncClient(base_url=a.url, timeout=30) as http_a, \
                httpx.AsyncClient(base_url=b.url, timeout=30) as http_b:
            sid = await T.start(http_a, min_confidence=0.0)
            frames: list[SseFrame] = []
            follower = asyncio.create_task(_follow_session(http_b, sid, frames))

            def tones() -> list[dict[str, Any]]:
                return T.of(T.as_events(frames), "tone-event")

            await wait_until(lambda: T.as_events(frames), what="the first event on B")
            ws = await T.ingest(a, sid).__aenter__()
            total = await T.send(ws, T.pcm16(T.voice(150.0, 3.0)))
            await wait_until(lambda: len(tones()) >= 3, what="A's tones on B")
            # The lease renewal has recorded the count (readable on any node): kill A.
            await wait_until(lambda: _samples(http_b, sid, total), what="samples persisted")
            a.children()  # remember A's analysis processes, so they are cleaned up
            a.process.kill()
            a.process.wait(10)
            with contextlib.suppress(Exception):
                await ws.close()

            ws = await _ingest_through(b, sid, expect_samples=total)
            async with ws:
                after = await T.send(ws, T.pcm16(T.voice(220.0, 3.0)), start=total)
            assert (await T.end(http_b, sid))["samples"] == after
            await asyncio.wait_for(follower, 30)
            events = T.as_events(frames)
            assert [d["seq"] for _, d in events] == list(range(1, len(events) + 1))
            assert events[-1][0] == "session-end"
            stamps = [t["timestamp"] for t in tones()]
            assert stamps == sorted(set(stamps)), stamps  # no window twice, in order
            resumed = [s for s in stamps if s >= total / T.SR]
            assert resumed and len(stamps) - len(resumed) >= 3  # before and after A died


async def _samples(http: httpx.AsyncClient, sid: str, n: int) -> bool:
    return bool((await http.get(f"/session/{sid}")).json()["samples"] == n)


async def test_a_session_started_on_one_node_streams_through_another(
        backend: Backend, tmp_path: Path) -> None:
    """A load balancer may send the start and the socket to different nodes: the socket is
    accepted at once, and a second socket on the first node is refused while it is open."""
    env = _settings(backend)
    with start_server(tmp_path / "a", **env) as a, start_server(tmp_path / "b", **env) as b:
        async with httpx.AsyncClient(base_url=a.url, timeout=30) as http_a:
            sid = await T.start(http_a, min_confidence=0.0)
            async with T.ingest(b, sid) as ws:
                total = await T.send(ws, T.pcm16(T.voice(150.0, 2.0)))
                async with T.ingest(a, sid) as second:
                    assert await T.close_code(second) == 4009
            events = await T.all_events(http_a, sid) if (await T.end(http_a, sid)) else []
            assert T.of(events, "tone-event")
            assert events[-1][1]["timestamp"] == total / T.SR


async def test_socketio_followers_miss_nothing_when_a_node_loses_redis(
        backend: Backend, tmp_path: Path) -> None:
    """A node whose Redis connection breaks cuts off its subscribers; its Socket.IO rooms
    resume from the log, so their members still get every event once."""
    from redis.asyncio import Redis

    with start_server(tmp_path, **_settings(backend)) as srv:
        admin = Redis.from_url(backend.bus_url)
        try:
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http, \
                    sio_client(srv.url, transports=["websocket"]) as sio:
                job_id = await create_job(http, write_long_wav(tmp_path / "l.wav", 15))
                await sio.subscribe(job_id, since=0)
                await wait_until(lambda: sum(1 for n, _ in sio.job_events(job_id)
                                             if n == "chunk") >= 20,
                                 timeout=30, what="the first segments")
                killed = 0
                for client in await admin.client_list():
                    name = client["name"]
                    if name.startswith(f"tonewire-bus-{backend.namespace}-") \
                            and int(client.get("sub", 0)) > 0:
                        await admin.client_kill_filter(_id=client["id"])
                        killed += 1
                assert killed == 1
                check_stream(await sio.until_terminal(job_id, timeout=60), job_id)
        finally:
            await admin.aclose()
