"""The scale-out engines for tests: a real Redis and a real PostgreSQL on loopback.

Each test gets its own PostgreSQL database (created from the server's template, dropped with
``FORCE`` afterwards) and its own Redis namespace (its keys deleted afterwards), so concurrent
runs never collide. Without the services the tests that need them are skipped with the reason;
with ``TONEWIRE_TEST_REQUIRE_SERVICES=1`` (set by ``.ci/run``) they fail instead.

``TONEWIRE_TEST_REDIS_URL`` (``redis://127.0.0.1:6379/0``) and ``TONEWIRE_TEST_PG_URL``
(``postgresql://postgres@127.0.0.1:5432/postgres``, an admin connection) point elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

REDIS_URL = os.environ.get("TONEWIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN_URL = os.environ.get("TONEWIRE_TEST_PG_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE = os.environ.get("TONEWIRE_TEST_REQUIRE_SERVICES") == "1"


def _unavailable(what: str, exc: BaseException) -> None:
    reason = f"{what} is not reachable ({type(exc).__name__}: {exc}); start it, or see README"
    if REQUIRE:
        pytest.fail(f"TONEWIRE_TEST_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@contextlib.asynccontextmanager
async def redis_namespace() -> AsyncIterator[str]:
    """A fresh Redis namespace; every key under it is deleted afterwards."""
    try:
        from redis.asyncio import Redis
    except ImportError as exc:
        _unavailable("the redis package (pip install -e '.[scale]')", exc)
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        _unavailable(f"Redis at {REDIS_URL}", exc)
    ns = f"twtest-{secrets.token_hex(6)}"
    try:
        yield ns
    finally:
        keys = [k async for k in client.scan_iter(match=f"{ns}*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database; its URL (``postgresql://``). Dropped afterwards."""
    try:
        import asyncpg
    except ImportError as exc:
        _unavailable("the asyncpg package (pip install -e '.[scale]')", exc)
    admin_dsn = PG_ADMIN_URL
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=5)
    except Exception as exc:
        _unavailable(f"PostgreSQL at {PG_ADMIN_URL}", exc)
    name = f"twtest_{secrets.token_hex(6)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass(frozen=True)
class Backend:
    """Where a test's nodes meet: a bus URL and a database URL (and a Redis namespace)."""

    name: str
    bus_url: str
    database_url: str
    namespace: str

    def settings(self) -> dict[str, str]:
        """Server settings (``start_server(**backend.settings())``)."""
        return {"bus_url": self.bus_url, "database_url": self.database_url,
                "namespace": self.namespace}


@contextlib.asynccontextmanager
async def scale_backend() -> AsyncIterator[Backend]:
    """Redis + PostgreSQL, isolated for one test."""
    async with redis_namespace() as ns, pg_database() as db:
        yield Backend("redis+postgresql", REDIS_URL, db, ns)
