"""Scale-out, measured side by side in one run, on Redis and PostgreSQL on loopback.

1. **Jobs per minute, one worker against two**: one `tonewire serve --no-worker`, then one and
   then two `tonewire worker` processes (one analysis process each); the same number of jobs
   (distinct music files, so no cache hit) submitted at once; wall time from the first upload
   to the last `complete`. The ratio is the number that matters.
2. **Cross-node event latency**: live sessions with their ingest on server A and two SSE
   subscribers each, one on A and one on B; for every tone event, the time from sending the
   frame that completes its window to the event arriving, on A (same node) and on B (through
   Redis). p50/p99 of both and of the hop B - A.
3. **Live streams per node, Redis bus against the in-memory bus**: the load of
   `live_sessions.py` (real-time ingest + one SSE subscriber per stream) against a server on
   the in-memory bus and SQLite and one on the Redis bus and PostgreSQL, levels alternating
   between them: window-to-event p50/p99 and server CPU (medians), and the largest level
   whose p99 stays under 100 ms. (Redis's and PostgreSQL's own CPU is not counted.)

Clients run in separate processes. Every loop is bounded in count and time. Only 127.0.0.1.

    python bench/scaleout.py                     # all three, about 4 minutes
    python bench/scaleout.py --parts 1 --jobs 8 --job-seconds 180
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import live_sessions as LS

HOST = "127.0.0.1"
REDIS_URL = os.environ.get("TONEWIRE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN = os.environ.get("TONEWIRE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SR = 22050


# -- infrastructure ----------------------------------------------------------------------------

@contextlib.contextmanager
def backend() -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database and Redis namespace; both removed afterwards."""
    import asyncpg
    import redis

    name = f"twbench_{secrets.token_hex(4)}"
    ns = f"twbench-{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield {"TONEWIRE_BUS_URL": REDIS_URL, "TONEWIRE_QUEUE_URL": REDIS_URL,
               "TONEWIRE_NAMESPACE": ns,
               "TONEWIRE_DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"}
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{ns}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


