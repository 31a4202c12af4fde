"""The live pipeline's performance shape, checked for behaviour (never for time):

- a tone event from the server equals the same window analysed in this process, one window at
  a time, with a fresh detector and tracker: batching windows of several sessions together,
  shipping PCM16 to the worker and keeping the tone tracker there change nothing;
- the ingest socket acknowledges frames a client pipelines (sent without waiting, past the
  point where reading pauses), each once, in order, with the right sample count, and answers
  a text frame among them in its place;
- the window batcher keeps one batch in flight per worker and sends what arrived meanwhile as
  the next batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from server import RunningServer, children_of, start_server, wait_until

from tonewire.sessions.batcher import WindowBatcher

SR = 16000
FRAME = 3200  # 100 ms of PCM16


def voice(f0: float, seconds: float, *, amp: float, syllable_hz: float, seed: int) -> bytes:
    """Harmonics on a gliding f0 under a syllable envelope, as PCM16 bytes."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 * (1 + np.sin(2 * np.pi * syllable_hz * t)) ** 2 / 4
    y = amp * x * env / 2.6
    return (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("live-pipeline"), workers=1,
                      live_workers=2) as s:
        yield s


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client
    assert server.alive(), "the server died"


def ws_url(server: RunningServer, sid: str) -> str:
    return server.url.replace("http://", "ws://", 1) + f"/session/{sid}/audio"


def expected_tones(pcm: bytes, *, min_confidence: float) -> list[dict[str, Any]]:
    """The session's tone events, computed here window by window."""
    from tonewire.analysis.speech import analyze_windows
    from tonewire.analysis.tone import ToneTracker
    from tonewire.analysis.vad import EnergyVad
    from tonewire.sessions.builtin import window_events

    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    vad, tracker = EnergyVad(), ToneTracker(min_confidence=min_confidence)
    out = []
    for start in range(0, x.size - SR + 1, SR):
        feats = analyze_windows(x[None, start : start + SR], sr=SR, vads=[vad])[0]
        for etype, data in window_events(feats, tracker, sr=SR, span=(start, start + SR)):
            if etype == "tone-event":
                out.append(data)
    return out


async def stream(server: RunningServer, sid: str, pcm: bytes) -> None:
    async with websockets.connect(ws_url(server, sid), compression=None) as ws:
        for i in range(0, len(pcm), FRAME):
            await ws.send(pcm[i : i + FRAME])
            ack = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert ack["ok"] is True and ack["samples"] == (i + FRAME) // 2


async def test_server_tones_equal_the_analysis_window_by_window(
        server: RunningServer, http: httpx.AsyncClient) -> None:
    voices = [voice(110.0 + 30 * k, 6.0, amp=0.1 + 0.1 * k, syllable_hz=3.0 + k, seed=k)
              for k in range(6)]
    sids = []
    for _ in voices:
        r = await http.post("/session/start", json={"min_confidence": 0.0})
        assert r.status_code == 200, r.text
        sids.append(r.json()["session_id"])
    # Six sessions at once, so windows of several sessions are analysed in one batch.
    await asyncio.gather(*(stream(server, sid, pcm) for sid, pcm in zip(sids, voices,
                                                                        strict=True)))
    for sid, pcm in zip(sids, voices, strict=True):
        assert (await http.delete(f"/session/{sid}/end")).status_code == 200
        got = (await http.get(f"/session/{sid}/history")).json()["events"]
        want = expected_tones(pcm, min_confidence=0.0)
        assert len(want) == 6
        assert [{k: v for k, v in e.items() if k not in ("seq", "session_id")}
                for e in got] == want


