"""Backend contract: the same test bodies against memory+SQLite and Redis+PostgreSQL.

A "node" is a store and a bus of its own, as a separate process would have. With the memory
bus the nodes share one bus (it is in-process by nature) and one SQLite file; with Redis and
PostgreSQL each node has its own connections, so everything crosses the network as it would
between machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from backends import scale_backend
from sqlalchemy.exc import IntegrityError

from tonewire.store.database import Store
from tonewire.store.migrations import LATEST
from tonewire.streams.bus import Bus, MemoryBus, SubscriberOverflow, bus_from_url
from tonewire.streams.event import StreamEvent
from tonewire.streams.log import StreamConflict, StreamLog

NodeFactory = Callable[[], Awaitable[StreamLog]]


@pytest.fixture(params=["memory+sqlite", "redis+postgresql"])
async def node(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NodeFactory]:
    """``await node()`` starts another node on the test's backend."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "memory+sqlite":
            shared = MemoryBus()
            db_url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"

            def new_bus() -> Bus:
                return shared
        else:
            backend = await stack.enter_async_context(scale_backend())
            db_url = backend.database_url

            def new_bus() -> Bus:
                return bus_from_url(backend.bus_url, namespace=backend.namespace)

        async def make() -> StreamLog:
            store, bus = Store(db_url), new_bus()
            await store.start()
            stack.push_async_callback(store.close)
            await bus.start()
            stack.push_async_callback(bus.close)
            return StreamLog(store, bus)

        yield make


async def _collect(log: StreamLog, stream: str, *, after: int = 0, until: int,
                   started: asyncio.Event | None = None) -> list[StreamEvent]:
    got: list[StreamEvent] = []
    async for ev in log.follow(stream, after=after, heartbeat_s=0.05):
        if started is not None:
            started.set()  # the first heartbeat or event: the subscription exists
        if ev is None:
            continue
        got.append(ev)
        if ev.seq >= until:
            return got
    return got


async def test_seq_counts_from_one_and_continues_on_another_node(node: NodeFactory) -> None:
    a, b = await node(), await node()
    for i in range(3):
        assert (await a.append("job:x", "chunk", {"i": i})).seq == i + 1
    assert await b.take("job:x") == 3  # b takes the stream over: it continues, never reuses
    assert (await b.append("job:x", "chunk", {"i": 3})).seq == 4
    assert [e.data["i"] for e in await a.read("job:x")] == [0, 1, 2, 3]
    assert [e.seq for e in await b.read("job:x", after=2)] == [3, 4]


async def test_a_stale_owner_cannot_write_a_seq_twice(node: NodeFactory) -> None:
    a, b = await node(), await node()
    await a.append("s", "e", {"by": "a"})  # a caches its counter: next is 2
    await b.take("s")
    await b.append("s", "e", {"by": "b"})  # seq 2
    with pytest.raises(StreamConflict):
        await a.append("s", "e", {"by": "a, stale"})
    assert [(e.seq, e.data["by"]) for e in await b.read("s")] == [(1, "a"), (2, "b")]
    assert (await a.append("s", "e", {"by": "a again"})).seq == 3  # re-read after a conflict


async def test_follow_on_another_node_replays_then_goes_live(node: NodeFactory) -> None:
    producer, consumer = await node(), await node()
    for i in range(5):
        await producer.append("s", "e", {"i": i})
    started = asyncio.Event()
    task = asyncio.create_task(_collect(consumer, "s", after=2, until=40, started=started))
    await asyncio.wait_for(started.wait(), 10)
    for i in range(5, 40):
        await producer.append("s", "e", {"i": i})
    got = await asyncio.wait_for(task, 10)
    assert [e.seq for e in got] == list(range(3, 41))
    assert [e.data["i"] for e in got] == list(range(2, 40))


async def test_every_subscriber_gets_each_event_once(node: NodeFactory) -> None:
    a, b = await node(), await node()
    starts = [asyncio.Event() for _ in range(4)]
    tasks = [asyncio.create_task(_collect(log, "s", until=30, started=ev))
             for log, ev in zip((a, a, b, b), starts, strict=True)]
    for ev in starts:
        await asyncio.wait_for(ev.wait(), 10)
    for i in range(15):
        await a.append("s", "e", {"i": i})
    await b.take("s")  # ownership moves to b halfway (a failover)
    for i in range(15, 30):
        await b.append("s", "e", {"i": i})
    results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    for got in results:
        assert [e.seq for e in got] == list(range(1, 31))


async def test_follow_fills_a_gap_the_bus_did_not_carry(node: NodeFactory) -> None:
    producer, consumer = await node(), await node()
    await producer.append("s", "e", {})
    started = asyncio.Event()
    task = asyncio.create_task(_collect(consumer, "s", until=3, started=started))
    await asyncio.wait_for(started.wait(), 10)
    # seq 2 is persisted but never published (its writer died between the two).
    await producer.store.append_events([StreamEvent(stream="s", seq=2, type="e", data={})])
    await producer.take("s")
    await producer.append("s", "e", {})
    assert [e.seq for e in await asyncio.wait_for(task, 10)] == [1, 2, 3]


