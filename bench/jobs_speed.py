"""How fast do analysis jobs reach the people watching them?

One run against real servers (``python -m tonewire.cli serve`` subprocesses on 127.0.0.1, fresh
data directories), one 5-minute mp3 (``bench/fixtures.py`` makes it), four measurements:

(a) first chunk   POST /api/jobs response received -> first ``chunk`` event at a Socket.IO
                  client (connected before the upload, ``subscribe {job_id, since: 0}`` sent
                  as soon as the POST returns). One worker (``TONEWIRE_WORKERS=1``).
(b) complete      the same runs, POST response -> ``complete`` event, next to
                  ``tonewire.pipeline.analyze_file`` consumed in this process on the same file
                  (what ``tonewire analyze`` does, minus printing), run right after each job
                  while the server is idle. The ratio is the price of the server (upload
                  excluded: it is printed apart).
(c) fan-out       ``--clients`` Socket.IO clients (websocket transport, spread over
                  ``--client-procs`` processes so one client event loop is not what is
                  measured; their garbage collector is off during a run) subscribe to one job
                  and must each receive every event. The job waits on the single worker
                  behind a "blocker" job three times as long while they subscribe, so every
                  event after the blocker ends is delivered live. Lag has two clocks (all
                  processes share the machine's wall clock):
                  * spread: a client's receive time minus the first client's receive time of
                    the same ``seq`` (the payload has no timestamp);
                  * end to end: receive time minus the event's ``ts``, the wall-clock time of
                    the append that the server stores beside each event (read from the
                    ``events`` table of the server's SQLite file after the run; it includes
                    the commit, the bus and the Socket.IO send).
                  Lags are reported for ``chunk`` events; the ``complete`` event (the whole
                  analysis, hundreds of KB) is reported apart. Server CPU per delivered event:
                  psutil ``cpu_times`` (user + system, the server process only, not its
                  workers) from the end of the blocker until every client had ``complete``,
                  divided by the events delivered in that time; "marginal" subtracts the same
                  job watched by a single subscriber (the other clients connected but idle),
                  which leaves the cost of the extra deliveries alone.
(d) /health       latency of ``GET /health`` (one keep-alive connection, one request every
                  10 ms) while 4 jobs run on 2 workers (``TONEWIRE_WORKERS=2``), next to the
                  same server idle.

Distinct uploads are the same mp3 with a distinct 128-byte ID3v1 tag appended (the decoder
ignores it): the server caches results by content, so identical bytes would not be analysed
again. (a) and (b) print the median over ``--repeat`` runs after one discarded warm-up, (c)
the median over ``--fanout-repeat`` runs. The load average is printed with the results: the
clients, the server and its workers share the machine's cores. Targets are printed next to the
numbers, never asserted. Every wait is bounded.

    python bench/jobs_speed.py [--repeat 5] [--clients 500] [--client-procs 4] [--quick]
                               [--parts abcd] [--file some.mp3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
T = TypeVar("T")

# Targets: printed next to the numbers, never asserted.
TARGET_FIRST_CHUNK_S = 0.300
TARGET_COMPLETE_RATIO = 1.5
TARGET_FANOUT_P99_S = 0.100  # DESIGN.md: Socket.IO room fan-out p99 < 100 ms to ~500 clients
DESIGN_US_PER_DELIVERY = 45.0  # DESIGN.md: ~45 us of server CPU per Socket.IO delivery
TARGET_HEALTH_P99_S = 0.050  # this bench's own bar: analysis must never stall the event loop

START_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 300.0
TERMINAL = ("complete", "error")


# -- small utilities ---------------------------------------------------------------------------
def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, on uvloop when it is installed."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio (uvloop not installed)"
    return "uvloop"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def id3v1(title: str) -> bytes:
    """A 128-byte ID3v1 tag: appended to an mp3 it changes the bytes, not the audio."""
    raw = title.encode("latin-1", "replace")[:30]
    return b"TAG" + raw.ljust(30, b"\0") + b"\0" * 60 + b"2026" + b"\0" * 30 + b"\xff"


async def bounded(aw: Awaitable[T], timeout: float, what: str) -> T:
    try:
        return await asyncio.wait_for(aw, timeout)
    except TimeoutError:
        raise RuntimeError(f"timed out after {timeout:.0f} s: {what}") from None


# -- the server ----------------------------------------------------------------------------------
@dataclass
class Server:
    workdir: Path
    workers: int
    name: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.workdir / f"data-{self.name}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"server-{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Server:
        import httpx

        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("TONEWIRE_DATA_DIR", "TONEWIRE_WORKERS", "TONEWIRE_DATABASE_URL")
        }
        env.update(
            TONEWIRE_DATA_DIR=str(self.data_dir),
            TONEWIRE_WORKERS=str(self.workers),
            TONEWIRE_RATE_LIMIT_PER_MINUTE="0",
            TONEWIRE_MAX_SUBSCRIBERS_PER_STREAM="100000",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env)
        for _attempt in range(3):
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tonewire.cli",
                        "serve",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.port),
                    ],
                    cwd=self.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            deadline = time.monotonic() + START_TIMEOUT_S
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"server {self.name} did not start; see {self.log_path}")

    def cpu_seconds(self) -> float:
        import psutil

        t = psutil.Process(self.pid).cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole group (workers too) if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(10)

    def event_times(self, job_id: str) -> dict[int, tuple[str, float]]:
        """``seq -> (type, ts)`` of a job's stream, from the server's SQLite file."""
        db = self.data_dir / "tonewire.db"
        try:
            with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
                rows = conn.execute(
                    "SELECT seq, type, ts FROM events WHERE stream = ?", (f"job:{job_id}",)
                ).fetchall()
        except sqlite3.Error as exc:
            print(f"[jobs_speed] cannot read event times: {exc}", file=sys.stderr)
            return {}
        return {int(seq): (str(typ), float(ts)) for seq, typ, ts in rows}


async def upload(http: Any, data: bytes, name: str) -> tuple[str, float, float]:
    """POST the file; ``(job_id, t_sent, t_response)`` in ``time.perf_counter`` seconds."""
    t0 = time.perf_counter()
    r = await http.post("/api/jobs", files={"file": (name, data, "audio/mpeg")})
    t1 = time.perf_counter()
    if r.status_code != 202:
        raise RuntimeError(f"upload: {r.status_code} {r.text[:200]}")
    return str(r.json()["job_id"]), t0, t1


async def job_status(http: Any, job_id: str) -> str:
    r = await http.get(f"/api/jobs/{job_id}")
    r.raise_for_status()
    return str(r.json()["status"])


# -- (a) and (b) -------------------------------------------------------------------------------
@dataclass
class Watch:
    """One job followed by the Socket.IO client: receive times of the events that matter."""

    job_id: str
    first_chunk: float | None = None
    end: float | None = None
    end_type: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)


def inprocess(path: Path) -> tuple[float, float]:
    """``analyze_file`` consumed here: (first segment, total) seconds."""
    from tonewire.analysis.results import Segment
    from tonewire.config import Settings
    from tonewire.pipeline import analyze_file

    s = Settings()
    t0 = time.perf_counter()
    first = None
    for ev in analyze_file(path, s.analysis_options(), max_duration_s=s.max_duration_s):
        if first is None and isinstance(ev, Segment):
            first = time.perf_counter() - t0
    return (first if first is not None else float("nan")), time.perf_counter() - t0


async def part_ab(srv: Server, path: Path, repeat: int) -> dict[str, Any]:
    import httpx
    import socketio

    data = path.read_bytes()
    watches: dict[str, Watch] = {}
    client = socketio.AsyncClient(reconnection=False)

    async def on_any(event: str, *args: Any) -> None:
        now = time.perf_counter()
        payload = args[0] if args else None
        if not isinstance(payload, dict) or (w := watches.get(payload.get("job_id", ""))) is None:
            return
        if event == "chunk" and w.first_chunk is None:
            w.first_chunk = now
        elif event in TERMINAL and "seq" in payload:
            w.end, w.end_type = now, event
            w.done.set()

    client.on("*", on_any)
    runs: list[dict[str, float]] = []
    await client.connect(srv.url, transports=["websocket"], wait_timeout=30)
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=120.0) as http:
            for i in range(repeat + 1):  # run 0 is the warm-up
                job_id, t_sent, t_resp = await upload(http, data, path.name)
                w = watches[job_id] = Watch(job_id)
                await client.emit("subscribe", {"job_id": job_id, "since": 0})
                await bounded(w.done.wait(), JOB_TIMEOUT_S, f"job {job_id} to end")
                if w.end_type != "complete" or w.first_chunk is None or w.end is None:
                    raise RuntimeError(f"job {job_id} ended with {w.end_type}")
                await client.emit("unsubscribe", {"job_id": job_id})
                (await http.delete(f"/api/jobs/{job_id}")).raise_for_status()  # no cache hit
                first_seg, total = inprocess(path)  # the server is idle meanwhile
                run = {
                    "upload_s": t_resp - t_sent,
                    "first_chunk_s": w.first_chunk - t_resp,
                    "complete_s": w.end - t_resp,
                    "inproc_first_s": first_seg,
                    "inproc_s": total,
                }
                print(
                    f"[jobs_speed] (a)/(b) run {i}{' (warm-up)' if i == 0 else ''}: "
                    + ", ".join(f"{k} {v:.3f}" for k, v in run.items()),
                    file=sys.stderr,
                )
                if i > 0:
                    runs.append(run)
    finally:
        await client.disconnect()
    out: dict[str, Any] = {"runs": runs}
    for key in runs[0]:
        out[key] = median([r[key] for r in runs])
    out["ratio"] = median([r["complete_s"] / r["inproc_s"] for r in runs])
    out["ratio_of_medians"] = out["complete_s"] / out["inproc_s"]
    return out


# -- (c) fan-out: the client processes -----------------------------------------------------------

class LeanClient:
    """A Socket.IO client in ~60 lines, for load: engine.io v4 / Socket.IO v5 over a WebSocket
    (aiohttp, as python-socketio's client uses), the default namespace, no acks, no binary.

    It receives and UTF-8-decodes every frame in full, answers pings, and reads each event's
    name, ``job_id`` and ``seq`` from the text without decoding the JSON (the payload's ``seq``
    is its last key): what a client must do to notice every event, at a fraction of
    python-socketio's per-event cost (which decodes every payload, 284 KiB for ``complete``, and
    starts a task per event). The same handlers as for python-socketio clients record what it
    gets, so both kinds are checked alike; python-socketio clients are kept beside them
    (``--real-clients``) to show that the library's own client gets the same stream.
    """

    def __init__(self, session: Any, on_event: Callable[..., Awaitable[None]],
                 on_gone: Callable[..., Awaitable[None]]) -> None:
        self.session, self.on_event, self.on_gone = session, on_event, on_gone
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def connect(self, url: str, **_kw: Any) -> None:
        ws_url = url.replace("http://", "ws://", 1) + "/socket.io/?EIO=4&transport=websocket"
        self.ws = await self.session.ws_connect(ws_url, autoping=True, max_msg_size=0,
                                                compress=0)
        opened = await self.ws.receive_str(timeout=60)
        if not opened.startswith("0"):
            raise RuntimeError(f"no engine.io open packet: {opened[:80]!r}")
        await self.ws.send_str("40")
        self.reader = asyncio.create_task(self._read())

    async def emit(self, event: str, data: Any) -> None:
        await self.ws.send_str("42" + json.dumps([event, data], separators=(",", ":")))

    async def disconnect(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.send_str("41")
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)

    async def _read(self) -> None:
        import aiohttp

        ws = self.ws
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                text: str = msg.data
                if text == "2":
                    await ws.send_str("3")
                elif text.startswith('42["'):
                    end = text.index('"', 4)
                    event = text[4:end]
                    info: dict[str, Any] = {}
                    j = text.find('"job_id":"', end)
                    if j >= 0:
                        j += 10
                        info["job_id"] = text[j:text.index('"', j)]
                    k = text.rfind('"seq":')
                    if k >= 0:
                        info["seq"] = int(text[k + 6:text.index("}", k)])
                    await self.on_event(event, info)
                elif text.startswith("41") or text == "1":  # server disconnect / close
                    break
        finally:
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
            await self.on_gone()


async def fanout_child(url: str, count: int, connect_concurrency: int, real: int) -> None:
    """Child process: ``count`` clients, the first ``real`` of them python-socketio
    ``AsyncClient``s and the others :class:`LeanClient`s; commands on stdin, JSON lines on
    stdout."""
    import aiohttp
    import socketio

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    clients: list[Any] = [None] * count  # index i: the client whose events go to records[i]
    records: list[list[tuple[int, float]]] = [[] for _ in range(count)]
    run: dict[str, Any] = {"job": None, "active": set(), "acked": set(), "ended": set()}
    lost: dict[int, float] = {}  # client index -> time it was disconnected
    problems: list[Any] = []
    acked, ended = asyncio.Event(), asyncio.Event()

    def check() -> None:
        if run["acked"] >= run["active"] - lost.keys():
            acked.set()
        if run["ended"] | lost.keys() >= run["active"]:
            ended.set()

    def handler(i: int) -> Callable[..., Awaitable[None]]:
        async def on_any(event: str, *args: Any) -> None:
            now = time.time()
            payload = args[0] if args else None
            if not isinstance(payload, dict) or i not in run["active"]:
                return
            if event == "subscribed":
                if payload.get("job_id") == run["job"]:
                    run["acked"].add(i)
                    check()
                return
            if payload.get("job_id") != run["job"]:
                return
            if "seq" not in payload:
                problems.append([event, payload])
                return
            records[i].append((int(payload["seq"]), now))
            if event in TERMINAL:
                run["ended"].add(i)
                check()

        return on_any

    def on_disconnect(i: int) -> Callable[..., Awaitable[None]]:
        async def gone(*_args: Any) -> None:
            lost[i] = time.time()
            check()

        return gone

    sem = asyncio.Semaphore(connect_concurrency)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=60),
                                    connector=aiohttp.TCPConnector(limit=0))  # no pool cap

    async def connect(i: int) -> None:
        c: Any
        if i < real:
            c = socketio.AsyncClient(reconnection=False)
            c.on("*", handler(i))
            c.on("disconnect", on_disconnect(i))
        else:
            c = LeanClient(session, handler(i), on_disconnect(i))
        async with sem:
            await c.connect(url, transports=["websocket"], wait_timeout=60)
        clients[i] = c

    t0 = time.perf_counter()
    await bounded(asyncio.gather(*(connect(i) for i in range(count))), 300.0, "connecting")
    gc.collect()
    gc.freeze()  # the clients live for the whole run: keep them out of every collection
    say({"connected": count, "seconds": time.perf_counter() - t0})
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            cmd = json.loads(line)
            if cmd["cmd"] == "quit":
                return
            job, n = cmd["job_id"], int(cmd.get("clients", count))
            relost = {i: t for i, t in lost.items() if i < n}
            if relost:  # clients the server dropped in an earlier run: new ones, same slots
                for i in relost:
                    del lost[i]
                await bounded(asyncio.gather(*(connect(i) for i in relost)), 300.0,
                              "reconnecting")
            active = [i for i in range(n) if i not in lost]
            run.update(job=job, active=set(active), acked=set(), ended=set())
            problems.clear()
            for r in records:
                r.clear()
            acked.clear()
            ended.clear()
            check()
            gc.disable()  # a client-side collection pause is not a server delivery delay
            sent = await asyncio.gather(
                *(clients[i].emit("subscribe", {"job_id": job, "since": 0}) for i in active),
                return_exceptions=True,
            )
            problems.extend(["subscribe", repr(x)] for x in sent if x is not None)
            try:
                await bounded(acked.wait(), 120.0, "subscribe acks")
            except RuntimeError as exc:
                problems.append(["timeout", str(exc)])
            say({"subscribed": len(run["acked"])})
            try:
                await bounded(ended.wait(), JOB_TIMEOUT_S, "every client to get the end")
            except RuntimeError as exc:
                problems.append(["timeout", str(exc)])
            await asyncio.gather(
                *(clients[i].emit("unsubscribe", {"job_id": job}) for i in active
                  if i not in lost),
                return_exceptions=True,
            )
            gc.enable()
            say({"records": [records[i] for i in active], "real": [i < real for i in active],
                 "problems": problems[:20],
                 "lost_at": sorted(t for i, t in lost.items() if i in run["active"]),
                 "lost_before": n - len(active), "reconnected": len(relost)})
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(
                *(c.disconnect() for c in clients if c is not None), return_exceptions=True
            ), 20.0)
        await session.close()


class ClientProcs:
    """The client processes of (c), driven over their stdin/stdout."""

    def __init__(self, url: str, total: int, procs: int, real: int) -> None:
        self.counts = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
        real = min(real, total)
        reals = [real // procs + (1 if i < real % procs else 0) for i in range(procs)]
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--fanout-child", url, str(n),
                 str(min(r, n))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for n, r in zip(self.counts, reals, strict=True)
            if n > 0
        ]

    async def read(self, i: int, timeout: float) -> dict[str, Any]:
        p = self.procs[i]
        assert p.stdout is not None
        line = await bounded(asyncio.to_thread(p.stdout.readline), timeout, f"client process {i}")
        if not line:
            raise RuntimeError(f"client process {i} exited ({p.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def read_all(self, timeout: float) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self.read(i, timeout) for i in range(len(self.procs)))))

    def cpu_seconds(self) -> float:
        """User + system CPU of every client process so far."""
        import psutil

        total = 0.0
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(p.pid).cpu_times()
                total += t.user + t.system
        return total

    def send(self, i: int, cmd: dict[str, Any]) -> None:
        p = self.procs[i]
        assert p.stdin is not None
        p.stdin.write(json.dumps(cmd) + "\n")
        p.stdin.flush()

    def close(self) -> None:
        for i in range(len(self.procs)):
            with contextlib.suppress(OSError, ValueError):
                self.send(i, {"cmd": "quit"})
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
            for f in (p.stdin, p.stdout):
                if f is not None:
                    f.close()


# -- (c) fan-out: the controller ----------------------------------------------------------------
async def fanout_run(
    srv: Server, http: Any, cp: ClientProcs, data: bytes, tag: str, subscribers: int
) -> dict[str, Any]:
    """One job watched by ``subscribers`` clients (spread over the processes, in order).

    The job waits behind a blocker three times as long (the mp3 three times over) on the
    single worker while the clients subscribe; the measurement starts when the blocker ends.
    The blocker is not cancelled early: that kills its worker, and the job would wait for a
    fresh one.
    """
    blocker, _, _ = await upload(http, data * 3 + id3v1(f"blocker {tag}"), "blocker.mp3")
    target, _, _ = await upload(http, data + id3v1(f"target {tag}"), "target.mp3")
    share, left = [], subscribers
    for n in cp.counts:
        share.append(min(n, left))
        left -= share[-1]
    used = [i for i, n in enumerate(share) if n > 0]
    for i in used:
        cp.send(i, {"cmd": "subscribe", "job_id": target, "clients": share[i]})
    await asyncio.gather(*(cp.read(i, 180.0) for i in used))
    clean = await job_status(http, blocker) not in ("complete", "error", "cancelled")
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while await job_status(http, blocker) not in TERMINAL:
        if time.monotonic() > deadline:
            raise RuntimeError(f"blocker {blocker} still running after {JOB_TIMEOUT_S} s")
        await asyncio.sleep(0.02)
    cpu0, ccpu0, t_start = srv.cpu_seconds(), cp.cpu_seconds(), time.time()
    replies = await asyncio.gather(*(cp.read(i, JOB_TIMEOUT_S + 30) for i in used))
    cpu1, ccpu1, t_end = srv.cpu_seconds(), cp.cpu_seconds(), time.time()
    times = srv.event_times(target)
    analysis = await http.get(f"/api/jobs/{target}/analysis")
    for job in (blocker, target):  # both are over: a plain delete, so no cache hit later
        (await http.delete(f"/api/jobs/{job}")).raise_for_status()

    expected = sorted(times)
    n_chunks = sum(1 for typ, _ in times.values() if typ == "chunk")
    complete_seq = next((s for s, (typ, _) in times.items() if typ == "complete"), None)
    records = [rec for r in replies for rec in r["records"]]
    real = [flag for r in replies for flag in r["real"]]
    complete_ok = sum(1 for rec in records if sorted(s for s, _ in rec) == expected)
    first_recv: dict[int, float] = {}
    for rec in records:
        for seq, t in rec:
            first_recv[seq] = min(t, first_recv.get(seq, t))
    spread, e2e, complete_lag, delivered = [], [], [], 0
    real_e2e: list[float] = []
    lean_e2e: list[float] = []
    for rec, is_real in zip(records, real, strict=True):
        for seq, t in rec:
            if t >= t_start:
                delivered += 1
            typ, ts = times.get(seq, ("?", float("nan")))
            if typ == "chunk":
                spread.append(t - first_recv[seq])
                e2e.append(t - ts)
                (real_e2e if is_real else lean_e2e).append(t - ts)
            elif seq == complete_seq:
                complete_lag.append(t - ts)
    problems = [p for r in replies for p in r["problems"]]
    lost_at = sorted(t - t_start for r in replies for t in r["lost_at"])
    lost = len(lost_at) + sum(r["lost_before"] for r in replies)
    return {
        "subscribers": subscribers,
        "clean_start": clean,
        "events": len(expected),
        "chunks": n_chunks,
        "clients_with_every_event": complete_ok,
        "clients": subscribers,
        "lost": lost,
        "lost_from_s": lost_at[0] if lost_at else None,
        "lost_to_s": lost_at[-1] if lost_at else None,
        "delivered": delivered,
        "cpu_s": cpu1 - cpu0,
        "client_cpu_s": ccpu1 - ccpu0,
        "wall_s": t_end - t_start,
        "problems": problems[:10],
        "spread_p50": pct(spread, 50),
        "spread_p99": pct(spread, 99),
        "e2e_p50": pct(e2e, 50),
        "e2e_p99": pct(e2e, 99),
        "real_clients": sum(real),
        "real_every_event": sum(1 for rec, is_real in zip(records, real, strict=True)
                                if is_real and sorted(s for s, _ in rec) == expected),
        "real_e2e_p50": pct(real_e2e, 50),
        "real_e2e_p99": pct(real_e2e, 99),
        "lean_e2e_p50": pct(lean_e2e, 50),
        "lean_e2e_p99": pct(lean_e2e, 99),
        "complete_p50": pct(complete_lag, 50),
        "complete_max": max(complete_lag, default=0.0),
        "complete_bytes": len(analysis.content) if analysis.status_code == 200 else None,
    }


async def part_c(srv: Server, path: Path, repeat: int, clients: int, procs: int,
                 real: int) -> dict[str, Any]:
    import httpx

    data = path.read_bytes()
    cp = ClientProcs(srv.url, clients, procs, real)
    try:
        hello = await cp.read_all(360.0)
        connected = sum(h["connected"] for h in hello)
        print(
            f"[jobs_speed] (c) {connected} clients connected in "
            f"{max(h['seconds'] for h in hello):.1f} s",
            file=sys.stderr,
        )
        runs: list[dict[str, Any]] = []
        async with httpx.AsyncClient(base_url=srv.url, timeout=120.0) as http:
            for i in range(repeat):
                one = await fanout_run(srv, http, cp, data, f"{i}-1", 1)
                many = await fanout_run(srv, http, cp, data, f"{i}-n", clients)
                many["marginal_us"] = (
                    1e6
                    * (many["cpu_s"] - one["cpu_s"])
                    / max(1, many["delivered"] - one["delivered"])
                )
                many["raw_us"] = 1e6 * many["cpu_s"] / max(1, many["delivered"])
                many["single"] = one
                print(
                    f"[jobs_speed] (c) run {i}: {many['clients_with_every_event']}/"
                    f"{many['clients']} complete, spread p99 {many['spread_p99'] * 1e3:.0f} ms,"
                    f" e2e p99 {many['e2e_p99'] * 1e3:.0f} ms, "
                    f"{many['marginal_us']:.0f} us/delivery, {many['lost']} lost "
                    f"({many['lost_from_s']}..{many['lost_to_s']} s), wall "
                    f"{many['wall_s']:.1f} s",
                    file=sys.stderr,
                )
                runs.append(many)
    finally:
        cp.close()
    out: dict[str, Any] = {
        "runs": runs,
        "clients": clients,
        "procs": len(cp.procs),
        "connected": connected,
    }
    for key in (
        "spread_p50",
        "spread_p99",
        "e2e_p50",
        "e2e_p99",
        "real_e2e_p50",
        "real_e2e_p99",
        "lean_e2e_p50",
        "lean_e2e_p99",
        "complete_p50",
        "complete_max",
        "cpu_s",
        "client_cpu_s",
        "marginal_us",
        "raw_us",
        "wall_s",
    ):
        out[key] = median([r[key] for r in runs])
    out["single_wall_s"] = median([r["single"]["wall_s"] for r in runs])
    out["single_e2e_p50"] = median([r["single"]["e2e_p50"] for r in runs])
    out["single_e2e_p99"] = median([r["single"]["e2e_p99"] for r in runs])
    out["complete_bytes"] = runs[0]["complete_bytes"] if runs else None
    out["every_event"] = min(r["clients_with_every_event"] for r in runs)
    out["real_clients"] = runs[0]["real_clients"] if runs else 0
    out["real_every_event"] = min(r["real_every_event"] for r in runs)
    out["lost"] = max(r["lost"] for r in runs)
    out["clean"] = all(r["clean_start"] and r["single"]["clean_start"] for r in runs)
    out["problems"] = [p for r in runs for p in r["problems"]][:10]
    return out


# -- (d) /health under load --------------------------------------------------------------------
async def health_samples(
    http: Any,
    *,
    n: int | None,
    until: Callable[[], bool] | None,
    max_s: float,
    period: float = 0.010,
) -> list[float]:
    out: list[float] = []
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline and (n is None or len(out) < n):
        if until is not None and until():
            break
        t0 = time.perf_counter()
        r = await http.get("/health")
        out.append(time.perf_counter() - t0)
        r.raise_for_status()
        await asyncio.sleep(max(0.0, period - (time.perf_counter() - t0)))
    return out


async def part_d(srv: Server, path: Path, jobs: int) -> dict[str, Any]:
    import httpx

    data = path.read_bytes()
    async with (
        httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http,
        httpx.AsyncClient(base_url=srv.url, timeout=30.0) as control,
    ):
        idle = await health_samples(http, n=300, until=None, max_s=60.0)
        ids = [
            (await upload(control, data + id3v1(f"health {i}"), "h.mp3"))[0] for i in range(jobs)
        ]
        finished: set[str] = set()

        async def watch() -> None:
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while len(finished) < len(ids) and time.monotonic() < deadline:
                for j in ids:
                    if j not in finished and await job_status(control, j) in TERMINAL:
                        finished.add(j)
                await asyncio.sleep(0.25)

        t0 = time.perf_counter()
        watcher = asyncio.create_task(watch())
        busy = await health_samples(
            http, n=None, until=lambda: len(finished) == len(ids), max_s=JOB_TIMEOUT_S
        )
        wall = time.perf_counter() - t0
        await watcher
        states = [await job_status(control, j) for j in ids]
    return {
        "idle_p50": pct(idle, 50),
        "idle_p99": pct(idle, 99),
        "busy_p50": pct(busy, 50),
        "busy_p99": pct(busy, 99),
        "busy_max": max(busy, default=float("nan")),
        "samples": len(busy),
        "jobs": jobs,
        "wall_s": wall,
        "states": states,
    }


# -- the fixture ---------------------------------------------------------------------------------
def fixture_mp3() -> tuple[Path, str]:
    """``bench/fixtures.py``'s 5-minute song (built in a subprocess, cached), or, without that
    file, 5 minutes of numpy music encoded here."""
    script = HERE / "fixtures.py"
    if script.is_file():
        proc = subprocess.run(
            [sys.executable, str(script), "--json"],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
            timeout=1800,
        )
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        return Path(info["5min"]), f"bench/fixtures.py, rendered with {info['engine']}"
    out = HERE / "out" / "jobs-speed-5min.mp3"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        synth_mp3(out, seconds=300.0)
    return out, "numpy music-like synth (bench/fixtures.py absent)"


def synth_mp3(path: Path, *, seconds: float, rate: int = 44100) -> None:
    """Kick, snare, hats and a I-V-vi-IV pad at 120 BPM, as a 192 kbps stereo mp3."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    beat = 0.5
    roots = [261.63, 392.0, 440.0, 329.63]
    chord = np.array(roots)[(t // (4 * beat)).astype(int) % 4]
    pad = sum(np.sin(2 * np.pi * chord * k * t) / k for k in (1, 1.26, 1.5)) * 0.12
    drums = np.zeros(n)
    kick_t = np.arange(int(0.3 * rate)) / rate
    kick = np.sin(2 * np.pi * (50 * kick_t + 2 * (1 - np.exp(-kick_t * 30)))) * np.exp(-kick_t * 9)
    snare = (
        rng.standard_normal(int(0.2 * rate)) * np.exp(-np.arange(int(0.2 * rate)) / rate * 18) * 0.4
    )
    for i, start in enumerate(np.arange(0, seconds - 0.5, beat)):
        s = int(start * rate)
        hit = kick if i % 2 == 0 else snare
        drums[s : s + hit.size] += hit[: n - s]
    mix = (pad + 0.6 * drums).astype(np.float32)
    mix *= 0.9 / float(np.max(np.abs(mix)))
    stereo = np.stack([mix, mix])
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="stereo")
        stream.bit_rate = 192_000
        for start in range(0, n, rate):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(stereo[:, start : start + rate]),
                format="fltp",
                layout="stereo",
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# -- report ----------------------------------------------------------------------------------------
def ms(x: float) -> str:
    return f"{x * 1e3:7.1f} ms"


def ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


def environment(path: Path, source: str) -> list[str]:
    from importlib.metadata import version

    import av
    import numpy

    load = os.getloadavg()
    return [
        f"file:    {path.name} ({path.stat().st_size / 2**20:.1f} MiB; {source})",
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, numpy {numpy.__version__}, av {av.__version__}, "
        f"python-socketio {version('python-socketio')}, uvicorn {version('uvicorn')}",
        f"loop:    {loop_name()} (client side; the server uses uvicorn's default)",
        f"load:    {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start (1/5/15 min)",
    ]


def report(res: dict[str, Any], header: list[str]) -> str:
    lines = [f"tonewire jobs speed, {time.strftime('%Y-%m-%d %H:%M')}", *header, ""]
    if "ab" in res:
        ab = res["ab"]
        lo = min(r["first_chunk_s"] for r in ab["runs"])
        hi = max(r["first_chunk_s"] for r in ab["runs"])
        lines += [
            f"(a)/(b): 1 worker, median of {len(ab['runs'])} runs after a warm-up",
            f"(a) POST response -> first chunk      {ms(ab['first_chunk_s'])}  "
            f"({lo * 1e3:.0f}-{hi * 1e3:.0f})  target < {TARGET_FIRST_CHUNK_S * 1e3:.0f} ms"
            f"   {ok(ab['first_chunk_s'] < TARGET_FIRST_CHUNK_S)}",
            f"    analyze_file first segment        {ms(ab['inproc_first_s'])}  (in-process)",
            f"(b) POST response -> complete         {ab['complete_s']:7.2f} s",
            f"    analyze_file in-process           {ab['inproc_s']:7.2f} s",
            f"    server / in-process               {ab['ratio']:7.2f}x   target <= "
            f"{TARGET_COMPLETE_RATIO}x   {ok(ab['ratio'] <= TARGET_COMPLETE_RATIO)}"
            f"   (ratio of medians {ab['ratio_of_medians']:.2f}x)",
            f"    upload, POST round trip           {ms(ab['upload_s'])}  (not in the above)",
            "",
        ]
    for mode, c in res.get("c", {}).items():
        lost_note = (f"   (worst run: {c['lost']} clients dropped their connection)"
                     if c["lost"] else "")
        early_note = "" if c["clean"] else "   (WARNING: the job began before all subscribed)"
        lines += [
            f"(c) fan-out, TONEWIRE_SOCKETIO_FANOUT={mode}: {c['connected']} Socket.IO clients "
            f"(websocket; {c['real_clients']} python-socketio, the rest lean) in {c['procs']} "
            f"processes, 1 worker, median of {len(c['runs'])} runs; load after "
            f"{c['load'][0]:.2f} {c['load'][1]:.2f} {c['load'][2]:.2f}",
            f"    clients with every event          {c['every_event']}/{c['clients']}"
            f" (python-socketio {c['real_every_event']}/{c['real_clients']}){lost_note}"
            f"{early_note}",
            f"    chunk lag vs first receiver       p50 {ms(c['spread_p50'])}  p99 "
            f"{ms(c['spread_p99'])}   target p99 < {TARGET_FANOUT_P99_S * 1e3:.0f} ms   "
            f"{ok(c['spread_p99'] < TARGET_FANOUT_P99_S)}",
            f"    chunk lag vs server append (ts)   p50 {ms(c['e2e_p50'])}  p99 "
            f"{ms(c['e2e_p99'])}   target p99 < {TARGET_FANOUT_P99_S * 1e3:.0f} ms   "
            f"{ok(c['e2e_p99'] < TARGET_FANOUT_P99_S)}",
            f"      python-socketio clients only    p50 {ms(c['real_e2e_p50'])}  p99 "
            f"{ms(c['real_e2e_p99'])}",
            f"      lean clients only               p50 {ms(c['lean_e2e_p50'])}  p99 "
            f"{ms(c['lean_e2e_p99'])}",
            f"    same, 1 subscriber                p50 {ms(c['single_e2e_p50'])}  p99 "
            f"{ms(c['single_e2e_p99'])}",
            f"    complete ({(c['complete_bytes'] or 0) / 1024:.0f} KiB analysis) lag  p50 "
            f"{ms(c['complete_p50'])}  last client {ms(c['complete_max'])}",
            f"    job wall time, {c['clients']} vs 1 subscriber   {c['wall_s']:.2f} s vs "
            f"{c['single_wall_s']:.2f} s",
            f"    server CPU per delivered event    {c['marginal_us']:7.1f} us marginal, "
            f"{c['raw_us']:.1f} us all-in   (DESIGN: ~{DESIGN_US_PER_DELIVERY:.0f} us)",
            f"    CPU during the job                server {c['cpu_s']:.1f} s, client processes "
            f"{c['client_cpu_s']:.1f} s, in {c['wall_s']:.1f} s on {os.cpu_count()} CPUs",
        ]
        if c["problems"]:
            lines.append(f"    problems: {c['problems']}")
        lines.append("")
    if "d" in res:
        d = res["d"]
        lines += [
            f"(d) /health while {d['jobs']} jobs run on 2 workers ({d['samples']} requests over "
            f"{d['wall_s']:.1f} s; jobs ended {','.join(sorted(set(d['states'])))})",
            f"    busy  p50 {ms(d['busy_p50'])}  p99 {ms(d['busy_p99'])}  max "
            f"{ms(d['busy_max'])}   target p99 < {TARGET_HEALTH_P99_S * 1e3:.0f} ms   "
            f"{ok(d['busy_p99'] < TARGET_HEALTH_P99_S)}",
            f"    idle  p50 {ms(d['idle_p50'])}  p99 {ms(d['idle_p99'])}   busy/idle p99 "
            f"{d['busy_p99'] / d['idle_p99']:.1f}x",
            "",
        ]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------
async def run_all(args: argparse.Namespace, path: Path, workdir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if "a" in args.parts or "b" in args.parts:
        srv = Server(workdir, workers=1, name="one-worker").start()
        try:
            res["ab"] = await part_ab(srv, path, args.repeat)
        finally:
            srv.stop()
    if "c" in args.parts:
        res["c"] = {}
        for mode in [m.strip() for m in args.fanout_modes.split(",") if m.strip()]:
            srv = Server(workdir, workers=1, name=f"fanout-{mode}",
                         env={"TONEWIRE_SOCKETIO_FANOUT": mode}).start()
            try:
                one = await part_c(srv, path, args.fanout_repeat, args.clients,
                                   args.client_procs, args.real_clients)
                one["load"] = os.getloadavg()
                res["c"][mode] = one
            finally:
                srv.stop()
    if "d" in args.parts:
        srv = Server(workdir, workers=2, name="two-workers").start()
        try:
            res["d"] = await part_d(srv, path, 4)
        finally:
            srv.stop()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed runs for (a)/(b) (median)")
    ap.add_argument("--fanout-repeat", type=int, default=3, help="runs of (c) (median)")
    ap.add_argument("--clients", type=int, default=500, help="Socket.IO clients in (c)")
    ap.add_argument(
        "--client-procs",
        type=int,
        default=4,
        choices=range(1, 5),
        metavar="1-4",
        help="processes the clients of (c) are spread over",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="--repeat 2 --fanout-repeat 1 (same clients): a smoke run",
    )
    ap.add_argument("--parts", default="abcd", help="which measurements: any of a, b, c, d")
    ap.add_argument("--file", type=Path, help="benchmark this mp3 instead of the fixture")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument("--keep", action="store_true", help="keep the servers' data and logs")
    ap.add_argument(
        "--real-clients",
        type=int,
        default=50,
        help="how many of the (c) clients are python-socketio AsyncClients; the others are "
        "lean clients (LeanClient: same protocol, no JSON decoding), so that the clients do "
        "not out-use the server on a small machine. --real-clients 500: all of them",
    )
    ap.add_argument(
        "--fanout-modes",
        default="direct",
        help="comma-separated TONEWIRE_SOCKETIO_FANOUT values for (c), each on its own server "
        "in this run, e.g. emit,direct to compare python-socketio's emit with the direct path",
    )
    ap.add_argument("--fanout-child", nargs=3, metavar=("URL", "N", "REAL"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fanout_child:
        url, n, real = args.fanout_child
        run_loop(fanout_child(url, int(n), connect_concurrency=25, real=int(real)))
        return
    if args.quick:
        args.repeat, args.fanout_repeat = 2, 1
    if args.file:
        path, source = args.file, "given"
    else:
        path, source = fixture_mp3()
    header = environment(path, source)
    workdir = Path(tempfile.mkdtemp(prefix="tonewire-jobs-speed-"))
    try:
        res = run_loop(run_all(args, path, workdir))
    except BaseException:
        print(f"[jobs_speed] failed; server logs kept in {workdir}", file=sys.stderr)
        raise
    print(report(res, header))
    if args.json:
        args.json.write_text(json.dumps({"header": header, **res}, indent=1, default=str))
    if args.keep:
        print(f"[jobs_speed] data and logs kept in {workdir}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