async def test_pipelined_frames_are_each_acknowledged_in_order(
        server: RunningServer, http: httpx.AsyncClient) -> None:
    r = await http.post("/session/start", json={"min_confidence": 0.0})
    sid = r.json()["session_id"]
    pcm = voice(150.0, 4.0, amp=0.3, syllable_hz=4.0, seed=9)
    frames = [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]
    async with websockets.connect(ws_url(server, sid), compression=None) as ws:
        for f in frames[:20]:  # sent without waiting: more than reading lets wait
            await ws.send(f)
        await ws.send('{"type": "keepalive"}')
        for f in frames[20:]:
            await ws.send(f)
        replies = [json.loads(await asyncio.wait_for(ws.recv(), 30))
                   for _ in range(len(frames) + 1)]
    assert replies[20] == {"ok": True, "type": "keepalive", "samples": 20 * FRAME // 2}
    acks = replies[:20] + replies[21:]
    assert [a["samples"] for a in acks] == [(i + 1) * FRAME // 2 for i in range(len(frames))]
    assert all(a["ok"] is True and a["bytes"] == FRAME for a in acks)
    assert (await http.delete(f"/session/{sid}/end")).status_code == 200
    view = (await http.get(f"/session/{sid}")).json()
    assert view["samples"] == len(pcm) // 2 and view["dropped_windows"] == 0


# -- the batcher, with a stand-in batch function -------------------------------------------------

def batch_sizes(x: np.ndarray, sr: int, keys: list[str], specs: list[str],
                spans: list[Any]) -> list[Any]:
    """Worker side: each row learns the size of the batch it was in; a ``slow`` spec holds
    the worker for a while, so what arrives meanwhile has to wait."""
    if "slow" in specs:
        time.sleep(0.5)
    return [(len(keys), int(row[0]), span) for row, span in zip(x, spans, strict=True)]


def failing_warm_up(rows: int) -> None:
    raise RuntimeError(f"warm-up of {rows} rows failed")


async def test_a_worker_whose_warm_up_fails_still_analyses() -> None:
    batcher = WindowBatcher(batch_sizes, workers=1, gather_s=0.0, warm_up=failing_warm_up)
    batcher.start()
    try:
        for k in range(3):  # a raising initializer would have broken the pool for good
            assert await batcher.analyze(np.full(4, k, dtype=np.int16), sr=SR, key="a",
                                         spec="fast", span=k) == (1, k, k)
    finally:
        await batcher.close()


async def test_the_batcher_sends_what_waited_as_one_batch() -> None:
    batcher = WindowBatcher(batch_sizes, workers=1, gather_s=0.0)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.analyze(np.zeros(4, dtype=np.int16), sr=SR,
                                                    key="a", spec="slow", span=0))
        await asyncio.sleep(0)  # the first window is dispatched alone: the worker is busy
        await asyncio.sleep(0)
        rest = [asyncio.create_task(batcher.analyze(np.full(4, k, dtype=np.int16), sr=SR,
                                                    key=f"s{k}", spec="fast", span=k))
                for k in range(1, 6)]
        odd = asyncio.create_task(batcher.analyze(np.zeros(3, dtype=np.int16), sr=SR,
                                                  key="odd", spec="fast", span=9))
        assert await first == (1, 0, 0)
        # The five same-shaped windows went together; the odd-length one after them.
        assert [await t for t in rest] == [(5, k, k) for k in range(1, 6)]
        assert await odd == (1, 0, 9)
    finally:
        await batcher.close()


async def test_the_batcher_gathers_windows_closed_apart_and_sends_a_full_batch_at_once() -> None:
    """Windows closed over the gathering time go as one batch; ``max_batch`` waiting windows
    go at once, without waiting out the gathering time."""
    for gather_s, max_batch in ((1.0, 128), (600.0, 3)):
        batcher = WindowBatcher(batch_sizes, workers=1, gather_s=gather_s, max_batch=max_batch)
        batcher.start()
        try:
            if max_batch == 128:
                spread = []
                for k in range(2):
                    spread.append(asyncio.create_task(batcher.analyze(
                        np.full(4, k, dtype=np.int16), sr=SR, key=f"s{k}", spec="fast",
                        span=k)))
                    await asyncio.sleep(0.1)
                assert [await t for t in spread] == [(2, 0, 0), (2, 1, 1)]
            else:
                full = [asyncio.create_task(batcher.analyze(
                    np.full(4, k, dtype=np.int16), sr=SR, key=f"s{k}", spec="fast", span=k))
                    for k in range(3)]
                # Waiting out the 600 s gathering time would fail the test's timeout.
                assert [await t for t in full] == [(3, k, k) for k in range(3)]
        finally:
            await batcher.close()


# -- the store's group commit -------------------------------------------------------------------

async def test_grouped_event_inserts_keep_failures_apart_and_queue_order(tmp_path: Any) -> None:
    """Event-only writes committed together as one INSERT: a failing one (a duplicate seq)
    fails alone, and a delete queued between inserts stays between them."""
    from tonewire.store.database import Store, sqlite_url
    from tonewire.streams.event import StreamEvent

    def ev(stream: str, seq: int) -> list[StreamEvent]:
        return [StreamEvent(stream=stream, seq=seq, type="t", data={"seq": seq})]

    store = Store(sqlite_url(tmp_path))
    await store.start()
    try:
        await store.append_events(ev("a", 1))
        results = await asyncio.gather(
            store.append_events(ev("a", 2)), store.append_events(ev("b", 1)),
            store.append_events(ev("a", 1)), store.append_events(ev("a", 3)),
            store.append_events(ev("c", 1)), store.delete_stream("c"),
            store.append_events(ev("c", 2)), return_exceptions=True)
        failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
        assert failed == [2]
        assert [e.seq for e in await store.read_events("a")] == [1, 2, 3]
        assert [e.seq for e in await store.read_events("b")] == [1]
        assert [e.seq for e in await store.read_events("c")] == [2]
    finally:
        await store.close()


# -- a live worker that dies ---------------------------------------------------------------------

def worker_pid(x: np.ndarray, sr: int, keys: list[str], specs: list[str],
               spans: list[Any]) -> list[Any]:
    """Worker side: which process ran the batch; a ``slow`` spec holds the worker a while."""
    if "slow" in specs:
        time.sleep(2.0)
    return [os.getpid()] * len(keys)


def forget_nothing(keys: list[str]) -> None:
    return None


async def _until_refused(batcher: WindowBatcher) -> None:
    """Wait until the worker's pool knows its process died (it refuses new work)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            batcher._executors[0].submit(int)
        except BrokenProcessPool:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the pool never noticed its worker died")


async def test_a_worker_that_dies_is_replaced_and_one_that_keeps_dying_is_backed_off(
        ) -> None:
    batcher = WindowBatcher(worker_pid, workers=1, gather_s=0.0, forget=forget_nothing)
    batcher.start()

    async def window(spec: str = "fast") -> Any:
        return await batcher.analyze(np.zeros(4, dtype=np.int16), sr=SR, key="k", spec=spec)
    try:
        first = await window()
        # Killed while running a batch: that batch fails to its callers...
        running = asyncio.create_task(window("slow"))
        await asyncio.sleep(0.5)
        os.kill(first, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            await running
        # ...and the next runs on a new worker.
        second = await window()
        assert second != first
        # Killed between batches, straight after a restart: the pool refuses work, forgetting
        # a session is harmless, and windows fail at once until the restart delay (1 s) is up.
        os.kill(second, signal.SIGKILL)
        await _until_refused(batcher)
        batcher.forget("k")
        with pytest.raises(BrokenProcessPool):
            await window()
        await asyncio.sleep(1.0)
        # Past it, a window that finds the worker dead between batches never ran: it runs on
        # the new worker instead of failing.
        third = await window()
        assert third not in (first, second)
        assert await window() == third
    finally:
        await batcher.close()


def _kill_analysis_processes(server: RunningServer) -> None:
    """SIGKILL every multiprocessing child of the server (its job and live workers; not the
    resource tracker)."""
    killed = 0
    for pid in children_of(server.process.pid):
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
            killed += 1
    assert killed >= 2, "expected a job worker and a live worker"


async def test_a_session_goes_on_when_its_analysis_worker_is_killed(tmp_path: Path) -> None:
    with start_server(tmp_path, workers=1, live_workers=1) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            sid = (await http.post("/session/start",
                                   json={"min_confidence": 0.0})).json()["session_id"]
            pcm = voice(140.0, 3.0, amp=0.3, syllable_hz=4.0, seed=3)

            async def send(pcm: bytes) -> None:  # a new ingest socket each time: the
                async with websockets.connect(ws_url(srv, sid), compression=None) as ws:
                    for i in range(0, len(pcm), FRAME):  # session goes on from its count
                        await ws.send(pcm[i : i + FRAME])
                        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["ok"]

            async def tones(n: int) -> bool:
                r = await http.get(f"/session/{sid}/history")
                return len(r.json()["events"]) >= n
            await send(pcm)
            await wait_until(lambda: tones(3), what="three tone events")
            _kill_analysis_processes(srv)
            await send(pcm)  # three more windows: the first may meet the dead worker
            await send(pcm)
            await wait_until(lambda: tones(8), what="tone events after the worker died")
            assert srv.alive()
            assert "live analysis worker 0 died" in srv.output()
            metrics = (await http.get("/metrics")).text
            assert "tonewire_live_worker_restarts_total 1.0" in metrics
            assert (await http.get(f"/session/{sid}")).json()["state"] == "active"
            assert (await http.delete(f"/session/{sid}/end")).status_code == 200