async def test_the_last_event_reaches_a_subscriber_that_joined_just_before(
        node: NodeFactory) -> None:
    """``subscribe`` returns only once the bus carries the stream: the end is never missed."""
    producer, consumer = await node(), await node()
    for round_ in range(20):
        stream = f"job:{round_}"
        await producer.append(stream, "progress", {})
        async with consumer.bus.subscribe(stream, maxsize=16) as sub:
            await producer.append(stream, "complete", {})
            while True:  # seq 1 may still be on its way: the subscription predates it
                ev = await sub.get(10)
                assert ev is not None, "the last event never arrived"
                if ev.seq == 2:
                    break


async def test_a_slow_subscriber_is_cut_off_and_resumes_from_the_log(node: NodeFactory) -> None:
    producer, consumer = await node(), await node()
    async with consumer.bus.subscribe("s", maxsize=4) as sub:
        for i in range(12):
            await producer.append("s", "e", {"i": i})
        with pytest.raises(SubscriberOverflow):
            for _ in range(12):  # across nodes the events arrive a moment later
                await asyncio.wait_for(sub.get(), 10)
    assert [e.seq for e in await consumer.read("s")] == list(range(1, 13))


async def test_heartbeats_when_idle(node: NodeFactory) -> None:
    log = await node()
    it = log.follow("quiet", heartbeat_s=0.01)
    assert await asyncio.wait_for(anext(it), 10) is None
    await it.aclose()


async def test_a_job_update_commits_with_its_event(node: NodeFactory) -> None:
    log = await node()
    await log.store.insert_job({
        "id": "j", "status": "pending", "progress": 0, "message": "", "source_kind": "upload",
        "source_name": "x.wav", "input_path": None, "content_sha256": None, "cache_key": None,
        "options": "{}", "title": None, "duration": None, "created_at": 1.0,
        "updated_at": 1.0, "finished_at": None})
    await log.append("job:j", "progress", {"progress": 40},
                     job_update=("j", {"status": "analyzing", "progress": 40}))
    with pytest.raises(IntegrityError):  # a duplicate seq rolls back the job update too
        await log.store.append_events([StreamEvent(stream="job:j", seq=1, type="p", data={})],
                                      job_update=("j", {"progress": 99}))
    row = await log.store.get_job("j")
    assert row is not None and (row["status"], row["progress"]) == ("analyzing", 40)


# -- migrations --------------------------------------------------------------------------------

_V1_SESSIONS = """CREATE TABLE sessions (id VARCHAR(64) PRIMARY KEY, state VARCHAR(16) NOT NULL,
    options TEXT NOT NULL, samples BIGINT NOT NULL, created_at FLOAT NOT NULL,
    updated_at FLOAT NOT NULL, ended_at FLOAT, end_reason VARCHAR(32),
    dropped_windows BIGINT NOT NULL)"""


def test_a_data_dir_from_before_versioning_is_upgraded(tmp_path: Path) -> None:
    """tonewire 0.1's SQLite file (no version table, sessions without owner) keeps its data."""
    path = tmp_path / "tonewire.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (id VARCHAR(64) PRIMARY KEY, status VARCHAR(16))")
        db.execute("CREATE TABLE events (stream VARCHAR(96), seq BIGINT, type VARCHAR(32), "
                   "data TEXT, ts FLOAT, PRIMARY KEY (stream, seq))")
        db.execute("CREATE TABLE analyses (job_id VARCHAR(64) PRIMARY KEY, data TEXT, "
                   "created_at FLOAT)")
        db.execute(_V1_SESSIONS)
        db.execute("INSERT INTO sessions VALUES ('s1', 'active', '{}', 4800, 1, 1, NULL, "
                   "NULL, 0)")
        db.execute("INSERT INTO events VALUES ('session:s1', 1, 'tone-event', '{}', 1)")

    async def upgrade() -> None:
        store = Store(f"sqlite+aiosqlite:///{path}")
        await store.start()
        try:
            row = await store.get_session("s1")
            assert row is not None and row["samples"] == 4800 and row["owner"] is None
            assert await store.last_seq("session:s1") == 1
        finally:
            await store.close()
        again = Store(f"sqlite+aiosqlite:///{path}")  # a second start is a no-op
        await again.start()
        await again.close()

    asyncio.run(upgrade())
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM tonewire_schema").fetchall() == [(LATEST,)]


async def test_nodes_starting_together_migrate_once(node: NodeFactory) -> None:
    logs = await asyncio.gather(*(node() for _ in range(3)))
    await logs[0].append("s", "e", {})
    assert await logs[2].store.last_seq("s") == 1


# -- the Redis bus on its own --------------------------------------------------------------------

