"""A live ``tonewire serve`` for end-to-end tests, and small async clients around it.

:func:`start_server` runs the real CLI in a subprocess on a free 127.0.0.1 port, with a fresh
``TONEWIRE_DATA_DIR`` and the given settings, waits for ``/health`` and stops it on exit
(SIGTERM, then SIGKILL). Its output goes to a log file; the log is printed when the server
crashed or the body raised, and :meth:`RunningServer.output` gives it to a fixture that prints
it at teardown (pytest shows a test's captured output only when the test fails).

Clients: :func:`upload` / :func:`create_job` (httpx multipart), :func:`wait_for_status` and
:func:`wait_uploads_empty` (bounded polling), :class:`SioRecorder` (a ``socketio.AsyncClient``
recording every event in order, with :meth:`~SioRecorder.until_terminal`), :func:`collect_sse`
and :func:`sse_frames` (an SSE parser over an httpx stream). Checks shared by the transports:
:func:`check_stream` (a job's whole stream) and :func:`check_analysis_shape`. Audio:
:func:`write_music`, :func:`write_long_wav` and :func:`variant` (new content, so no cache hit).
Every wait is bounded; nothing sleeps except between polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import socketio
import uvicorn

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05
TERMINAL_EVENTS = frozenset({"complete", "error"})
TERMINAL_STATUSES = frozenset({"complete", "error", "cancelled"})
JOB_EVENTS = frozenset({"progress", "chunk", "complete", "error"})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _env_name(key: str) -> str:
    key = key.upper()
    return key if key.startswith("TONEWIRE_") else f"TONEWIRE_{key}"


T = TypeVar("T")


@dataclass
class RunningServer:
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    children_seen: set[int] = field(default_factory=set)
    """Child processes a test saw (they are cleaned up with the server)."""

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    def output(self, *, since: int = 0) -> str:
        """The server's stdout and stderr (one file), from byte ``since``."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def alive(self) -> bool:
        return self.process.poll() is None

    def children(self) -> set[int]:
        """The server's child processes now (workers and multiprocessing helpers)."""
        found = children_of(self.process.pid)
        self.children_seen |= found
        return found

    def uploads(self) -> list[str]:
        """Names in the upload directory (temporary parts and job inputs)."""
        if not self.upload_dir.exists():
            return []
        return sorted(p.name for p in self.upload_dir.iterdir())


def _dump(server: RunningServer, why: str) -> None:
    sys.stderr.write(f"\n----- tonewire server on port {server.port} ({why}) -----\n")
    sys.stderr.write(server.output()[-20000:])
    sys.stderr.write("\n----- end of server output -----\n")


def children_of(pid: int) -> set[int]:
    """Child processes of ``pid`` (Linux ``/proc``; empty elsewhere or once it is gone)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return {int(c) for t in tasks for c in (t / "children").read_text().split()}
    except OSError:
        return set()


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stop(proc: subprocess.Popen[bytes], children: set[int]) -> None:
    """SIGTERM, then SIGKILL after a timeout; then make sure the server's own child
    processes (captured while it ran) are gone too, killing leftovers by pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
    deadline = time.monotonic() + 3.0
    while any(process_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    for c in children:
        if process_alive(c):
            sys.stderr.write(f"tonewire server {proc.pid} left child process {c}: killing it\n")
            with contextlib.suppress(ProcessLookupError):
                os.kill(c, signal.SIGKILL)


def _launch(tmp_path: Path, env: dict[str, Any], attempt: int) -> RunningServer:
    port = free_port()
    data_dir = tmp_path / f"data-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    # Tests make many jobs and sessions from one address: no rate limit unless asked for.
    settings = {"TONEWIRE_RATE_LIMIT_PER_MINUTE": "0"}
    settings.update({_env_name(k): str(v) for k, v in env.items()})
    settings["TONEWIRE_DATA_DIR"] = str(data_dir)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TONEWIRE_")}
    child_env.update(settings)
    child_env["PYTHONUNBUFFERED"] = "1"
    log_path = tmp_path / f"server-{port}-{attempt}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tonewire.cli", "serve", "--host", HOST, "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env,
            cwd=tmp_path)
    return RunningServer(url=f"http://{HOST}:{port}", port=port, data_dir=data_dir,
                         process=proc, log_path=log_path, env=settings)


