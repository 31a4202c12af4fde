"""``tonewire worker``: a process that only runs jobs from the shared queue.

It builds what running a job needs and nothing else: the store, the bus, the stream log, the
pool of analysis processes and the job service on a shared queue. Events it appends reach
subscribers on every server through the bus; SIGTERM or SIGINT stops it, and the jobs it was
running go back to the queue for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from tonewire.config import Settings
from tonewire.errors import TonewireError
from tonewire.jobs.pool import WorkerPool
from tonewire.jobs.queue import queue_from_url
from tonewire.jobs.service import JobLimits, JobService
from tonewire.store.database import Store
from tonewire.streams.bus import bus_from_url
from tonewire.streams.log import StreamLog

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run jobs until ``stop`` is set (by default: on SIGTERM or SIGINT)."""
    queue = queue_from_url(settings.queue_url, namespace=settings.namespace, consume=True,
                           concurrency=settings.workers, lease_s=settings.job_lease_s)
    if not queue.shared:
        raise TonewireError("tonewire worker needs a shared job queue "
                            "(TONEWIRE_QUEUE_URL=redis://...)", code="INVALID_SETTING")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.resolved_database_url())
    bus = bus_from_url(settings.bus_url, namespace=settings.namespace)
    pool = WorkerPool(settings.workers, heap_retain_bytes=settings.heap_retain_bytes)
    jobs = JobService(store=store, log=StreamLog(store, bus), pool=pool,
                      options=settings.analysis_options(),
                      limits=JobLimits(max_duration_s=settings.max_duration_s),
                      queue=queue, max_attempts=settings.job_max_attempts)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    await store.start()
    try:
        await bus.start()
        await pool.start()
        await jobs.start()
        log.info("tonewire worker ready (%d analysis processes, queue %s)", pool.size,
                 settings.namespace)
        await stop.wait()
        log.info("tonewire worker stopping")
    finally:
        with contextlib.suppress(Exception):
            await jobs.close()
        await pool.close()
        await bus.close()
        await store.close()