async def test_a_bus_that_loses_redis_cuts_off_its_subscribers(tmp_path: Path) -> None:
    """Pub/sub drops what it cannot deliver: a node whose connection breaks tells every local
    subscriber to resume from the log, then carries on once reconnected."""
    async with scale_backend() as be, contextlib.AsyncExitStack() as stack:
        from redis.asyncio import Redis  # here: the backend skips first without redis

        from tonewire.streams.redis_bus import RedisBus

        nodes = []
        for _ in range(2):
            bus = bus_from_url(be.bus_url, namespace=be.namespace)
            await bus.start()
            stack.push_async_callback(bus.close)
            nodes.append(bus)
        listener, talker = nodes
        admin = Redis.from_url(be.bus_url)
        stack.push_async_callback(admin.aclose)
        assert isinstance(listener, RedisBus)
        node_name = f"tonewire-bus-{be.namespace}-{listener.node}"
        async with listener.subscribe("s") as sub:
            await talker.publish(StreamEvent(stream="s", seq=1, type="e", data={}))
            assert (await asyncio.wait_for(sub.get(), 10)) is not None
            killed = 0
            for client in await admin.client_list():
                if client["name"] == node_name and int(client.get("sub", 0)) > 0:
                    await admin.client_kill_filter(_id=client["id"])
                    killed += 1
            assert killed == 1
            with pytest.raises(SubscriberOverflow):
                await asyncio.wait_for(sub.get(), 10)
        async with listener.subscribe("s") as again:  # reconnected: live events flow again
            for seq in range(2, 50):
                await talker.publish(StreamEvent(stream="s", seq=seq, type="e", data={}))
                got = await asyncio.wait_for(again.get(0.2), 10)
                if got is not None:
                    assert got.seq == seq
                    break
            else:
                raise AssertionError("no event after the reconnection")


# -- session leases ------------------------------------------------------------------------------

async def test_a_session_lease_is_held_by_one_node_at_a_time(node: NodeFactory) -> None:
    a, b = await node(), await node()
    now = 1000.0
    await a.store.insert_session({
        "id": "s1", "state": "active", "options": "{}", "samples": 0, "created_at": now,
        "updated_at": now, "ended_at": None, "end_reason": None, "owner": "A",
        "lease_expires": now + 10})
    assert await b.store.claim_session("s1", "B", now=now + 1, lease_s=10) == (None, None)
    row, previous = await a.store.claim_session("s1", "A", now=now + 1, lease_s=10)
    assert row is not None and previous == "A"
    await a.store.renew_sessions("A", {"s1": 4800}, until=now + 20)
    assert await b.store.claim_session("s1", "B", now=now + 15, lease_s=10) == (None, None)
    # A goes silent: once its lease has run out, B takes over and sees A's sample count.
    row, previous = await b.store.claim_session("s1", "B", now=now + 21, lease_s=10)
    assert row is not None and previous == "A" and row["samples"] == 4800
    await a.store.renew_sessions("A", {"s1": 9999}, until=now + 99)  # A is no owner now
    assert await a.store.session_states(["s1", "nope"]) == {"s1": ("active", "B")}
    assert (await a.store.get_session("s1") or {})["samples"] == 4800
    assert [r["id"] for r in await a.store.lapsed_sessions(before=now + 32)] == ["s1"]
    assert await a.store.lapsed_sessions(before=now + 30) == []
    # Two nodes claiming a lapsed session at once: exactly one wins.
    results = await asyncio.gather(a.store.claim_session("s1", "A", now=now + 40, lease_s=10),
                                   b.store.claim_session("s1", "C", now=now + 40, lease_s=10))
    assert sum(r[0] is not None for r in results) == 1


async def test_a_follower_rides_out_a_lost_redis_connection(tmp_path: Path) -> None:
    """``follow`` resubscribes in place when its node's bus connection breaks, reading what
    the bus dropped from the log: the follower sees every event once, and no error."""
    async with scale_backend() as be, contextlib.AsyncExitStack() as stack:
        from redis.asyncio import Redis

        from tonewire.streams.redis_bus import RedisBus

        logs = []
        for _ in range(2):
            store = Store(be.database_url)
            await store.start()
            stack.push_async_callback(store.close)
            bus = bus_from_url(be.bus_url, namespace=be.namespace)
            await bus.start()
            stack.push_async_callback(bus.close)
            logs.append(StreamLog(store, bus))
        producer, consumer = logs
        admin = Redis.from_url(be.bus_url)
        stack.push_async_callback(admin.aclose)
        assert isinstance(consumer.bus, RedisBus)
        name = f"tonewire-bus-{be.namespace}-{consumer.bus.node}"
        started = asyncio.Event()
        task = asyncio.create_task(_collect(consumer, "s", until=20, started=started))
        await asyncio.wait_for(started.wait(), 10)
        for i in range(10):
            await producer.append("s", "e", {"i": i})
        for client in await admin.client_list():
            if client["name"] == name and int(client.get("sub", 0)) > 0:
                await admin.client_kill_filter(_id=client["id"])
        for i in range(10, 20):
            await producer.append("s", "e", {"i": i})
        assert [e.seq for e in await asyncio.wait_for(task, 20)] == list(range(1, 21))
