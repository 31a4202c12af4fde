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

import httpx
import socketio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from tonewire import __version__
from tonewire.config import Settings
from tonewire.jobs.pool import WorkerPool
from tonewire.jobs.queue import JobQueue, queue_from_url
from tonewire.jobs.service import JobLimits, JobService
from tonewire.sessions.batcher import WindowBatcher
from tonewire.sessions.builtin import BuiltinClassifier, forget_sessions, speech_batch
from tonewire.sessions.classifier import Classifier, SidecarClassifier
from tonewire.sessions.model import SessionOptions
from tonewire.sessions.service import SESSION_TERMINAL, SessionService
from tonewire.store.database import Store
from tonewire.streams.bus import Bus, bus_from_url
from tonewire.streams.log import StreamLog
from tonewire.transports.errors import install_error_handlers
from tonewire.transports.http_jobs import job_resolver
from tonewire.transports.http_jobs import router as jobs_router
from tonewire.transports.http_sessions import router as sessions_router
from tonewire.transports.http_sessions import session_resolver
from tonewire.transports.socketio_hub import JOB_TERMINAL, SocketHub

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: Store
    bus: Bus
    log: StreamLog
    pool: WorkerPool
    jobs: JobService
    sessions: SessionService
    hub: SocketHub
    live: LiveAnalysis


class LiveAnalysis:
    """What live sessions classify with: the batched builtin analysis (worker processes)
    and one pooled HTTP client for the sidecar, both created once for the whole process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.batcher = WindowBatcher(speech_batch, workers=settings.live_workers,
                                     forget=forget_sessions,
                                     warm_module="tonewire.analysis.speech")
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(settings.sidecar_timeout_s),
                                      limits=httpx.Limits(max_connections=100))

    def start(self) -> None:
        self.batcher.start()

    async def close(self) -> None:
        await self.batcher.close()
        await self.http.aclose()

    def classifier(self, session_id: str, options: SessionOptions) -> Classifier:
        if options.classifier == "sidecar":
            return SidecarClassifier(session_id, options, client=self.http,
                                     url=self.settings.sidecar_url)
        return BuiltinClassifier(session_id, options, batcher=self.batcher)


def queue_from_settings(settings: Settings) -> JobQueue:
    return queue_from_url(settings.queue_url, namespace=settings.namespace,
                          consume=settings.run_jobs, concurrency=settings.workers,
                          lease_s=settings.job_lease_s)


def create_app(settings: Settings | None = None) -> Any:
    """The ASGI application: Socket.IO at ``/socket.io/``, everything else FastAPI."""
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.resolved_database_url())
    bus = bus_from_url(settings.bus_url, namespace=settings.namespace)
    stream_log = StreamLog(store, bus)
    pool = WorkerPool(settings.workers)
    jobs = JobService(store=store, log=stream_log, pool=pool,
                      options=settings.analysis_options(),
                      limits=JobLimits(max_duration_s=settings.max_duration_s),
                      queue=queue_from_settings(settings), max_attempts=settings.job_max_attempts)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        # None: same origin only; otherwise the explicit list, as for HTTP.
        cors_allowed_origins=settings.cors_origins or None,
        logger=False, engineio_logger=False,
    )
    live = LiveAnalysis(settings)
    sessions = SessionService(store=store, log=stream_log, classifiers=live.classifier,
                              idle_ttl_s=settings.session_idle_ttl_s,
                              max_sessions=settings.max_sessions,
                              lease_s=settings.session_lease_s)
    resolve_job, resolve_session = job_resolver(jobs), session_resolver(sessions)

    async def resolve(data: dict[str, Any]) -> tuple[str, str, str]:
        """A Socket.IO subscribe follows a session if it names one, else a job."""
        if "session_id" in data and "job_id" not in data:
            return await resolve_session(data)  # type: ignore[no-any-return]
        return await resolve_job(data)  # type: ignore[no-any-return]

    hub = SocketHub(sio, stream_log, buffer=settings.subscriber_buffer, resolve=resolve,
                    terminal=JOB_TERMINAL | SESSION_TERMINAL)
    sessions.member_count = hub.member_count  # the reaper counts Socket.IO followers too
    services = Services(settings=settings, store=store, bus=bus, log=stream_log, pool=pool,
                        jobs=jobs, sessions=sessions, hub=hub, live=live)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await store.start()
        await bus.start()
        if settings.run_jobs:  # a server that only serves needs no analysis processes
            await pool.start()
        live.start()
        await jobs.start()
        await sessions.start()
        # Objects alive now live for the whole run: keep them out of every collection.
        gc.collect()
        gc.freeze()
        log.info("tonewire %s ready (%d workers)", __version__, pool.size)
        try:
            yield
        finally:
            await hub.close()
            await sessions.close()
            await live.close()
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
    api.include_router(sessions_router)
    app = socketio.ASGIApp(sio, other_asgi_app=api, socketio_path="socket.io")
    app.state = api.state  # tests and tools reach the services through the outer app too
    return app
