"""Jobs outlive the server process: a clean restart, ``kill -9`` in the middle of a job, an
input file that vanished while the server was down, and many clients replaying a stored stream.

Every test runs real servers (``python -m tonewire.cli serve``) as subprocesses on free
127.0.0.1 ports, each in its own process group (so ``kill -9`` of the group takes its spawned
analysis workers with it), over one data directory that outlives them. Clients are the ones
users have: SSE read with httpx, Socket.IO with python-socketio's ``AsyncClient``. Nothing
sleeps to synchronise: every wait is bounded polling of an observable condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import signals as S
import socketio
from server import wait_for, wait_until

TERMINAL = frozenset({"complete", "error"})
LONG_SECONDS = 360.0  # 6 minutes: a job of a few seconds on a 2-core machine
SHORT_SECONDS = 20.0
START_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 120.0

# -- waiting ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``, from /proc."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            alive.append(int(entry.name))
    return alive


# -- a server in a subprocess ------------------------------------------------------------------
@dataclass
class Server:
    data_dir: Path
    log_path: Path
    workers: int = 1
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def uploads(self) -> Path:
        return self.data_dir / "uploads"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TONEWIRE_")}
        env.update(TONEWIRE_DATA_DIR=str(self.data_dir), TONEWIRE_WORKERS=str(self.workers),
                   PYTHONUNBUFFERED="1")
        return env

    def start(self, port: int = 0) -> Server:
        """Start on ``port`` (a restart on the port clients know), or on a free one."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # a free port can be taken between probe and bind
            self.port = port if port and attempt == 0 else free_port()
            with self.log_path.open("ab") as log:
                log.write(f"\n=== start on port {self.port} ===\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "tonewire.cli", "serve", "--host", "127.0.0.1",
                     "--port", str(self.port)],
                    cwd=self.data_dir, env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
            if wait_for(self._up_or_exited, timeout=START_TIMEOUT_S,
                        what=f"server on port {self.port}\n{self.log_tail()}") == "up":
                return self
            self.proc.wait()
        raise AssertionError(f"the server did not start\n{self.log_tail()}")

    def _up_or_exited(self) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return "exited"
        try:
            r = httpx.get(f"{self.url}/health", timeout=2.0)
        except httpx.TransportError:
            return None
        return "up" if r.status_code == 200 else None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "server log:\n" + "\n".join(text.splitlines()[-lines:])

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM to the server alone: it stops its workers and exits cleanly (uvicorn
        re-raises the signal after a graceful shutdown, so the status is 0 or -SIGTERM)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"no exit {timeout} s after SIGTERM\n{self.log_tail()}"
                                 ) from None
        assert code in (0, -signal.SIGTERM), f"exit status {code}\n{self.log_tail()}"
        assert b"Application shutdown complete" in self.log_path.read_bytes(), self.log_tail()
        wait_for(lambda: not group_alive(self.pid), timeout=10.0,
                 what="the server's workers to exit after SIGTERM")

    def kill9(self) -> None:
        """SIGKILL to the server's whole process group: server, workers, resource tracker."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(10.0)
        wait_for(lambda: not group_alive(self.pid), timeout=10.0,
                 what="every process of the killed server to die")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- HTTP -----------------------------------------------------------------------------
    def upload(self, path: Path) -> httpx.Response:
        with path.open("rb") as f:
            return httpx.post(f"{self.url}/api/jobs", files={"file": (path.name, f)},
                              timeout=60.0)

    def job(self, job_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/api/jobs/{job_id}", timeout=10.0)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def analysis(self, job_id: str) -> httpx.Response:
        return httpx.get(f"{self.url}/api/jobs/{job_id}/analysis", timeout=30.0)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``make(workers=1)``: a started server on ``tmp_path/data``; all are killed at the end."""
    made: list[Server] = []

    def make(workers: int = 1, port: int = 0) -> Server:
        srv = Server(data_dir=tmp_path / "data", workers=workers,
                     log_path=tmp_path / f"server-{len(made)}.log")
        made.append(srv)
        return srv.start(port)

    yield make
    for srv in made:
        if srv.running():
            srv.kill9()


