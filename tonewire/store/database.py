"""The store: jobs, stream events and analyses behind one async API.

SQLite (via aiosqlite) is the default, in WAL mode so readers never block the writer and a
committed event survives a killed process.

Writes go through one writer task with group commit: every write waiting when the previous
commit finished goes into the next transaction, each in its own savepoint (one failing write
does not undo the others). SQLite has a single writer anyway; queueing writes here instead of
in SQLite's busy handler (which sleeps in steps of up to 100 ms) keeps latency low under load,
and one commit for many events keeps throughput high.

A group of nothing but event inserts (live windows, job progress: almost every group) skips
the savepoints: its rows go in as one INSERT in one transaction, run as one synchronous call
(:func:`_insert_rows`), so the event loop pays for one greenlet and the driver's BEGIN, INSERT
and COMMIT, not for a greenlet and an awaited round trip per statement (measured: a third of
the loop's CPU per group of six). If that transaction fails, nothing of it stays and the
group is written again the careful way, each write in its own savepoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, event, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tonewire.store import schema
from tonewire.store.migrations import migrate
from tonewire.streams.event import StreamEvent


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'tonewire.db'}"


def engine_url(url: str) -> str:
    """The SQLAlchemy URL with its async driver: ``postgresql://`` means asyncpg."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url.removeprefix(plain)
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=5000")  # first: switching to WAL may wait for a lock
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes, fast
    cur.close()


WriteOp = Callable[[AsyncConnection], Awaitable[None]]


class _InsertEvents:
    """A write that only inserts event rows (the writer may group it with others)."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    async def __call__(self, conn: AsyncConnection) -> None:
        await conn.execute(insert(schema.events), self.rows)


def _insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert event rows in a transaction of their own (sync: run through ``run_sync``)."""
    with conn.begin():
        conn.execute(insert(schema.events), rows)