class Proc:
    """A tonewire process (``serve`` or ``worker``) in its own process group."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.port = LS.free_port()
        if args[0] == "serve":
            args = [*args, "--host", HOST, "--port", str(self.port)]
        self.url = f"http://{HOST}:{self.port}"
        self.log = log
        full = {**{k: v for k, v in os.environ.items() if not k.startswith("TONEWIRE_")},
                "TONEWIRE_DATA_DIR": tempfile.mkdtemp(prefix="tonewire-bench-"), **env}
        with log.open("wb") as out:
            self.p = subprocess.Popen([sys.executable, "-m", "tonewire.cli", *args], env=full,
                                      stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def wait_ready(self, marker: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.log.read_text(errors="replace"):
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.log} did not start:\n"
                                   f"{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)


@contextlib.contextmanager
def running(procs: list[Proc]) -> Iterator[list[Proc]]:
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


def serve(env: dict[str, str], work: Path, name: str, *extra: str) -> Proc:
    p = Proc(["serve", *extra], env, work / f"{name}.log")
    p.wait_ready("Application startup complete")
    return p


def worker(env: dict[str, str], work: Path, name: str) -> Proc:
    p = Proc(["worker"], env, work / f"{name}.log")
    p.wait_ready("tonewire worker ready")
    return p


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


# -- 1: jobs per minute -------------------------------------------------------------------------

def music_wav(path: Path, seconds: float, seed: int) -> Path:
    """Chords, a bass line and noise hits at 120 BPM: enough for every analysis stage."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    roots = rng.choice([110.0, 123.5, 146.8, 164.8, 196.0], size=int(seconds / 2) + 1)
    f = roots[(t // 2).astype(int)]
    x = sum(np.sin(2 * np.pi * f * r * t) / (i + 1) for i, r in enumerate((1, 1.25, 1.5, 2)))
    beat = np.exp(-((t % 0.5) * 30)) * rng.standard_normal(t.size) * 0.5
    y = 0.2 * x / 2.1 + 0.2 * beat
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())
    return path


async def run_jobs(base: str, files: list[Path], timeout: float) -> float:
    """Submit every file at once; seconds from the first upload to the last ``complete``."""
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        t0 = time.perf_counter()
        ids = []
        for f in files:
            r = await http.post("/api/jobs", files={"file": (f.name, f.read_bytes())})
            r.raise_for_status()
            ids.append(r.json()["job_id"])
        pending = set(ids)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                status = (await http.get(f"/api/jobs/{job_id}")).json()["status"]
                if status == "complete":
                    pending.discard(job_id)
                elif status in ("error", "cancelled"):
                    raise RuntimeError(f"job {job_id} ended {status}")
            await asyncio.sleep(0.1)
        if pending:
            raise TimeoutError(f"{len(pending)} jobs unfinished after {timeout} s")
        return time.perf_counter() - t0


def part_jobs(env: dict[str, str], work: Path, n_jobs: int, seconds: float, repeat: int
              ) -> dict[str, Any]:
    """1 then 2 workers, ``repeat`` times alternating; medians of jobs/min and of the ratio."""
    inputs = work / "jobs"
    inputs.mkdir(exist_ok=True)
    base_env = {**env, "TONEWIRE_WORKERS": "1", "TONEWIRE_RUN_JOBS": "false"}
    rates: dict[int, list[float]] = {1: [], 2: []}
    with running([serve(base_env, work, "jobs-server")]) as (srv,):
        for r in range(repeat):
            for n_workers in (1, 2):
                files = [music_wav(inputs / f"r{r}w{n_workers}-{i}.wav", seconds,
                                   seed=1000 * r + 100 * n_workers + i) for i in range(n_jobs)]
                with running([worker(base_env, work, f"worker-r{r}-{n_workers}-{k}")
                              for k in range(n_workers)]):
                    wall = asyncio.run(run_jobs(srv.url, files, timeout=900))
                for f in files:
                    f.unlink()
                rates[n_workers].append(n_jobs / wall * 60)
                print(f"   jobs: run {r + 1}, {n_workers} worker(s): "
                      f"{rates[n_workers][-1]:.1f} jobs/min", flush=True)
    ratios = [b / a for a, b in zip(rates[1], rates[2], strict=True)]
    return {"1": statistics.median(rates[1]), "2": statistics.median(rates[2]),
            "ratio": statistics.median(ratios), "runs": rates, "job_seconds": seconds,
            "jobs": n_jobs}


# -- 2: cross-node latency ------------------------------------------------------------------------

async def two_node_session(a: str, b: str, seconds: float, pcm: bytes,
                           out: dict[str, list[float]]) -> None:
    import httpx
    import websockets

    async with httpx.AsyncClient(base_url=a, timeout=30) as http:
        r = await http.post("/session/start", json={"min_confidence": 0.0})
        r.raise_for_status()
        sid = r.json()["session_id"]
        window_sent: dict[float, float] = {}
        arrived: dict[str, dict[float, float]] = {"a": {}, "b": {}}
        ready = [asyncio.Event(), asyncio.Event()]

        async def sse(base: str, key: str, ready_ev: asyncio.Event) -> None:
            async with httpx.AsyncClient(base_url=base, timeout=None) as h, \
                    h.stream("GET", f"/session/{sid}/stream") as resp:
                kind = ""
                async for line in resp.aiter_lines():
                    ready_ev.set()
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "tone-event":
                        ts = round(json.loads(line[6:])["end_time"], 3)
                        arrived[key][ts] = time.perf_counter()
                    elif kind == "session-end":
                        return

        readers = [asyncio.create_task(sse(a, "a", ready[0])),
                   asyncio.create_task(sse(b, "b", ready[1]))]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 30)
        ws_url = a.replace("http", "ws", 1) + f"/session/{sid}/audio"
        async with websockets.connect(ws_url, compression=None) as ws:
            t0 = time.perf_counter()
            for i in range(int(seconds * 10)):
                frame = pcm[(i * LS.FRAME * 2) % (len(pcm) - LS.FRAME * 2):][: LS.FRAME * 2]
                sent = time.perf_counter()
                if (i + 1) % 10 == 0:
                    window_sent[round((i + 1) * LS.FRAME / LS.SR, 3)] = sent
                await ws.send(frame)
                await ws.recv()
                delay = t0 + (i + 1) * 0.1 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        await http.delete(f"/session/{sid}/end")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*readers), 15)
        for ts, sent in window_sent.items():
            ta, tb = arrived["a"].get(ts), arrived["b"].get(ts)
            if ta is not None and tb is not None:
                out["a"].append((ta - sent) * 1000)
                out["b"].append((tb - sent) * 1000)
                out["hop"].append((tb - ta) * 1000)


def part_latency(env: dict[str, str], work: Path, sessions: int, seconds: float
                 ) -> dict[str, Any]:
    node_env = {**env, "TONEWIRE_WORKERS": "1", "TONEWIRE_RUN_JOBS": "false"}
    with running([serve(node_env, work, "node-a"), serve(node_env, work, "node-b")]) as (a, b):
        out: dict[str, list[float]] = {"a": [], "b": [], "hop": []}
        pcm = LS.voice(20.0, seed=3)

        async def main() -> None:
            async def staggered(k: int) -> None:
                await asyncio.sleep(k / sessions)
                await two_node_session(a.url, b.url, seconds, pcm, out)
            await asyncio.gather(*(staggered(k) for k in range(sessions)))

        asyncio.run(main())
    return {k: {"n": len(v), "p50": pct(v, 50), "p99": pct(v, 99)} for k, v in out.items()}


