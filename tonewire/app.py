"""``create_app(settings)``: build the services, mount HTTP and Socket.IO, run the lifespan.

Everything the app needs is built here and handed out through ``app.state.services``; nothing
lives at module level, so two apps (say, in one test) never share state.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import socketio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from tonewire import __version__
from tonewire.config import Settings
from tonewire.jobs.pool import WorkerPool
from tonewire.jobs.service import JobLimits, JobService
from tonewire.store.database import Store
from tonewire.streams.bus import MemoryBus, bus_from_url
from tonewire.streams.log import StreamLog
from tonewire.transports.errors import install_error_handlers
from tonewire.transports.http_jobs import job_resolver
from tonewire.transports.http_jobs import router as jobs_router
from tonewire.transports.socketio_hub import SocketHub

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: Store
    bus: MemoryBus
    log: StreamLog
    pool: WorkerPool
    jobs: JobService
    hub: SocketHub


def create_app(settings: Settings | None = None) -> Any:
    """The ASGI application: Socket.IO at ``/socket.io/``, everything else FastAPI."""
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.resolved_database_url())
    bus = bus_from_url(settings.bus_url)
    stream_log = StreamLog(store, bus)
    pool = WorkerPool(settings.workers)
    jobs = JobService(store=store, log=stream_log, pool=pool,
                      options=settings.analysis_options(),
                      limits=JobLimits(max_duration_s=settings.max_duration_s))
    sio = socketio.AsyncServer(
        async_mode="asgi",
        # None: same origin only; otherwise the explicit list, as for HTTP.
        cors_allowed_origins=settings.cors_origins or None,
        logger=False, engineio_logger=False,
    )
    hub = SocketHub(sio, stream_log, buffer=settings.subscriber_buffer,
                    resolve=job_resolver(jobs))
    services = Services(settings=settings, store=store, bus=bus, log=stream_log, pool=pool,
                        jobs=jobs, hub=hub)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await store.start()
        await bus.start()
        await pool.start()
        await jobs.start()
        # Objects alive now live for the whole run: keep them out of every collection.
        gc.collect()
        gc.freeze()
        log.info("tonewire %s ready (%d workers)", __version__, pool.size)
        try:
            yield
        finally:
            await hub.close()
            await jobs.close()
            await pool.close()
            await bus.close()
            await store.close()
            gc.unfreeze()

    api = FastAPI(title="tonewire", version=__version__, lifespan=lifespan,
                  description="Analyse audio as it arrives and stream the results.")
    api.state.settings = settings
    api.state.services = services
    install_error_handlers(api)
    if settings.cors_origins:
        api.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                           allow_headers=["*"], allow_credentials=False)
    api.include_router(jobs_router)
    app = socketio.ASGIApp(sio, other_asgi_app=api, socketio_path="socket.io")
    app.state = api.state  # tests and tools reach the services through the outer app too
    return app