# -- clients ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ev:
    seq: int
    type: str
    data: dict[str, Any]


def parse_sse(lines: Iterable[str]) -> Iterator[Ev]:
    """Frames of an SSE body; checks that ``id:`` equals the payload's ``seq``."""
    ev_id: str | None = None
    ev_type = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                payload = json.loads("\n".join(data))
                assert ev_id is not None and int(ev_id) == payload["seq"], (ev_id, payload)
                yield Ev(payload["seq"], ev_type, payload)
            ev_id, ev_type, data = None, "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                ev_id = value
            elif name == "event":
                ev_type = value
            elif name == "data":
                data.append(value)


def sse_events(srv: Server, job_id: str, *, last_event_id: int | None = None,
               on_event: Callable[[list[Ev]], bool] | None = None,
               timeout: float = JOB_TIMEOUT_S) -> list[Ev]:
    """The job's SSE stream until its terminal event (the server then closes it), or until
    ``on_event(events so far)`` returns True."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    events: list[Ev] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=httpx.Timeout(10.0, read=timeout)) as client, client.stream(
            "GET", f"{srv.url}/api/jobs/{job_id}/events", headers=headers) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for ev in parse_sse(resp.iter_lines()):
            events.append(ev)
            if on_event is not None and on_event(events):
                return events
            if ev.type in TERMINAL:
                break
            assert time.monotonic() < deadline, f"SSE still open after {timeout} s"
    return events


async def _sio_events(url: str, job_id: str, since: int, timeout: float) -> list[Ev]:
    client = socketio.AsyncClient(reconnection=False)
    events: list[Ev] = []
    problems: list[Any] = []
    done = asyncio.Event()

    async def on_any(event: str, *args: Any) -> None:
        data = args[0] if args else None
        if event in ("connected", "subscribed"):
            return
        if not isinstance(data, dict) or "seq" not in data:  # a protocol error, not the stream
            problems.append((event, data))
            done.set()
            return
        events.append(Ev(data["seq"], event, data))
        if event in TERMINAL:
            done.set()

    client.on("*", on_any)
    await client.connect(url, transports=["websocket"], wait_timeout=10)
    try:
        await client.emit("subscribe", {"job_id": job_id, "since": since})
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await client.disconnect()
    assert not problems, problems
    return events


def sio_events(srv: Server, job_id: str, *, since: int = 0, timeout: float = 60.0) -> list[Ev]:
    """The job's stream over Socket.IO ``subscribe {job_id, since}``, to its terminal event."""
    return asyncio.run(_sio_events(srv.url, job_id, since, timeout))