# -- 3: live streams per node ---------------------------------------------------------------------

def part_live(env: dict[str, str], work: Path, levels: list[int], seconds: float,
              clients: int, repeat: int) -> dict[str, Any]:
    """Both servers run at once; each level alternates between them (``repeat`` times), so
    a change in the machine's other load hits both alike. Medians per level."""
    configs = {"memory+sqlite": {}, "redis+postgresql": env}
    servers: dict[str, Proc] = {}
    with running([]) as procs:
        for name, extra in configs.items():
            node_env = {**extra, "TONEWIRE_WORKERS": "1", "TONEWIRE_MAX_SESSIONS": "5000",
                        "TONEWIRE_LIVE_WORKERS": "1"}
            if extra:
                node_env["TONEWIRE_RUN_JOBS"] = "false"
            servers[name] = serve(node_env, work, f"live-{name}")
            procs.append(servers[name])
        rows: dict[str, dict[int, list[dict[str, Any]]]] = {n: {k: [] for k in levels}
                                                           for n in configs}
        for n in levels:
            for _ in range(repeat):
                for name, srv in servers.items():
                    r = LS.run_level(srv.url, srv.p.pid, n, seconds, clients)
                    rows[name][n].append(r)
                    print(f"   live: {name} {n} streams: p50 {r['window_p50']:.1f} "
                          f"p99 {r['window_p99']:.1f} cpu {r['server_cpu']:.2f}", flush=True)
    out: dict[str, Any] = {}
    for name in configs:
        levels_out = []
        for n in levels:
            runs = rows[name][n]
            levels_out.append({
                "streams": n, "events": min(r["events"] for r in runs),
                "expected": runs[0]["expected"],
                **{k: statistics.median(r[k] for r in runs)
                   for k in ("window_p50", "window_p99", "server_cpu")}})
        ok = [r["streams"] for r in levels_out
              if r["window_p99"] < 100 and r["events"] >= 0.9 * r["expected"]]
        out[name] = {"levels": levels_out, "best": max(ok, default=0)}
    return out


# -- report ---------------------------------------------------------------------------------------

def report(res: dict[str, Any]) -> None:
    if "jobs" in res:
        j = res["jobs"]
        print("\n1. jobs per minute (same jobs, same server)")
        for k in ("1", "2"):
            print(f"   {k} worker{'s' if k == '2' else ' '}: {j[k]:6.1f} jobs/min (median)")
        print(f"   ratio 2/1: {j['ratio']:.2f} (median of {len(j['runs'][1])} paired runs; "
              f"{j['jobs']} jobs of {j['job_seconds']:.0f} s audio each)")
    if "latency" in res:
        lat = res["latency"]
        print("\n2. window-to-event latency, ingest on A (ms)")
        for k, label in (("a", "subscriber on A"), ("b", "subscriber on B"),
                         ("hop", "B - A (the hop)")):
            print(f"   {label:16}: p50 {lat[k]['p50']:6.1f}  p99 {lat[k]['p99']:6.1f}  "
                  f"(n={lat[k]['n']})")
    if "live" in res:
        print("\n3. live streams per node (window-to-event ms, server CPU in cores)")
        for name, r in res["live"].items():
            for row in r["levels"]:
                print(f"   {name:17} {row['streams']:>4} streams: p50 {row['window_p50']:6.1f} "
                      f"p99 {row['window_p99']:6.1f}  events {row['events']}/{row['expected']}"
                      f"  cpu {row['server_cpu']:.2f}")
            print(f"   {name:17} largest level with p99 < 100 ms: {r['best']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="1,2,3")
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--job-seconds", type=float, default=240.0, help="length of each job's audio")
    ap.add_argument("--repeat", type=int, default=3,
                    help="paired runs (1 and 2 workers; memory and Redis bus)")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--streams", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    work = Path(tempfile.mkdtemp(prefix="tonewire-scaleout-"))
    res: dict[str, Any] = {"cores": os.cpu_count()}
    with backend() as env:
        if "1" in parts:
            res["jobs"] = part_jobs(env, work, args.jobs, args.job_seconds, args.repeat)
        if "2" in parts:
            res["latency"] = part_latency(env, work, args.sessions, args.seconds)
    if "3" in parts:
        with backend() as env:
            res["live"] = part_live(env, work, args.streams, args.seconds, args.clients,
                                    args.repeat)
    report(res)
    print(f"\n{res['cores']} cores; logs in {work}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