_MAX_GROUP = 512


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self._writes: asyncio.Queue[tuple[WriteOp, asyncio.Future[None]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        # pre-ping: a networked database may have restarted since a connection was pooled.
        # PostgreSQL commits without waiting for the WAL flush: the durability of the SQLite
        # setting (synchronous=NORMAL): a killed tonewire process loses nothing committed; a
        # crashed database server may lose its last fraction of a second, never consistency.
        # Events are published only after their commit, so the flush would sit in every
        # event's delivery.
        pg = engine_url(url).startswith("postgresql+asyncpg")
        self.engine: AsyncEngine = create_async_engine(
            engine_url(url), pool_pre_ping=not url.startswith("sqlite"),
            connect_args={"server_settings": {"synchronous_commit": "off"}} if pg else {})
        if url.startswith("sqlite"):
            sync: Engine = self.engine.sync_engine
            event.listen(sync, "connect", _sqlite_pragmas)

    async def start(self) -> None:
        await migrate(self.engine)
        self._writer = asyncio.create_task(self._write_forever(), name="store-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self.engine.dispose()

    # -- the writer --------------------------------------------------------------------------
    async def _write(self, op: WriteOp) -> None:
        if self._writer is None or self._writer.done():
            raise RuntimeError("the store is not started")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writes.put_nowait((op, fut))
        await fut

    async def _write_forever(self) -> None:
        # One connection for the writer's life: checking one out of the pool and resetting it
        # on return (a ROLLBACK) were two of the driver round trips, each a turn of a busy
        # event loop, that every event waited for before it was published.
        conn: AsyncConnection | None = None
        try:
            while True:
                batch = [await self._writes.get()]
                while not self._writes.empty() and len(batch) < _MAX_GROUP:
                    batch.append(self._writes.get_nowait())
                outcomes: list[BaseException | None] = []
                try:
                    if conn is None:
                        conn = await self.engine.connect()
                    if await self._insert_events_only(conn, batch):
                        outcomes = [None] * len(batch)
                    else:
                        async with conn.begin():
                            if len(batch) == 1:
                                # Alone: no savepoint; if it fails the transaction rolls back.
                                await batch[0][0](conn)
                                outcomes.append(None)
                            else:
                                await self._write_group(conn, batch, outcomes)
                except Exception as exc:  # the commit itself failed: every write failed
                    outcomes = [exc] * len(batch)
                    if conn is not None and conn.invalidated:
                        conn = None  # lost (a database restart): connect afresh next time
                for (_op, fut), err in zip(batch, outcomes, strict=True):
                    if fut.done():
                        continue
                    if err is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(err)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

    @staticmethod
    async def _insert_events_only(conn: AsyncConnection,
                                  batch: list[tuple[WriteOp, asyncio.Future[None]]]) -> bool:
        """A group of event inserts only, committed as one INSERT in one synchronous call;
        False (nothing written) if the group holds other writes or one of them conflicts."""
        inserts = [op for op, _fut in batch if isinstance(op, _InsertEvents)]
        if len(inserts) != len(batch):
            return False
        rows = [row for op in inserts for row in op.rows]
        try:
            await conn.run_sync(_insert_rows, rows)
        except IntegrityError:  # a conflicting seq: the careful path finds whose
            return False
        return True  # anything else (a lost connection) fails the group, as the careful path

    async def _write_group(self, conn: AsyncConnection,
                           batch: list[tuple[WriteOp, asyncio.Future[None]]],
                           outcomes: list[BaseException | None]) -> None:
        i = one_by_one = 0
        while i < len(batch):
            # A run of event-only writes goes in as one INSERT, in queue order with the
            # other writes (a delete must not pass an insert); if that fails, the run goes
            # one write at a time, each in its own savepoint.
            j = i
            while j < len(batch) and isinstance(batch[j][0], _InsertEvents):
                j += 1
            if i >= one_by_one and j - i > 1:
                if await self._insert_events_together(conn, [op for op, _fut in batch[i:j]]):
                    outcomes.extend([None] * (j - i))
                    i = j
                    continue
                one_by_one = j
            op = batch[i][0]
            try:
                async with conn.begin_nested():
                    await op(conn)
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
            i += 1

    @staticmethod
    async def _insert_events_together(conn: AsyncConnection, ops: list[WriteOp]) -> bool:
        """Event-only writes (a live window's, a job's chunk) as one multi-row INSERT: each
        statement is a round trip to the driver's thread (a turn of the event loop), and a
        write in its own savepoint costs three. If the shared INSERT fails, nothing of it
        stays and the caller runs each write in its own savepoint as any other."""
        rows = [row for op in ops if isinstance(op, _InsertEvents) for row in op.rows]
        try:
            async with conn.begin_nested():
                await conn.execute(insert(schema.events), rows)
        except Exception:
            return False
        return True

    # -- events ----------------------------------------------------------------------------
    async def append_events(self, events: Sequence[StreamEvent], *,
                            job_update: tuple[str, dict[str, Any]] | None = None,
                            session_update: tuple[str, dict[str, Any]] | None = None,
                            analysis: tuple[str, str] | None = None) -> None:
        """Insert events, and optionally update a job or session and store an analysis,
        atomically: a state and the events that announce it are never out of step."""
        rows = [{"stream": ev.stream, "seq": ev.seq, "type": ev.type, "data": ev.data_json(),
                 "ts": ev.ts} for ev in events]
        if rows and job_update is None and session_update is None and analysis is None:
            await self._write(_InsertEvents(rows))
            return

        async def op(conn: AsyncConnection) -> None:
            if rows:
                await conn.execute(insert(schema.events), rows)
            if job_update is not None:
                job_id, values = job_update
                await conn.execute(update(schema.jobs).where(schema.jobs.c.id == job_id)
                                   .values(**values, updated_at=time.time()))
            if session_update is not None:
                session_id, values = session_update
                await conn.execute(update(schema.sessions).where(
                    schema.sessions.c.id == session_id).values(**values,
                                                               updated_at=time.time()))
            if analysis is not None:
                job_id, text = analysis
                await conn.execute(delete(schema.analyses).where(
                    schema.analyses.c.job_id == job_id))
                await conn.execute(insert(schema.analyses).values(
                    job_id=job_id, data=text, created_at=time.time()))
        await self._write(op)

    async def read_events(self, stream: str, *, after: int = 0, limit: int | None = None,
                          types: Sequence[str] | None = None) -> list[StreamEvent]:
        t = schema.events
        q = select(t.c.seq, t.c.type, t.c.data, t.c.ts).where(
            t.c.stream == stream, t.c.seq > after).order_by(t.c.seq)
        if types:
            q = q.where(t.c.type.in_(types))
        if limit is not None:
            q = q.limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [StreamEvent.stored(stream=stream, seq=r.seq, type=r.type, data_json=r.data,
                                   ts=r.ts) for r in rows]

    async def last_seq(self, stream: str) -> int:
        t = schema.events
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(func.max(t.c.seq)).where(
                t.c.stream == stream))).scalar()
        return int(value or 0)

    async def delete_stream(self, stream: str) -> None:
        async def op(conn: AsyncConnection) -> None:
            await conn.execute(delete(schema.events).where(schema.events.c.stream == stream))
        await self._write(op)

    # -- jobs ------------------------------------------------------------------------------
    async def insert_job(self, row: dict[str, Any]) -> None:
        async def op(conn: AsyncConnection) -> None:
            await conn.execute(insert(schema.jobs).values(**row))
        await self._write(op)

    async def update_job(self, job_id: str, **values: Any) -> None:
        values["updated_at"] = time.time()
        async def op(conn: AsyncConnection) -> None:
            await conn.execute(update(schema.jobs).where(schema.jobs.c.id == job_id)
                               .values(**values))
        await self._write(op)

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(schema.jobs).where(
                schema.jobs.c.id == job_id))).mappings().first()
        return dict(row) if row else None

    async def find_job_by_cache_key(self, cache_key: str, *, status: str
                                    ) -> dict[str, Any] | None:
        t = schema.jobs
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t).where(t.c.cache_key == cache_key,
                                                      t.c.status == status)
                                      .order_by(t.c.created_at.desc()).limit(1))
                   ).mappings().first()
        return dict(row) if row else None

    async def list_jobs(self, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        t = schema.jobs
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t).order_by(t.c.created_at.desc(), t.c.id)
                                       .limit(limit).offset(offset))).mappings().all()
            total = (await conn.execute(select(func.count()).select_from(t))).scalar() or 0
        return [dict(r) for r in rows], int(total)

    async def jobs_with_status(self, statuses: Sequence[str]) -> list[dict[str, Any]]:
        t = schema.jobs
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t).where(t.c.status.in_(statuses))
                                       .order_by(t.c.created_at))).mappings().all()
        return [dict(r) for r in rows]

    async def count_jobs_by_status(self) -> dict[str, int]:
        t = schema.jobs
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.c.status, func.count())
                                       .group_by(t.c.status))).all()
        return {str(status): int(n) for status, n in rows}

    async def delete_job(self, job_id: str, stream: str) -> None:
        async def op(conn: AsyncConnection) -> None:
            await conn.execute(delete(schema.events).where(schema.events.c.stream == stream))
            await conn.execute(delete(schema.analyses).where(
                schema.analyses.c.job_id == job_id))
            await conn.execute(delete(schema.jobs).where(schema.jobs.c.id == job_id))
        await self._write(op)

    # -- sessions --------------------------------------------------------------------------
    async def insert_session(self, row: dict[str, Any]) -> None:
        async def op(conn: AsyncConnection) -> None:
            await conn.execute(insert(schema.sessions).values(**row))
        await self._write(op)

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(schema.sessions).where(
                schema.sessions.c.id == session_id))).mappings().first()
        return dict(row) if row else None

    async def update_session(self, session_id: str, **values: Any) -> None:
        values["updated_at"] = time.time()
        async def op(conn: AsyncConnection) -> None:
            await conn.execute(update(schema.sessions).where(
                schema.sessions.c.id == session_id).values(**values))
        await self._write(op)

    async def claim_session(self, session_id: str, node: str, *, now: float,
                            lease_s: float) -> tuple[dict[str, Any] | None, str | None]:
        """Make ``node`` the owner of an active session if nobody else holds a live lease on
        it (compare-and-set on the owner and lease it read). Returns ``(row, previous owner)``
        on success, ``(None, None)`` otherwise (unknown, ended, or held elsewhere)."""
        row = await self.get_session(session_id)
        if row is None or row["state"] != "active":
            return None, None
        owner, lease = row.get("owner"), row.get("lease_expires")
        if owner not in (None, node) and lease is not None and lease >= now:
            return None, None
        t = schema.sessions
        won: list[bool] = []

        async def op(conn: AsyncConnection) -> None:
            same = [t.c.owner.is_(None) if owner is None else t.c.owner == owner]
            if owner != node:  # between nodes the lease read must still be the lease
                same.append(t.c.lease_expires.is_(None) if lease is None
                            else t.c.lease_expires == lease)
            res = await conn.execute(
                update(t).where(t.c.id == session_id, t.c.state == "active", *same)
                .values(owner=node, lease_expires=now + lease_s, updated_at=time.time()))
            won.append(res.rowcount == 1)
        await self._write(op)
        if not won[0]:
            return None, None
        row.update(owner=node, lease_expires=now + lease_s)
        return row, owner

    async def renew_sessions(self, node: str, samples: dict[str, int], *, until: float
                             ) -> None:
        """Extend ``node``'s leases on these sessions and record their sample counts (only
        where it still is the owner)."""
        t = schema.sessions

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(
                update(t).where(t.c.id == bindparam("sid"), t.c.owner == node)
                .values(samples=bindparam("n"), lease_expires=until),
                [{"sid": sid, "n": n} for sid, n in samples.items()])
        await self._write(op)

    async def touch_sessions(self, ids: Sequence[str]) -> None:
        """Mark sessions as in use now (``updated_at``) without taking their lease."""
        t = schema.sessions

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(update(t).where(t.c.id.in_(list(ids)))
                               .values(updated_at=time.time()))
        await self._write(op)

    async def session_states(self, ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """``{id: (state, owner)}`` for these sessions."""
        t = schema.sessions
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.c.id, t.c.state, t.c.owner).where(
                t.c.id.in_(list(ids))))).all()
        return {r.id: (r.state, r.owner) for r in rows}

    async def lapsed_sessions(self, *, before: float) -> list[dict[str, Any]]:
        """Active sessions whose owner's lease ran out before ``before`` (or never had one)."""
        t = schema.sessions
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t).where(
                t.c.state == "active",
                or_(t.c.lease_expires.is_(None), t.c.lease_expires < before)))).mappings().all()
        return [dict(r) for r in rows]

    async def sessions_with_state(self, state: str) -> list[dict[str, Any]]:
        t = schema.sessions
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t).where(t.c.state == state))).mappings().all()
        return [dict(r) for r in rows]

    async def read_latest_event(self, stream: str, type: str) -> StreamEvent | None:
        t = schema.events
        async with self.engine.connect() as conn:
            r = (await conn.execute(select(t.c.seq, t.c.type, t.c.data, t.c.ts).where(
                t.c.stream == stream, t.c.type == type).order_by(t.c.seq.desc()).limit(1))
                 ).first()
        if r is None:
            return None
        return StreamEvent.stored(stream=stream, seq=r.seq, type=r.type, data_json=r.data,
                                  ts=r.ts)

    # -- analyses --------------------------------------------------------------------------
    async def get_analysis_json(self, job_id: str) -> str | None:
        async with self.engine.connect() as conn:
            value = (await conn.execute(select(schema.analyses.c.data).where(
                schema.analyses.c.job_id == job_id))).scalar()
        return str(value) if value is not None else None
