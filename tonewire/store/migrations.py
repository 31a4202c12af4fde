"""Versioned schema migrations, run by every process at start (SQLite and PostgreSQL alike).

A small module rather than alembic: four tables in SQLAlchemy Core, changes that are plain
``ALTER TABLE ... ADD COLUMN``, and no wish for a second toolchain (env.py, revision files)
in a self-hosted server whose users never run migrations by hand. Revisit when a migration
needs data rewrites or downgrades.

- A fresh database gets the current schema in one ``create_all`` and the latest version.
- A database from before versioning (a data dir of tonewire 0.1) has the version-1 tables and
  no version table: it is stamped 1, then upgraded.
- Each step runs in the same transaction as the version bump. On PostgreSQL a transaction
  advisory lock (on SQLite, ``BEGIN IMMEDIATE``) makes concurrent starts take turns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from sqlalchemy import Column, Integer, MetaData, Table, inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from tonewire.store import schema

_version_meta = MetaData()
version_table = Table("tonewire_schema", _version_meta,
                      Column("version", Integer, nullable=False))

_ATTEMPTS: Final = 5
_LOCK_KEY: Final = 0x746F6E65  # "tone": the advisory lock all tonewire nodes agree on


def _v2_session_owner(conn: Connection) -> None:
    # Live sessions across nodes: which node owns a session's stream, and until when.
    conn.execute(text("ALTER TABLE sessions ADD COLUMN owner VARCHAR(32)"))
    conn.execute(text("ALTER TABLE sessions ADD COLUMN lease_expires FLOAT"))


MIGRATIONS: Final[tuple[tuple[int, Callable[[Connection], None]], ...]] = (
    (2, _v2_session_owner),
)
LATEST: Final = max((v for v, _ in MIGRATIONS), default=1)


def _upgrade(conn: Connection) -> int:
    """Bring the schema to :data:`LATEST`; returns the version found."""
    tables = set(inspect(conn).get_table_names())
    if "jobs" not in tables:  # a fresh database
        schema.metadata.create_all(conn)
        _version_meta.create_all(conn)
        conn.execute(version_table.insert().values(version=LATEST))
        return 0
    if version_table.name not in tables:  # tonewire 0.1: the first schema, unversioned
        _version_meta.create_all(conn)
        conn.execute(version_table.insert().values(version=1))
    found = int(conn.execute(select(version_table.c.version)).scalar_one())
    for version, step in MIGRATIONS:
        if version > found:
            step(conn)
            conn.execute(update(version_table).values(version=version))
    return found


async def migrate(engine: AsyncEngine) -> int:
    """Run the pending migrations; returns the version the database had."""
    for attempt in range(_ATTEMPTS):
        try:
            return await _migrate_once(engine)
        except OperationalError:
            # SQLite: another process switching the file to WAL can refuse us the lock
            # without waiting; it is done in a moment.
            if engine.dialect.name != "sqlite" or attempt == _ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


async def _migrate_once(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        elif conn.dialect.name == "sqlite":  # take the write lock before looking
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        return await conn.run_sync(_upgrade)