# -- stream checks ---------------------------------------------------------------------------
def check_stream(events: list[Ev], *, terminal: str) -> None:
    """Gap-free from seq 1, one terminal event at the end, progress never going back."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events if e.type in TERMINAL] == [terminal]
    assert events[-1].type == terminal
    pct = [e.data["progress"] for e in events if e.type == "progress"]
    assert pct == sorted(pct), f"progress went backwards: {pct}"
    for e in events:
        assert e.data["type"] == e.type


def chunks_of(events: list[Ev]) -> list[Ev]:
    return [e for e in events if e.type == "chunk"]


def check_chunks(events: list[Ev], *, segment_seconds: float = 1.0) -> list[dict[str, Any]]:
    """Every segment index exactly once, in order, timed where its index says; the segments."""
    segments = [e.data["segment"] for e in chunks_of(events)]
    assert [s["index"] for s in segments] == list(range(len(segments)))
    for s in segments:
        assert s["startTime"] == pytest.approx(s["index"] * segment_seconds, abs=1e-6)
    for e in chunks_of(events):
        assert e.data["timestamp"] == e.data["segment"]["startTime"]
    return segments


def assert_close(a: Any, b: Any, path: str = "$") -> None:
    """Equal JSON values, floats within a relative 1e-6 (BLAS threads may reorder sums)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), (path, a, b)
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (path, a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (path, a, b)
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (path, len(a), b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


_REFERENCE = """
import json, sys
from tonewire.config import Settings
from tonewire.pipeline import Finished, analyze_file
from tonewire.analysis.results import Segment
from tonewire.report.json import segment_json, summary_json
s = Settings()
segments, summary = [], None
for ev in analyze_file(sys.argv[1], s.analysis_options(), max_duration_s=s.max_duration_s):
    if isinstance(ev, Segment):
        segments.append(segment_json(ev))
    elif isinstance(ev, Finished):
        summary = summary_json(ev.summary)
json.dump({"segments": segments, "summary": summary}, sys.stdout, allow_nan=False)
"""


def reference_analysis(path: Path, env: dict[str, str]) -> dict[str, Any]:
    """The file analysed in one uninterrupted run (a fresh process, one BLAS thread as the
    server's workers use), through the JSON encoders the worker uses."""
    env = {**env, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _REFERENCE, str(path)], env=env, cwd=path.parent,
                         capture_output=True, check=True, timeout=300)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def upload_leftovers(srv: Server) -> list[str]:
    return sorted(p.name for p in srv.uploads.iterdir()) if srv.uploads.is_dir() else []


# -- audio -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``long``: 6 min of music as FLAC; ``short`` and ``other``: 20 s as mp3 and WAV."""
    d = tmp_path_factory.mktemp("persistence-audio")
    return {
        "long": S.write_audio(d / "long.flac", S.music_like(LONG_SECONDS, seed=1), S.SR),
        "short": S.write_audio(d / "short.mp3", S.music_like(SHORT_SECONDS, seed=2), S.SR),
        "other": S.write_audio(d / "other.wav", S.music_like(SHORT_SECONDS, bpm=96.0, seed=3),
                               S.SR),
    }


# -- tests -----------------------------------------------------------------------------------
def test_a_completed_job_is_served_unchanged_after_a_restart(
        servers: Callable[..., Server], audio: dict[str, Path]) -> None:
    first = servers()
    r = first.upload(audio["short"])
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    live = sse_events(first, job_id)
    check_stream(live, terminal="complete")
    segments = check_chunks(live)
    state = first.job(job_id)
    assert state["status"] == "complete" and state["progress"] == 100
    analysis = first.analysis(job_id)
    assert analysis.status_code == 200
    assert json.loads(analysis.content)["segments"] == segments
    replay_first = sse_events(first, job_id)
    assert replay_first == live
    assert sio_events(first, job_id) == live
    wait_for(lambda: upload_leftovers(first) == [], timeout=10.0,
             what="the upload to be removed once the job completed")
    first.terminate()

    second = servers()
    assert second.job(job_id) == state
    again = second.analysis(job_id)
    assert again.status_code == 200
    assert again.content == analysis.content  # byte-identical
    assert again.headers["content-type"] == "application/json"
    # The whole stream, from the start and from the middle, over SSE and Socket.IO.
    assert sse_events(second, job_id) == live
    middle = len(live) // 2
    assert sse_events(second, job_id, last_event_id=middle) == live[middle:]
    assert sio_events(second, job_id, since=0) == live
    assert sio_events(second, job_id, since=middle) == live[middle:]
    # The result cache survived too: the same content is the same job, not a new analysis.
    cached = second.upload(audio["short"])
    assert cached.status_code == 200, cached.text
    assert cached.json()["job_id"] == job_id and cached.json()["cached"] is True
    assert upload_leftovers(second) == []


@pytest.mark.parametrize("kill_at", ["decoding", "mid-chunks"])
def test_a_job_killed_mid_way_resumes_without_gap_or_change(
        servers: Callable[..., Server], audio: dict[str, Path], kill_at: str) -> None:
    first = servers(workers=1)
    r = first.upload(audio["long"])
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    def kill_when_ready(events: list[Ev]) -> bool:
        if kill_at == "decoding":
            ready = any(e.data.get("status") == "decoding" for e in events)
        else:
            ready = len(chunks_of(events)) >= 5
        if ready:
            members = group_alive(first.pid)
            assert len(members) >= 2, members  # the server and its worker, in one group
            first.kill9()
        return ready

    before = sse_events(first, job_id, on_event=kill_when_ready)
    assert not first.running()
    assert not [e for e in before if e.type in TERMINAL], "the job ended before the kill"
    if kill_at == "decoding":
        assert not chunks_of(before)
    inputs = upload_leftovers(first)
    assert inputs == [f"{job_id}.flac"], inputs  # the input survives, under the job's id

    second = servers(workers=1)
    after = sse_events(second, job_id)
    check_stream(after, terminal="complete")
    segments = check_chunks(after)
    assert len(segments) == round(LONG_SECONDS)
    # What a client saw before the kill is exactly what the log now holds.
    assert after[:len(before)] == before
    assert sio_events(second, job_id) == after

    state = second.job(job_id)
    assert state["status"] == "complete" and state["progress"] == 100, state
    assert state["error"] is None
    analysis = second.analysis(job_id)
    assert analysis.status_code == 200
    doc = json.loads(analysis.content)
    assert doc["segments"] == segments
    assert doc == after[-1].data["analysis"]
    # A resumed job gives what an uninterrupted analysis gives.
    reference = reference_analysis(audio["long"], second.env())
    assert_close(segments, reference["segments"])
    for key, value in reference["summary"].items():
        assert_close(doc[key], value, f"$.{key}")
    wait_for(lambda: upload_leftovers(second) == [], timeout=10.0,
             what=f"the upload to be removed; left: {upload_leftovers(second)}")
    second.terminate()


def test_a_job_whose_input_vanished_while_down_ends_in_error(
        servers: Callable[..., Server], audio: dict[str, Path]) -> None:
    first = servers(workers=1)
    running = first.upload(audio["long"]).json()["job_id"]
    sse_events(first, running, on_event=lambda evs: bool(chunks_of(evs)))
    queued = first.upload(audio["other"]).json()["job_id"]  # one worker: it waits
    assert first.job(queued)["status"] == "pending"
    first.kill9()
    inputs = upload_leftovers(first)
    assert inputs == sorted([f"{running}.flac", f"{queued}.wav"]), inputs
    for name in inputs:
        (first.uploads / name).unlink()

    second = servers(workers=1)
    for job_id in (running, queued):
        state = second.job(job_id)
        assert state["status"] == "error", state
        assert state["error"] and state["error"]["code"] and state["error"]["message"], state
        assert state["finished_at"] is not None
        events = sse_events(second, job_id, timeout=30.0)  # ends: the job is over
        check_stream(events, terminal="error")
        assert events[-1].data["code"] == state["error"]["code"]
        assert sio_events(second, job_id, timeout=30.0) == events
        analysis = second.analysis(job_id)
        assert analysis.status_code == 409, analysis.text
        assert analysis.json()["code"] == "JOB_NOT_COMPLETE"
    assert httpx.get(f"{second.url}/health", timeout=10.0).json()["running_jobs"] == 0
    # The server is not stuck: the same content, uploaded again, is analysed afresh.
    r = second.upload(audio["other"])
    assert r.status_code == 202, r.text
    fresh = r.json()["job_id"]
    assert fresh != queued
    check_stream(sse_events(second, fresh), terminal="complete")
    second.terminate()


async def _replays_with_a_leaver(url: str, job_id: str, *, ahead: int, timeout: float
                                 ) -> dict[str, list[Ev]]:
    """``ahead`` clients ask for a full replay; then one more subscribes and disconnects as
    soon as it is acknowledged (its replay still queued behind theirs); then a last one
    subscribes. Returns what every client but the leaver received."""
    names = [f"ahead-{i}" for i in range(ahead)] + ["leaver", "last"]
    got: dict[str, list[Ev]] = {n: [] for n in names}
    acked = {n: asyncio.Event() for n in names}
    ended = {n: asyncio.Event() for n in names}
    clients = {n: socketio.AsyncClient(reconnection=False) for n in names}

    def handler(name: str) -> Any:
        async def on_any(event: str, *args: Any) -> None:
            data = args[0] if args else None
            if event == "subscribed":
                acked[name].set()
            elif isinstance(data, dict) and "seq" in data:
                got[name].append(Ev(data["seq"], event, data))
                if event in TERMINAL:
                    ended[name].set()
        return on_any

    for name, client in clients.items():
        client.on("*", handler(name))
        await client.connect(url, transports=["websocket"], wait_timeout=10)
    try:
        for name in names[:ahead]:
            await clients[name].emit("subscribe", {"job_id": job_id, "since": 0})
        await asyncio.wait_for(asyncio.gather(*(acked[n].wait() for n in names[:ahead])), 30)
        await clients["leaver"].emit("subscribe", {"job_id": job_id, "since": 0})
        await asyncio.wait_for(acked["leaver"].wait(), 30)
        await clients["leaver"].disconnect()
        await clients["last"].emit("subscribe", {"job_id": job_id, "since": 0})
        waiting = [n for n in names if n != "leaver"]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(ended[n].wait() for n in waiting)), timeout)
    finally:
        await asyncio.gather(*(c.disconnect() for c in clients.values()))
    del got["leaver"]
    return got


