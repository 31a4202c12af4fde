"""The job queue on Redis, with arq: ``tonewire worker`` processes (and servers that also
work) pull jobs; a job whose worker dies is retried by another.

arq keeps a job in its queue until a worker finishes it, marks a running job with an
"in-progress" key, and lets any worker pick the job up again once that key has lapsed,
counting the tries. arq sets the key for the job timeout plus 10 s, so a killed worker's job
would wait for hours (arq issue #407): here the key is a short lease (``TONEWIRE_JOB_LEASE_S``)
that the running job renews, so another worker retries it within a lease of the death.

arq's own try limit is set high: the runner enforces ``TONEWIRE_JOB_MAX_ATTEMPTS`` itself, so
that a job which keeps killing its workers ends with an ``error`` event, not in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.jobs import Job
from arq.worker import Worker, func
from redis.exceptions import RedisError

from tonewire.jobs.queue import Runner

log = logging.getLogger(__name__)

_FUNCTION: Final = "tonewire_run_job"
_ARQ_TRIES: Final = 1000
_JOB_TIMEOUT_S: Final = 24 * 3600.0
_POLL_S: Final = 0.2
_KEEP_RESULT_S: Final = 60
_CANCEL_WAIT_S: Final = 5.0
_SUBMIT_TRIES: Final = 20
_CLOSE_SUBMIT_S: Final = 2.0


class ArqQueue:
    shared = True

    def __init__(self, url: str, *, namespace: str, consume: bool, concurrency: int,
                 lease_s: float) -> None:
        self.url = url
        self.queue_name = f"{namespace}:jobs"
        self.consume = consume
        self.concurrency = concurrency
        self.lease_s = lease_s
        self._run: Runner | None = None
        self._redis: ArqRedis | None = None
        self._worker: Worker | None = None
        self._main: asyncio.Task[None] | None = None
        self._submitting: set[asyncio.Task[None]] = set()

    @property
    def redis(self) -> ArqRedis:
        if self._redis is None:
            raise RuntimeError("the job queue is not started")
        return self._redis

    async def start(self, run: Runner) -> None:
        self._run = run
        self._redis = await create_pool(RedisSettings.from_dsn(self.url),
                                        default_queue_name=self.queue_name)
        if not self.consume:
            return
        worker = Worker(
            functions=[func(self._job, name=_FUNCTION, max_tries=_ARQ_TRIES)],
            redis_pool=self._redis, queue_name=self.queue_name, max_jobs=self.concurrency,
            job_timeout=_JOB_TIMEOUT_S, keep_result=_KEEP_RESULT_S, poll_delay=_POLL_S,
            handle_signals=False, allow_abort_jobs=True, max_tries=_ARQ_TRIES,
            health_check_interval=60)
        worker.in_progress_timeout_s = self.lease_s  # the lease, renewed by _job
        self._worker = worker
        self._main = asyncio.create_task(worker.main(), name="job-queue")

    async def close(self) -> None:
        if self._submitting:  # jobs accepted just before the stop still reach the queue
            await asyncio.wait(set(self._submitting), timeout=_CLOSE_SUBMIT_S)
        for t in list(self._submitting):
            t.cancel()
        await asyncio.gather(*self._submitting, return_exceptions=True)
        if self._worker is not None:
            # Stops taking jobs and cancels the running ones: arq puts them back in the
            # queue at once, for another worker. It also closes the Redis pool.
            worker, self._worker = self._worker, None
            await asyncio.gather(worker.close(), return_exceptions=True)
            if self._main is not None:
                await asyncio.gather(self._main, return_exceptions=True)
        elif self._redis is not None:
            await self._redis.aclose(close_connection_pool=True)
        self._redis = None

    def submit(self, job_id: str) -> None:
        task = asyncio.create_task(self._enqueue(job_id), name=f"submit-{job_id}")
        self._submitting.add(task)
        task.add_done_callback(self._submitting.discard)

    async def _enqueue(self, job_id: str) -> None:
        for attempt in range(_SUBMIT_TRIES):
            try:
                # The job id is arq's too: queueing a job already queued or running is a no-op.
                await self.redis.enqueue_job(_FUNCTION, job_id, _job_id=job_id)
                return
            except (RedisError, OSError) as exc:
                log.warning("queueing job %s failed (%s); retrying", job_id, exc)
                await asyncio.sleep(min(0.2 * 2 ** attempt, 5.0))
        log.error("job %s could not be queued; it is queued again when a server starts",
                  job_id)

    async def cancel(self, job_id: str) -> bool:
        job = Job(job_id, self.redis, _queue_name=self.queue_name)
        try:
            return await job.abort(timeout=_CANCEL_WAIT_S, poll_delay=_POLL_S)
        except TimeoutError:
            # No worker took the abort (none is running): take the job off the queue.
            async with self.redis.pipeline(transaction=True) as tr:
                tr.zrem(self.queue_name, job_id)
                tr.delete(job_key_prefix + job_id)
                await tr.execute()
            return False

    async def _job(self, ctx: dict[str, Any], job_id: str) -> None:
        if self._run is None:
            raise RuntimeError("the job queue is not started")
        renew = asyncio.create_task(self._renew(in_progress_key_prefix + job_id, job_id))
        try:
            await self._run(job_id, int(ctx["job_try"]))
        finally:
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)

    async def _renew(self, key: str, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            with contextlib.suppress(RedisError, OSError):  # a blip: the next renewal may do
                if not await self.redis.pexpire(key, int(self.lease_s * 1000)):
                    # The lease lapsed (this process stalled): another worker may run the job
                    # now. The stream's seq fence stops this one appending twice.
                    log.warning("job %s: lease lost", job_id)