def _wait_healthy(server: RunningServer) -> bool:
    """Poll ``/health`` until it answers 200 (True) or the process exits (False)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not server.alive():
                return False
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{server.url}/health").status_code == 200:
                    return True
            time.sleep(POLL_S)
    raise TimeoutError(f"tonewire did not become healthy in {STARTUP_TIMEOUT_S} s")


@contextlib.contextmanager
def start_server(tmp_path: Path, **env: Any) -> Iterator[RunningServer]:
    """Run ``tonewire serve`` on a free port with a fresh data dir under ``tmp_path``.

    ``env``: settings, as ``workers=1`` or ``TONEWIRE_WORKERS=1``. The parent's own
    ``TONEWIRE_*`` variables are not passed on.
    """
    server: RunningServer | None = None
    for attempt in range(3):  # a free port can be taken between probe and bind
        server = _launch(tmp_path, env, attempt)
        try:
            if _wait_healthy(server):
                break
        except BaseException:
            _stop(server.process, children_of(server.process.pid))
            _dump(server, "did not start")
            raise
        if "address already in use" not in server.output().lower():
            _dump(server, f"exited with {server.process.returncode} on start")
            raise RuntimeError(f"tonewire serve exited with {server.process.returncode} on "
                               f"start: {server.output()[-2000:]}")
    else:
        assert server is not None
        raise RuntimeError(f"tonewire serve failed to start: {server.output()[-4000:]}")
    failed = False
    try:
        yield server
    except BaseException:
        failed = True
        raise
    finally:
        crashed = not server.alive()
        _stop(server.process, children_of(server.process.pid) | server.children_seen)
        if failed or crashed:
            _dump(server, "crashed" if crashed else "test failed")


# -- HTTP ------------------------------------------------------------------------------------


async def upload(client: httpx.AsyncClient, path: Path, *, filename: str | None = None,
                 field_name: str = "file") -> httpx.Response:
    """POST ``path`` to ``/api/jobs`` as multipart (field ``file``)."""
    data = path.read_bytes()
    return await client.post("/api/jobs", files={
        field_name: (filename or path.name, data, "application/octet-stream")})


async def create_job(client: httpx.AsyncClient, path: Path, **kw: Any) -> str:
    """Upload and return the new job's id (asserting a fresh 202)."""
    r = await upload(client, path, **kw)
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


def wait_for(predicate: Callable[[], T], *, timeout: float = 60.0, what: str,
             interval: float = 0.05) -> T:
    """Poll a synchronous ``predicate`` until it returns something truthy (returned), or
    raise ``AssertionError`` after ``timeout`` seconds: for tests without an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@contextlib.asynccontextmanager
async def serve_in_process(config: uvicorn.Config, *, timeout: float = 60.0
                           ) -> AsyncIterator[uvicorn.Server]:
    """Run ``config``'s app under uvicorn in this process, on the running loop, for the block
    (for tests that look inside the app or choose uvicorn's own protocols)."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), timeout=timeout,
                         what="uvicorn started")
        assert server.started, f"uvicorn did not start: {task}"
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait([task], timeout=timeout)  # its outcome is in the log
        task.cancel()


