"""Where jobs wait for a worker: this process (``memory://``, the default) or Redis.

The job service hands a job over with :meth:`JobQueue.submit` and is called back with
``run(job_id, attempt)`` wherever the job is picked up. A job's stream is appended only by the
process running it (see ``streams.log``): the service releases the stream when it submits, and
the runner takes it over, continuing from the store's last seq.

Delivery is at least once: a job whose worker died runs again (``attempt`` counts), and the
runner skips what the stream already holds, so the stream stays gap-free without duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from tonewire.errors import TonewireError

log = logging.getLogger(__name__)

Runner = Callable[[str, int], Coroutine[Any, Any, None]]
"""``run(job_id, attempt)``: run one attempt of a job (attempt 1 first)."""


class JobQueue(Protocol):
    shared: bool
    """Whether other processes take jobs from this queue (``tonewire worker`` needs one)."""

    async def start(self, run: Runner) -> None:
        """Connect; if this process consumes, start taking jobs and calling ``run``."""

    async def close(self) -> None:
        """Stop taking jobs; jobs running here are stopped (a shared queue retries them)."""

    def submit(self, job_id: str) -> None:
        """Queue a job (idempotent: a job already queued or running is not queued twice)."""

    async def cancel(self, job_id: str) -> bool:
        """Stop the job wherever it runs and keep it from starting; True if it was stopped."""


class LocalQueue:
    """Jobs run as tasks of this process, at once (the worker pool bounds the analyses)."""

    shared = False

    def __init__(self, *, consume: bool = True) -> None:
        self.consume = consume
        self._run: Runner | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, run: Runner) -> None:
        if not self.consume:
            raise TonewireError("a server that runs no jobs needs a shared job queue "
                                "(TONEWIRE_QUEUE_URL=redis://...)", code="INVALID_SETTING")
        self._run = run

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def submit(self, job_id: str) -> None:
        if self._run is None:
            raise RuntimeError("the job queue is not started")
        if job_id in self._tasks:
            return
        task = asyncio.create_task(self._run(job_id, 1), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job_id, None))

    async def cancel(self, job_id: str) -> bool:
        task = self._tasks.get(job_id)
        if task is None:
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True


def queue_from_url(url: str, *, namespace: str = "tonewire", consume: bool = True,
                   concurrency: int = 1, lease_s: float = 10.0) -> JobQueue:
    """``memory://``: this process. ``redis://``: shared through Redis (arq); ``consume``
    says whether this process also takes jobs, ``concurrency`` how many at once."""
    if url.startswith("memory://"):
        return LocalQueue(consume=consume)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from tonewire.jobs.arq_queue import ArqQueue  # lazy: the default install has no arq

        return ArqQueue(url, namespace=namespace, consume=consume, concurrency=concurrency,
                        lease_s=lease_s)
    raise TonewireError(f"unsupported job queue URL {url!r}", code="INVALID_SETTING")
