"""The stream spine on a real SQLite file: append, replay, follow without gap or duplicate,
bounded subscribers, and the SSE wire encoder."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from tonewire.store.database import Store
from tonewire.streams.bus import MemoryBus, SubscriberOverflow
from tonewire.streams.event import StreamEvent
from tonewire.streams.log import StreamLog
from tonewire.transports.errors import ApiError
from tonewire.transports.sse import (
    encode_comment,
    encode_event,
    parse_last_event_id,
    payload,
    payload_json,
)
from tonewire.transports.upload import safe_filename


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[StreamLog]:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await store.start()
    try:
        yield StreamLog(store, MemoryBus())
    finally:
        await store.close()


async def test_seq_counts_from_one_and_survives_a_new_log(log: StreamLog) -> None:
    for i in range(3):
        ev = await log.append("job:a", "chunk", {"i": i})
        assert ev.seq == i + 1
    fresh = StreamLog(log.store, MemoryBus())  # a restarted process
    ev = await fresh.append("job:a", "chunk", {"i": 3})
    assert ev.seq == 4
    assert [e.data["i"] for e in await fresh.read("job:a")] == [0, 1, 2, 3]
    assert [e.seq for e in await fresh.read("job:a", after=2)] == [3, 4]


async def test_follow_replays_then_goes_live_without_gap_or_duplicate(log: StreamLog) -> None:
    for i in range(5):
        await log.append("s", "e", {"i": i})
    seen: list[int] = []
    ready = asyncio.Event()

    async def consume() -> None:
        async for ev in log.follow("s", after=2):
            assert ev is not None
            seen.append(ev.seq)
            if ev.seq == 5:
                ready.set()
            if ev.seq == 10:
                return

    task = asyncio.create_task(consume())
    await asyncio.wait_for(ready.wait(), 5)
    for i in range(5, 10):
        await log.append("s", "e", {"i": i})
    await asyncio.wait_for(task, 5)
    assert seen == [3, 4, 5, 6, 7, 8, 9, 10]


async def test_follow_fills_a_gap_the_bus_did_not_carry(log: StreamLog) -> None:
    await log.append("s", "e", {})
    got: list[int] = []
    live = asyncio.Event()

    async def consume() -> None:
        async for ev in log.follow("s"):
            assert ev is not None
            got.append(ev.seq)
            live.set()  # seq 1 came from the replay: the bus subscription exists now
            if ev.seq == 3:
                return

    task = asyncio.create_task(consume())
    await asyncio.wait_for(live.wait(), 5)
    # seq 2 is persisted but never published (as if another process wrote it).
    await log.store.append_events([StreamEvent(stream="s", seq=2, type="e", data={})])
    log.forget("s")
    await log.append("s", "e", {})
    await asyncio.wait_for(task, 5)
    assert got == [1, 2, 3]


async def test_follow_yields_heartbeats_when_idle(log: StreamLog) -> None:
    it = log.follow("quiet", heartbeat_s=0.01)
    assert await asyncio.wait_for(anext(it), 5) is None
    await it.aclose()


async def test_a_slow_subscriber_is_cut_off_and_can_resume(log: StreamLog) -> None:
    bus = log.bus
    assert isinstance(bus, MemoryBus)
    async with bus.subscribe("s", maxsize=4) as sub:
        for i in range(10):
            await log.append("s", "e", {"i": i})
        assert sub.overflowed
        with pytest.raises(SubscriberOverflow):
            await sub.get()
    # Nothing is lost: the log has every event for the resume.
    assert [e.seq for e in await log.read("s", after=0)] == list(range(1, 11))
    assert bus.subscriber_count("s") == 0


async def test_atomic_job_update_with_its_event(log: StreamLog) -> None:
    now = 1.0
    await log.store.insert_job({
        "id": "j", "status": "pending", "progress": 0, "message": "", "source_kind": "upload",
        "source_name": "x.wav", "input_path": None, "content_sha256": None, "cache_key": None,
        "options": "{}", "title": None, "duration": None, "created_at": now,
        "updated_at": now, "finished_at": None})
    await log.append("job:j", "progress", {"progress": 40},
                     job_update=("j", {"status": "analyzing", "progress": 40}))
    row = await log.store.get_job("j")
    assert row is not None and (row["status"], row["progress"]) == ("analyzing", 40)
    with pytest.raises(IntegrityError):  # a duplicate seq rolls back the job update too
        await log.store.append_events(
            [StreamEvent(stream="job:j", seq=1, type="progress", data={})],
            job_update=("j", {"progress": 99}))
    row = await log.store.get_job("j")
    assert row is not None and row["progress"] == 40


async def test_a_conflicting_write_fails_alone_in_its_group(log: StreamLog) -> None:
    store = log.store
    await store.append_events([StreamEvent(stream="s", seq=1, type="e", data={"v": "first"})])
    release = asyncio.Event()

    async def hold(_conn: object) -> None:  # keeps the writer busy while the group queues
        await release.wait()

    held = asyncio.create_task(store._write(hold))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    writes = [asyncio.create_task(store.append_events(
        [StreamEvent(stream=stream, seq=seq, type="e", data={"v": v})]))
        for stream, seq, v in (("s", 2, "second"), ("s", 1, "duplicate"), ("t", 1, "other"))]
    await asyncio.sleep(0.05)
    release.set()  # the three writes now go to the database as one group
    results = await asyncio.gather(held, *writes, return_exceptions=True)
    assert results[0] is None and results[1] is None and results[3] is None
    assert isinstance(results[2], IntegrityError)
    assert [e.data["v"] for e in await log.read("s")] == ["first", "second"]
    assert [e.data["v"] for e in await log.read("t")] == ["other"]


# -- SSE wire format ---------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    {}, {"label": "calm", "confidence": 0.5}, {"nested": {"a": [1, 2.5, None]}, "x": True},
    {"subtext": "caf\u00e9 \u2014 \U0001f600", "q": "\"quoted\"}"}, {"seq": 99, "other": 1}])
def test_the_wire_payload_is_spliced_exactly(data: dict[str, object]) -> None:
    for ev in (StreamEvent(stream="s", seq=7, type="e", data=data),
               StreamEvent.stored(stream="s", seq=7, type="e", ts=1.0,
                                  data_json=json.dumps(data, separators=(",", ":")))):
        assert payload_json(ev) == json.dumps(payload(ev), separators=(",", ":"))
        assert json.loads(payload_json(ev))["seq"] == 7


def test_sse_frames() -> None:
    assert encode_event(id=3, event="chunk", data='{"a":1}') == (
        b'id: 3\nevent: chunk\ndata: {"a":1}\n\n')
    assert encode_event(data="one\ntwo") == b"data: one\ndata: two\n\n"
    assert encode_event(data="") == b"data: \n\n"
    assert encode_comment("ping") == b": ping\n\n"
    with pytest.raises(ValueError):
        encode_event(data="x", event="bad\nname")


@pytest.mark.parametrize(("value", "after"), [(None, 0), ("", 0), ("0", 0), (" 12 ", 12)])
def test_last_event_id_accepts_event_ids(value: str | None, after: int) -> None:
    assert parse_last_event_id(value) == after


@pytest.mark.parametrize("value", ["-1", "abc", "1e3", "1.5", "9" * 40, "0x10", "١٢"])
def test_last_event_id_refuses_anything_else(value: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_last_event_id(value)
    assert err.value.status == 400 and err.value.code == "INVALID_LAST_EVENT_ID"


@pytest.mark.parametrize(("raw", "safe"), [
    ("song.mp3", "song.mp3"), ("../../etc/passwd", "passwd"), ("C:\\music\\a.wav", "a.wav"),
    ("..", "upload"), ("", "upload"), (".hidden.wav", "hidden.wav"), ("a\x00b\n.wav", "ab.wav"),
])
def test_upload_filenames_lose_their_directories(raw: str, safe: str) -> None:
    assert safe_filename(raw) == safe