def test_a_client_leaving_before_its_replay_does_not_stop_the_others(
        servers: Callable[..., Server], audio: dict[str, Path]) -> None:
    srv = servers()
    job_id = srv.upload(audio["long"]).json()["job_id"]
    stored = sse_events(srv, job_id)
    check_stream(stored, terminal="complete")
    got = asyncio.run(_replays_with_a_leaver(srv.url, job_id, ahead=10, timeout=20.0))
    short = {name: len(events) for name, events in got.items() if events != stored}
    assert not short, f"clients without the whole stream ({len(stored)} events): {short}"


# -- graceful shutdown -------------------------------------------------------------------------
@dataclass
class Followers:
    job_sse: list[tuple[str | None, str | None]]
    """(id, event) of every frame with an event name, in order"""
    session_sse: list[tuple[str | None, str | None]]
    sio: list[str]
    ingest_close: int | None
    job_seen: list[Ev]


async def _sse_frames(client: httpx.AsyncClient, path: str,
                      out: list[tuple[str | None, str | None]], ready: asyncio.Event) -> None:
    async with client.stream("GET", path) as resp:
        assert resp.status_code == 200
        ready.set()
        ev_id: str | None = None
        async for line in resp.aiter_lines():
            if line.startswith("id:"):
                ev_id = line[3:].strip()
            elif line.startswith("event:"):
                out.append((ev_id, line[6:].strip()))
            elif line == "":
                ev_id = None