async def wait_until(predicate: Callable[[], Any], *, timeout: float = 20.0,
                     interval: float = POLL_S, what: str = "condition") -> Any:
    """Poll a sync or async predicate until it returns something truthy (that value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_for_status(client: httpx.AsyncClient, job_id: str,
                          statuses: str | frozenset[str] | set[str] = TERMINAL_STATUSES, *,
                          timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``GET /api/jobs/{id}`` until the job's status is one of ``statuses``."""
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)
    last: dict[str, Any] = {}

    async def check() -> dict[str, Any] | None:
        nonlocal last
        r = await client.get(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        last = r.json()
        return last if last["status"] in wanted else None

    try:
        result: dict[str, Any] = await wait_until(check, timeout=timeout,
                                                  what=f"job {job_id} in {sorted(wanted)}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; last seen {last}") from None
    return result


async def wait_uploads_empty(server: RunningServer, *, timeout: float = 15.0) -> None:
    """The upload directory empties once every job has ended (inputs are removed then)."""
    try:
        await wait_until(lambda: not server.uploads(), timeout=timeout, what="empty uploads")
    except TimeoutError:
        raise AssertionError(f"uploads left behind: {server.uploads()}") from None


@contextlib.asynccontextmanager
async def watched_client(server: RunningServer, *, cancel_jobs: bool = True
                         ) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for one test: afterwards, jobs left running are cancelled (so a shared
    server starts the next test clean), the server's output during the test is printed
    (pytest shows it only on failure), and the server must still be alive."""
    mark = server.log_size()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        if cancel_jobs:
            await cancel_unfinished(server)
    print(f"--- server output during the test ---\n{server.output(since=mark)}")
    assert server.alive(), "the server died"


def complete_job(server: RunningServer, path: Path, *,
                 accepted: tuple[int, ...] = (200, 202)) -> str:
    """Upload ``path`` (synchronously, for module fixtures) and wait for the job to complete;
    its id."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.post("/api/jobs", files={"file": (path.name, path.read_bytes())})
        assert r.status_code in accepted, r.text
        job_id: str = r.json()["job_id"]
        wait_for(lambda: client.get(f"/api/jobs/{job_id}").json()["status"] == "complete",
                 timeout=30, what=f"job {job_id} to complete")
    return job_id


async def cancel_unfinished(server: RunningServer) -> None:
    """Delete every job still running (keeps a shared server clean between tests)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        r = await client.get("/api/jobs", params={"limit": 200})
        jobs = r.json()["jobs"] if r.status_code == 200 else []
        for job in jobs:
            if job["status"] not in TERMINAL_STATUSES:
                await client.delete(f"/api/jobs/{job['job_id']}")


# -- Socket.IO -------------------------------------------------------------------------------


class SioRecorder:
    """A Socket.IO client that records every event, in arrival order, as ``(name, data)``."""

    def __init__(self, url: str, *, transports: list[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.transports = transports
        self.headers = headers or {}
        self.client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()
        self.client.on("*", self._on_any)

    def _on_any(self, event: str, *args: Any) -> None:
        # Synchronous on purpose: engine.io runs each message's handler as its own task, and
        # a handler that never awaits records events in the order they arrived.
        data = args[0] if len(args) == 1 else list(args) if args else None
        self.events.append((event, data))
        self._changed.set()

    async def connect(self) -> None:
        await self.client.connect(self.url, transports=self.transports, headers=self.headers,
                                  wait_timeout=10)

    async def disconnect(self) -> None:
        if self.client.connected:
            await self.client.disconnect()

    async def __aenter__(self) -> SioRecorder:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def emit(self, event: str, data: Any = None) -> None:
        await self.client.emit(event, data)

    async def call(self, event: str, data: Any = None, *, timeout: float = 10.0) -> Any:
        """Emit with an acknowledgement: returns once the server's handler has finished."""
        return await self.client.call(event, data, timeout=timeout)

    async def wait_for(self, predicate: Callable[[list[tuple[str, Any]]], Any], *,
                       timeout: float = 20.0, what: str = "events") -> Any:
        """Wait until ``predicate(self.events)`` is truthy; returns its value."""
        async def wait() -> Any:
            while True:
                value = predicate(self.events)
                if value:
                    return value
                self._changed.clear()
                await self._changed.wait()
        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                 f"got {summarize(self.events)}") from None

    async def next_event(self, name: str, *, after: int = 0, timeout: float = 20.0
                         ) -> tuple[int, Any]:
        """The first ``name`` event at index >= ``after``: ``(index, data)``."""
        def find(events: list[tuple[str, Any]]) -> tuple[int, Any] | None:
            for i in range(after, len(events)):
                if events[i][0] == name:
                    return i, events[i][1]
            return None
        result: tuple[int, Any] = await self.wait_for(find, timeout=timeout, what=name)
        return result

    def job_events(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The job's stream events received so far (progress, chunk, complete, error)."""
        return [(n, d) for n, d in self.events
                if n in JOB_EVENTS and isinstance(d, dict) and d.get("job_id") == job_id]

    async def until_terminal(self, job_id: str, *, timeout: float = 30.0
                             ) -> list[tuple[str, dict[str, Any]]]:
        """The job's events up to and including its ``complete`` or ``error``."""
        def done(events: list[tuple[str, Any]]) -> list[tuple[str, dict[str, Any]]] | None:
            evs = self.job_events(job_id)
            return evs if evs and evs[-1][0] in TERMINAL_EVENTS else None
        result: list[tuple[str, dict[str, Any]]] = await self.wait_for(
            done, timeout=timeout, what=f"terminal event of {job_id}")
        return result

    async def subscribe(self, job_id: str, since: int | None = None, *,
                        timeout: float = 10.0) -> None:
        """Subscribe and wait for ``subscribed {job_id}``."""
        start = len(self.events)
        payload: dict[str, Any] = {"job_id": job_id}
        if since is not None:
            payload["since"] = since
        await self.emit("subscribe", payload)
        await self.wait_for(
            lambda evs: any(n == "subscribed" and d == {"job_id": job_id}
                            for n, d in evs[start:]),
            timeout=timeout, what=f"subscribed {job_id}")


@contextlib.asynccontextmanager
async def sio_client(url: str, *, transports: list[str] | None = None,
                     headers: dict[str, str] | None = None) -> AsyncIterator[SioRecorder]:
    rec = SioRecorder(url, transports=transports, headers=headers)
    await rec.connect()
    try:
        yield rec
    finally:
        await rec.disconnect()


def summarize(events: list[tuple[str, Any]], limit: int = 12) -> str:
    """A short description of recorded events, for assertion messages."""
    parts = []
    for name, data in events[-limit:]:
        if isinstance(data, dict):
            keys = {k: data[k] for k in ("seq", "code", "status", "progress") if k in data}
            parts.append(f"{name}{keys}")
        else:
            parts.append(f"{name}({data!r})")
    more = f"{len(events) - limit} earlier, " if len(events) > limit else ""
    return f"[{more}{', '.join(parts)}]"


# -- checks --------------------------------------------------------------------------------

PROGRESS_STATUSES = frozenset({"pending", "decoding", "analyzing", "complete"})
Events = list[tuple[str, dict[str, Any]]]
"""A job's stream as ``(event name, payload)`` pairs, from Socket.IO or SSE."""


def seqs(events: Events) -> list[int]:
    return [d["seq"] for _, d in events]


def check_stream(events: Events, job_id: str) -> dict[str, Any]:
    """A complete job's whole stream: gap-free seqs from 1, progress monotonic, one chunk per
    segment in order, ending with ``complete`` whose segments are the chunks'. Returns the
    analysis."""
    assert events, "no events"
    assert seqs(events) == list(range(1, len(events) + 1)), summarize(events)
    for name, data in events:
        assert data["type"] == name
        assert data["job_id"] == job_id
    progress = [d for n, d in events if n == "progress"]
    chunks = [d for n, d in events if n == "chunk"]
    assert progress[0]["status"] == "pending"
    assert progress[0]["progress"] == 0
    values = [p["progress"] for p in progress]
    assert values == sorted(values), values
    for p in progress:
        assert set(p) >= {"status", "progress", "message", "type"}
        assert p["status"] in PROGRESS_STATUSES
        assert isinstance(p["message"], str)
    assert progress[-1]["status"] == "complete" and progress[-1]["progress"] == 100
    assert [c["segment"]["index"] for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert set(c) >= {"timestamp", "segment", "type"}
        assert c["timestamp"] == c["segment"]["startTime"]
    name, last = events[-1]
    assert name == "complete", summarize(events)
    assert [n for n, _ in events].count("complete") == 1
    assert "error" not in [n for n, _ in events]
    analysis: dict[str, Any] = last["analysis"]
    check_analysis_shape(analysis, job_id)
    assert analysis["segments"] == [c["segment"] for c in chunks]
    return analysis


def check_analysis_shape(analysis: dict[str, Any], job_id: str) -> None:
    """The original protocol's analysis: ``{id, video{id, title, duration, thumbnailUrl},
    overallEmotion{primary, confidence}, segments[], analyzedAt}``."""
    assert set(analysis) >= {"id", "video", "overallEmotion", "segments", "analyzedAt"}
    assert analysis["id"] == job_id
    assert set(analysis["video"]) >= {"id", "title", "duration", "thumbnailUrl"}
    assert set(analysis["overallEmotion"]) >= {"primary", "confidence"}
    assert isinstance(analysis["analyzedAt"], str) and analysis["analyzedAt"]
    segments = analysis["segments"]
    assert segments
    for seg in segments:
        assert set(seg) >= {"startTime", "endTime", "frequencies", "brainRegions",
                            "brainwaves", "emotion"}
        assert set(seg["frequencies"]) >= {"bass", "lowMid", "mid", "highMid", "high"}
        assert set(seg["brainwaves"]) >= {"delta", "theta", "alpha", "beta", "gamma"}
        assert set(seg["brainRegions"]) >= {
            "auditoryCortex", "amygdala", "hippocampus", "nucleusAccumbens", "motorCortex",
            "prefrontalCortex", "basalGanglia"}
        assert set(seg["emotion"]) >= {"primary", "confidence"}
    starts = [s["startTime"] for s in segments]
    assert starts == sorted(starts)
    duration = analysis["video"]["duration"]
    assert segments[-1]["endTime"] == pytest.approx(duration, abs=1.0)


# -- SSE -------------------------------------------------------------------------------------


@dataclass
class SseFrame:
    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def is_comment(self) -> bool:
        return self.id is None and self.event is None and self.data is None \
            and self.retry is None and bool(self.comments)


async def sse_frames(response: httpx.Response) -> AsyncIterator[SseFrame]:
    """Parse an SSE body into frames (a blank line ends a frame; comments are kept)."""
    frame = SseFrame()
    data_lines: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data_lines:
                frame.data = "\n".join(data_lines)
            if frame.id is not None or frame.event is not None or frame.data is not None \
                    or frame.retry is not None or frame.comments:
                yield frame
            frame, data_lines = SseFrame(), []
            continue
        if line.startswith(":"):
            frame.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            frame.id = value
        elif name == "event":
            frame.event = value
        elif name == "data":
            data_lines.append(value)
        elif name == "retry":
            frame.retry = int(value)


@dataclass
class SseResult:
    status: int
    headers: httpx.Headers
    frames: list[SseFrame]
    body: bytes = b""
    """The body of a non-200 answer."""

    def events(self) -> Events:
        """The event frames as ``(event, data)``, checking ``id`` is the data's ``seq``."""
        out: Events = []
        for f in self.frames:
            if f.event is None and f.data is None:
                continue
            assert f.id is not None and f.event is not None and f.data is not None, f
            data = json.loads(f.data)
            assert int(f.id) == data["seq"], f
            out.append((f.event, data))
        return out

    def json(self) -> Any:
        return json.loads(self.body)


async def collect_sse(client: httpx.AsyncClient, job_id: str, *,
                      headers: dict[str, Any] | None = None,
                      params: dict[str, str] | None = None,
                      timeout: float = 30.0,
                      stop: Callable[[SseFrame], bool] | None = None) -> SseResult:
    """``GET /api/jobs/{id}/events`` and read frames until the server closes the stream (or
    ``stop(frame)`` says so), bounded by ``timeout``."""
    frames: list[SseFrame] = []
    async with asyncio.timeout(timeout), client.stream(
            "GET", f"/api/jobs/{job_id}/events", headers=headers, params=params) as r:
        if r.status_code != 200:
            return SseResult(r.status_code, r.headers, [], await r.aread())
        async for frame in sse_frames(r):
            frames.append(frame)
            if stop is not None and stop(frame):
                break
    return SseResult(r.status_code, r.headers, frames)


# -- audio -----------------------------------------------------------------------------------


def write_music(path: Path, seconds: float, *, seed: int = 0) -> Path:
    """``seconds`` of :func:`signals.music_like` (distinct content per seed) at 22.05 kHz."""
    import signals as S

    return S.write_audio(path, S.music_like(seconds, seed=seed), S.SR)


def write_long_wav(path: Path, minutes: int) -> Path:
    """``minutes`` of music as 16-bit WAV, cheaply: one minute of music_like, repeated.

    About 0.25 s of analysis per minute here, and killed at once when cancelled."""
    import numpy as np
    import signals as S

    minute = S.music_like(60.0, seed=7)
    return S.write_audio(path, np.tile(minute, minutes), S.SR)


def variant(src: Path, dst: Path, n: int) -> Path:
    """A copy of a WAV with one sample nudged, so its content (and cache key) is new."""
    data = bytearray(src.read_bytes())
    mid = (len(data) // 2) & ~1
    data[mid:mid + 4] = n.to_bytes(4, "little", signed=False)
    dst.write_bytes(bytes(data))
    return dst
