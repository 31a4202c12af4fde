"""Live sessions under load: N concurrent streams against one `tonewire serve`.

Each stream is an ingest WebSocket sending 100 ms PCM16 frames at 16 kHz in real time (a
synthetic voice, so every 1 s window carries speech and yields a tone event; sessions start
with min_confidence 0) plus one SSE subscriber. Reported, per N:

- window-close-to-event latency: from sending the frame that completes a window to the
  SSE subscriber receiving that window's tone event (both clocks are the client's);
- ack round trip per frame;
- server CPU (share of one core) and RSS, from /proc of the server process tree;
- the largest N whose p99 window-to-event latency stays under 100 ms.

Clients run in separate processes (`--clients`), so their CPU is not the server's. Only
127.0.0.1. Every loop is bounded by `--seconds`.

    python bench/live_sessions.py --streams 50 100 200 300 500 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

SR = 16000
FRAME = 1600  # 100 ms
HOST = "127.0.0.1"


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


async def one_stream(base: str, seconds: float, pcm: bytes, out: dict[str, list[float]]
                     ) -> None:
    import httpx
    import websockets

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.post("/session/start", json={"min_confidence": 0.0})
        r.raise_for_status()
        sid = r.json()["session_id"]
        window_sent: dict[float, float] = {}
        got = asyncio.Event()

        async def sse() -> None:
            async with http.stream("GET", f"/session/{sid}/stream",
                                   timeout=httpx.Timeout(None, connect=10)) as resp:
                kind = ""
                got.set()
                async for line in resp.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "tone-event":
                        now = time.perf_counter()
                        ts = round(json.loads(line[6:])["end_time"], 3)
                        sent = window_sent.pop(ts, None)
                        if sent is not None:
                            out["window_ms"].append((now - sent) * 1000)
                    elif kind == "session-end":
                        return

        reader = asyncio.create_task(sse())
        await asyncio.wait_for(got.wait(), 30)
        ws_url = base.replace("http", "ws", 1) + f"/session/{sid}/audio"
        async with websockets.connect(ws_url, compression=None) as ws:
            t0 = time.perf_counter()
            n_frames = int(seconds * 10)
            for i in range(n_frames):
                frame = pcm[(i * FRAME * 2) % (len(pcm) - FRAME * 2):][: FRAME * 2]
                sent = time.perf_counter()
                if (i + 1) % 10 == 0:
                    window_sent[round((i + 1) * FRAME / SR, 3)] = sent
                await ws.send(frame)
                await ws.recv()
                out["ack_ms"].append((time.perf_counter() - sent) * 1000)
                delay = t0 + (i + 1) * 0.1 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        await http.delete(f"/session/{sid}/end")
        try:
            await asyncio.wait_for(reader, 10)
        except TimeoutError:
            reader.cancel()


def client_process(base: str, n: int, seconds: float, seed: int, q: Any) -> None:
    async def main() -> dict[str, list[float]]:
        pcm = voice(20.0, seed=seed)
        out: dict[str, list[float]] = {"window_ms": [], "ack_ms": []}
        # Stagger starts over one second so windows do not all close at once.
        async def staggered(k: int) -> None:
            await asyncio.sleep(k / max(n, 1))
            await one_stream(base, seconds, pcm, out)
        await asyncio.gather(*(staggered(k) for k in range(n)), return_exceptions=True)
        return out
    q.put(asyncio.run(main()))


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p)) if xs else float("nan")


def run_level(base: str, pid: int, streams: int, seconds: float, clients: int
              ) -> dict[str, Any]:
    q: Any = mp.get_context("spawn").Queue()
    per = [streams // clients + (1 if i < streams % clients else 0) for i in range(clients)]
    cpu0, _ = tree_cpu_rss(pid)
    t0 = time.perf_counter()
    procs = [mp.get_context("spawn").Process(target=client_process,
                                             args=(base, k, seconds, i, q))
             for i, k in enumerate(per) if k]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    wall = time.perf_counter() - t0
    cpu1, rss = tree_cpu_rss(pid)
    window = [x for r in results for x in r["window_ms"]]
    ack = [x for r in results for x in r["ack_ms"]]
    return {"streams": streams, "events": len(window), "expected": streams * int(seconds),
            "window_p50": pct(window, 50), "window_p99": pct(window, 99),
            "ack_p50": pct(ack, 50), "ack_p99": pct(ack, 99),
            "server_cpu": (cpu1 - cpu0) / wall, "rss_mib": rss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, nargs="+", default=[50, 100, 200, 300, 500])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--live-workers", type=int, default=1)
    args = ap.parse_args()
    port = free_port()
    data = tempfile.mkdtemp(prefix="tonewire-bench-")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TONEWIRE_")},
           "TONEWIRE_DATA_DIR": data, "TONEWIRE_MAX_SESSIONS": "5000",
           "TONEWIRE_RATE_LIMIT_PER_MINUTE": "0",
           "TONEWIRE_LIVE_WORKERS": str(args.live_workers), "TONEWIRE_WORKERS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "tonewire.cli", "serve", "--host", HOST,
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://{HOST}:{port}"
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        print(f"{'streams':>7} {'events':>9} {'win p50':>8} {'win p99':>8} {'ack p50':>8} "
              f"{'ack p99':>8} {'cpu':>6} {'rss MiB':>8}")
        best = 0
        for n in args.streams:
            r = run_level(base, server.pid, n, args.seconds, args.clients)
            print(f"{r['streams']:>7} {r['events']:>4}/{r['expected']:<4} "
                  f"{r['window_p50']:>8.1f} {r['window_p99']:>8.1f} {r['ack_p50']:>8.2f} "
                  f"{r['ack_p99']:>8.2f} {r['server_cpu']:>6.2f} {r['rss_mib']:>8.0f}",
                  flush=True)
            if r["window_p99"] < 100 and r["events"] >= 0.9 * r["expected"]:
                best = n
        print(f"largest N with window-to-event p99 < 100 ms: {best} (target 500)")
        print("latencies in ms; cpu = server process tree CPU seconds per second "
              "(2.0 = both cores)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
