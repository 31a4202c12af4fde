"""Live-session parts on their own: the sample buffer and the idle reaper (one-pass form with
an injected clock, on a real SQLite store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tonewire.sessions.buffer import SampleBuffer
from tonewire.sessions.classifier import WindowEvents
from tonewire.sessions.model import SessionOptions, session_stream
from tonewire.sessions.service import SessionService
from tonewire.store.database import Store
from tonewire.streams.bus import MemoryBus
from tonewire.streams.log import StreamLog


def pcm(samples: np.ndarray) -> bytes:
    return np.asarray(samples, dtype="<i2").tobytes()


# -- sample buffer -----------------------------------------------------------------------------

def test_windows_are_cut_by_the_sample_clock() -> None:
    buf = SampleBuffer(window=1600, hop=1600)
    ramp = np.arange(4000, dtype=np.int16)
    due = []
    for i in range(0, ramp.size, 320):  # 20 ms frames
        due += buf.push(pcm(ramp[i : i + 320]))
    assert [(w.start_sample, w.end_sample) for w in due] == [(0, 1600), (1600, 3200)]
    np.testing.assert_array_equal(np.round(due[1].samples * 32768), ramp[1600:3200])
    tail = buf.flush()
    assert tail is not None and (tail.start_sample, tail.end_sample) == (3200, 4000)
    assert buf.flush() is None


def test_overlapping_windows_and_large_frames() -> None:
    buf = SampleBuffer(window=1000, hop=250)
    x = np.arange(-5000, 5000, dtype=np.int16)
    due = buf.push(pcm(x))  # one frame much larger than the window
    assert [w.start_sample for w in due] == list(range(0, 9001, 250))
    for w in due:
        np.testing.assert_array_equal(np.round(w.samples * 32768), x[w.start_sample:
                                                                       w.end_sample])


def test_a_resumed_session_keeps_counting() -> None:
    buf = SampleBuffer(window=800, hop=800, start_sample=16000)
    due = buf.push(pcm(np.zeros(800)))
    assert [(w.start_sample, w.end_sample) for w in due] == [(16000, 16800)]


# -- reaper ------------------------------------------------------------------------------------

class Quiet:
    """A classifier that yields nothing: the reaper does not care what sessions hear."""

    async def readiness(self) -> dict[str, Any]:
        return {"status": "ready", "service": "test", "message": "ok"}

    async def classify(self, win: Any) -> WindowEvents:
        return WindowEvents()

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[tuple[SessionService, Clock]]:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await store.start()
    clock = Clock()
    service = SessionService(store=store, log=StreamLog(store, MemoryBus()),
                             classifiers=lambda _id, _opts: Quiet(), idle_ttl_s=90.0,
                             max_sessions=10, clock=clock)
    await service.start(reaper=False)
    try:
        yield service, clock
    finally:
        await service.close()
        await store.close()


class Socket:
    closed: tuple[int, str] | None = None

    async def close_ingest(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_a_session_nobody_ever_joined_is_reaped(
        sessions: tuple[SessionService, Clock]) -> None:
    service, clock = sessions
    sid = (await service.create(SessionOptions()))["session_id"]
    assert await service.reap_once() == []  # starts its idle clock
    clock.now += 60
    assert await service.reap_once() == []
    clock.now += 31
    assert await service.reap_once() == [sid]
    row = await service.get_row(sid)
    assert row["state"] == "ended" and row["end_reason"] == "idle"
    events = await service.log.read(session_stream(sid))
    assert [e.type for e in events] == ["service-event", "session-end"]


async def test_subscribers_and_ingest_keep_a_session_alive(
        sessions: tuple[SessionService, Clock]) -> None:
    service, clock = sessions
    sid = (await service.create(SessionOptions()))["session_id"]
    service.subscriber_enter(sid)
    clock.now += 1000
    assert await service.reap_once() == []
    service.subscriber_leave(sid)  # idle from now
    clock.now += 89
    assert await service.reap_once() == []
    sock = Socket()
    live = await service.attach_ingest(sid, sock)
    clock.now += 1000
    assert await service.reap_once() == []
    await service.detach_ingest(live, sock)
    clock.now += 91
    assert await service.reap_once() == [sid]


async def test_ending_closes_the_ingest_socket_and_keeps_history(
        sessions: tuple[SessionService, Clock]) -> None:
    service, _clock = sessions
    sid = (await service.create(SessionOptions()))["session_id"]
    sock = Socket()
    live = await service.attach_ingest(sid, sock)
    await service.push(live, pcm(np.zeros(16000 * 2)))
    view = await service.end(sid)
    assert view["state"] == "ended" and view["samples"] == 32000
    assert sock.closed is not None and sock.closed[0] == 4000
    assert sid not in service.live
    assert await service.history(sid) == []
    body, media = await service.export(sid, "csv")
    assert media == "text/csv" and body.startswith("seq,timestamp,label")


async def test_try_push_pushes_only_what_needs_no_wait(
        sessions: tuple[SessionService, Clock]) -> None:
    """``try_push`` is ``push`` when the window queue has room for every window the frame
    completes, and otherwise changes nothing (the ingest fast path then falls back)."""
    service, _clock = sessions
    sid = (await service.create(SessionOptions(window_ms=250)))["session_id"]  # 4000 samples
    live = service.live[sid]
    assert live.consumer is not None
    live.consumer.cancel()  # nothing takes windows from the queue
    await asyncio.gather(live.consumer, return_exceptions=True)
    frame = b"\x00\x00" * 1000
    for _ in range(35):  # 8 windows fill the queue; frames completing none still go in
        assert service.try_push(live, frame)
    assert live.queue.full() and live.buffer.total == 35000
    assert not service.try_push(live, frame)  # it completes a ninth window: would wait
    assert live.buffer.total == 35000 and live.queue.full()

    def take() -> None:
        live.queue.get_nowait()
        live.queue.task_done()

    take()
    assert service.try_push(live, frame) and live.queue.full()
    take()
    two = b"\x00\x00" * 8000  # completes two windows, with room for one
    assert not service.try_push(live, two) and live.buffer.total == 36000
    take()
    assert service.try_push(live, two) and live.buffer.total == 44000
    assert [w.end_sample for w in list(live.queue._queue)[-2:]] == [40000, 44000]
    assert live.dropped_windows == 0


async def test_lease_renewal_records_every_attached_session(tmp_path: Path) -> None:
    """Renewal goes to the store in small writes (the windows' events are not held up behind
    one large one); every attached session's lease and sample count are recorded."""
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await store.start()
    service = SessionService(store=store, log=StreamLog(store, MemoryBus()),
                             classifiers=lambda _id, _opts: Quiet(), idle_ttl_s=90.0,
                             max_sessions=200, lease_s=30.0)
    await service.start(reaper=False)
    try:
        attached = {}
        for k in range(120):
            sid = (await service.create(SessionOptions()))["session_id"]
            live = await service.attach_ingest(sid, Socket())
            await service.push(live, pcm(np.zeros(160 * (k + 1))))
            attached[sid] = 160 * (k + 1)
        idle = (await service.create(SessionOptions()))["session_id"]  # no ingest: no lease
        await service.keep_leases_once()
        for sid, samples in attached.items():
            row = await service.get_row(sid)
            assert row["samples"] == samples and row["lease_expires"] > 0
        assert (await service.get_row(idle))["samples"] == 0
    finally:
        await service.close()
        await store.close()