async def _follow_through_sigterm(srv: Server, job_id: str, session_id: str) -> Followers:
    import websockets

    job_frames: list[tuple[str | None, str | None]] = []
    session_frames: list[tuple[str | None, str | None]] = []
    sio_seen: list[str] = []
    job_seen: list[Ev] = []
    sio = socketio.AsyncClient(reconnection=False)
    sio_gone = asyncio.Event()
    sio.on("disconnect", lambda *_a: sio_gone.set())

    async def on_any(event: str, *args: Any) -> None:
        sio_seen.append(event)
        data = args[0] if args else None
        if isinstance(data, dict) and "seq" in data:
            job_seen.append(Ev(data["seq"], event, data))

    sio.on("*", on_any)
    await sio.connect(srv.url, transports=["websocket"], wait_timeout=10)
    await sio.emit("subscribe", {"job_id": job_id})
    timeout = httpx.Timeout(10.0, read=60.0)
    async with httpx.AsyncClient(base_url=srv.url, timeout=timeout) as client, \
            websockets.connect(srv.url.replace("http", "ws") + f"/session/{session_id}/audio",
                               compression=None) as ws:
        ready = [asyncio.Event(), asyncio.Event()]
        readers = [
            asyncio.create_task(_sse_frames(client, f"/api/jobs/{job_id}/events", job_frames,
                                            ready[0])),
            asyncio.create_task(_sse_frames(client, f"/session/{session_id}/stream",
                                            session_frames, ready[1])),
        ]
        await ws.send(b"\x00\x00" * 1600)
        assert json.loads(await ws.recv())["ok"]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
        await wait_until(lambda: sum(1 for _, e in job_frames if e == "chunk") >= 3,
                         timeout=JOB_TIMEOUT_S, what="three chunks")
        os.kill(srv.pid, signal.SIGTERM)  # the server alone: it stops its workers itself
        # Both SSE streams end on their own (the server closes them after telling us).
        await asyncio.wait_for(asyncio.gather(*readers), 30)
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
        close = ws.close_code
    with contextlib.suppress(TimeoutError):  # the server lets Socket.IO clients go too
        await asyncio.wait_for(sio_gone.wait(), 30)
    await sio.disconnect()
    return Followers(job_frames, session_frames, sio_seen, close, job_seen)


def test_sigterm_tells_every_follower_and_running_work_resumes_after_restart(
        servers: Callable[..., Server], audio: dict[str, Path]) -> None:
    first = servers(workers=1)
    job_id = first.upload(audio["long"]).json()["job_id"]
    session_id = httpx.post(f"{first.url}/session/start", json={}, timeout=10).json()[
        "session_id"]
    seen = asyncio.run(_follow_through_sigterm(first, job_id, session_id))
    assert first.proc is not None
    assert first.proc.wait(30) in (0, -signal.SIGTERM), first.log_tail()
    assert b"Application shutdown complete" in first.log_path.read_bytes()

    # SSE followers were told, with an event that has no id (it is not part of the stream).
    assert seen.job_sse[-1] == (None, "server-shutdown"), seen.job_sse[-3:]
    assert seen.session_sse[-1] == (None, "server-shutdown"), seen.session_sse
    assert not [e for _, e in seen.job_sse if e in TERMINAL]
    assert "server-shutdown" in seen.sio, seen.sio[-5:]
    assert seen.ingest_close == 1012  # "service restart": the client reconnects

    # The job was not failed: it resumes on the next start with its stream gap-free.
    second = servers(workers=1)
    after = sse_events(second, job_id)
    check_stream(after, terminal="complete")
    assert len(check_chunks(after)) == round(LONG_SECONDS)
    before = sorted(seen.job_seen, key=lambda e: e.seq)
    assert before and after[:len(before)] == before
    # The live session is still there, its sample clock where the client left it.
    state = httpx.get(f"{second.url}/session/{session_id}", timeout=10).json()
    assert state["state"] == "active", state
    assert state["samples"] == 1600, state
    second.terminate()


def test_the_stream_client_rides_through_a_server_restart(
        servers: Callable[..., Server], tmp_path: Path) -> None:
    """``tonewire stream`` keeps going when the server restarts under it: the audio socket
    and the event stream reconnect, and the session ends with every sample counted once."""
    seconds = 8.0
    wav = _voice_wav(tmp_path / "voice.wav", seconds)
    first = servers()
    client = subprocess.Popen(
        [sys.executable, "-m", "tonewire.cli", "stream", str(wav), "--server", first.url,
         "--speed", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=first.env())
    try:
        assert client.stdout is not None
        header = client.stdout.readline()
        assert header.startswith("session "), header
        sid = header.split()[1]

        def samples() -> int:
            r = httpx.get(f"{first.url}/session/{sid}", timeout=10)
            return int(r.json()["samples"])
        wait_for(lambda: samples() >= 16000 * 2, timeout=60, what="two seconds streamed")
        first.terminate()
        assert client.poll() is None, "the client finished before the restart"
        second = servers(port=first.port)
        out, _ = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 0, header + out
    state = httpx.get(f"{second.url}/session/{sid}", timeout=10).json()
    assert state["state"] == "ended", state
    assert state["samples"] == round(seconds * 16000), state  # each sample counted once
    history = httpx.get(f"{second.url}/session/{sid}/history", timeout=10).json()["events"]
    seqs = [e["seq"] for e in history]
    assert seqs == sorted(set(seqs)), "an event was stored twice"
    assert "end" in out.splitlines()[-1], out
    second.terminate()


def _voice_wav(path: Path, seconds: float) -> Path:
    """A voiced, syllabic 150 Hz buzz at 16 kHz."""
    import numpy as np

    t = np.arange(int(seconds * 16000)) / 16000
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8))
    voice = 0.25 * buzz * (0.6 + 0.4 * np.sin(2 * np.pi * 4.5 * t))
    return S.write_audio(path, voice.astype(np.float32), 16000)
