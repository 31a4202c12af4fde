"""``create_app(settings)``: build the services, mount HTTP and Socket.IO, run the lifespan.

Everything the app needs is built here and handed out through ``app.state.services``; nothing
lives at module level, so two apps (say, in one test) never share state.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from tonewire.gc_policy import LongLivedFreezer
from tonewire.jobs.pool import WorkerPool
from tonewire.jobs.queue import JobQueue, queue_from_url
from tonewire.jobs.service import JobLimits, JobService
from tonewire.metrics import MeteredBus, Metrics
from tonewire.sessions.batcher import WindowBatcher
from tonewire.sessions.builtin import (
    BuiltinClassifier,
    forget_sessions,
    speech_batch,
    warm_up_speech,
)
from tonewire.sessions.classifier import Classifier, SidecarClassifier
from tonewire.sessions.model import SessionOptions
from tonewire.sessions.service import SESSION_TERMINAL, SessionService
from tonewire.store.database import Store
from tonewire.streams.bus import bus_from_url
from tonewire.streams.log import StreamLog
from tonewire.transports import eio_release
from tonewire.transports.access import AccessGate, ApiKeys, presented_key, public_path
from tonewire.transports.bodylimit import BodyLimit
from tonewire.transports.errors import install_error_handlers
from tonewire.transports.headers import SecurityHeaders
from tonewire.transports.http_jobs import job_resolver
from tonewire.transports.http_jobs import router as jobs_router
from tonewire.transports.http_ops import router as ops_router
from tonewire.transports.http_sessions import router as sessions_router
from tonewire.transports.http_sessions import session_resolver
from tonewire.transports.http_urls import router as urls_router
from tonewire.transports.limits import Limits
from tonewire.transports.socketio_hub import JOB_TERMINAL, SocketHub
from tonewire.web import mount_web

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: Store
    bus: MeteredBus
    log: StreamLog
    pool: WorkerPool
    jobs: JobService
    sessions: SessionService
    hub: SocketHub
    live: LiveAnalysis
    metrics: Metrics
    stopping: asyncio.Event
    """Set when the server begins to shut down: streams tell their followers and close."""


class LiveAnalysis:
    """What live sessions classify with: the batched builtin analysis (worker processes)
    and one pooled HTTP client for the sidecar, both created once for the whole process."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.batcher = WindowBatcher(speech_batch, workers=settings.live_workers,
                                     forget=forget_sessions, warm_up=warm_up_speech,
                                     gather_s=settings.live_gather_ms / 1000.0,
                                     heap_retain_bytes=settings.heap_retain_bytes,
                                     observer=metrics)
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
    metrics = Metrics()
    store = Store(settings.resolved_database_url())
    bus = MeteredBus(bus_from_url(settings.bus_url, namespace=settings.namespace), metrics)
    stream_log = StreamLog(store, bus)
    pool = WorkerPool(settings.workers, heap_retain_bytes=settings.heap_retain_bytes)
    jobs = JobService(store=store, log=stream_log, pool=pool,
                      options=settings.analysis_options(),
                      limits=JobLimits(max_duration_s=settings.max_duration_s,
                                       max_active=settings.max_active_jobs),
                      metrics=metrics, fetch=settings.fetch_settings(),
                      download_dir=settings.upload_dir,
                      queue=queue_from_settings(settings), max_attempts=settings.job_max_attempts)
    keys = ApiKeys(settings.api_keys)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        # None: same origin only; otherwise the explicit list, as for HTTP.
        cors_allowed_origins=settings.cors_origins or None,
        logger=False, engineio_logger=False,
        ping_interval=settings.socketio_ping_interval_s,
        ping_timeout=settings.socketio_ping_timeout_s,
    )
    eio_release.install(sio.eio)
    live = LiveAnalysis(settings, metrics)
    sessions = SessionService(store=store, log=stream_log, classifiers=live.classifier,
                              idle_ttl_s=settings.session_idle_ttl_s,
                              max_sessions=settings.max_sessions, metrics=metrics,
                              lease_s=settings.session_lease_s)
    resolve_job, resolve_session = job_resolver(jobs), session_resolver(sessions)

    async def resolve(data: dict[str, Any]) -> tuple[str, str, str]:
        """A Socket.IO subscribe follows a session if it names one, else a job."""
        if "session_id" in data and "job_id" not in data:
            return await resolve_session(data)  # type: ignore[no-any-return]
        return await resolve_job(data)  # type: ignore[no-any-return]

    def followers(stream: str) -> int:
        # SSE followers hold one bus subscription each; a Socket.IO room pump holds one too.
        pump = 1 if stream in hub.pumps else 0
        return bus.subscriptions(stream) - pump + hub.member_count(stream)

    limits = Limits(settings, followers=followers, on_refused=metrics.rate_limited.inc)

    def authorize(environ: dict[str, Any], auth: Any) -> bool:
        headers = {"authorization": environ.get("HTTP_AUTHORIZATION", "")}
        return keys.allows(presented_key(headers, environ.get("QUERY_STRING", ""), auth))

    hub = SocketHub(sio, stream_log, buffer=settings.subscriber_buffer, resolve=resolve,
                    terminal=JOB_TERMINAL | SESSION_TERMINAL, authorize=authorize,
                    has_room=limits.follower_room,
                    on_cut_off=metrics.subscribers_cut_off.labels("socketio").inc,
                    fanout=settings.socketio_fanout,
                    on_delivered=lambda path, n: metrics.socketio_deliveries.labels(path).inc(n))
    sessions.member_count = hub.member_count  # the reaper counts Socket.IO followers too
    stopping = asyncio.Event()
    services = Services(settings=settings, store=store, bus=bus, log=stream_log, pool=pool,
                        jobs=jobs, sessions=sessions, hub=hub, live=live, metrics=metrics,
                        stopping=stopping)

    async def tell_followers_on_stop() -> None:
        await stopping.wait()
        log.info("shutting down: telling followers to reconnect later")
        bus.nudge_all()  # SSE streams wake, see `stopping`, send server-shutdown, close
        await hub.announce_shutdown()

    freezer = LongLivedFreezer(full_every_s=settings.gc_full_interval_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await store.start()
        await bus.start()
        if settings.run_jobs:  # a server that only serves needs no analysis processes
            await pool.start()
        live.start()
        await jobs.start()
        await sessions.start()
        # Objects alive now live for the whole run, and so do those surviving each full
        # collection from now on: keep them out of later collections (gc_policy).
        freezer.start()
        log.info("tonewire %s ready (%d workers)", __version__, pool.size)
        announcer = asyncio.create_task(tell_followers_on_stop(), name="shutdown-announcer")
        try:
            yield
        finally:
            if not stopping.is_set():  # stopped without a signal (tests, embedding)
                stopping.set()
                await asyncio.sleep(0)  # let the announcer run
            with contextlib.suppress(Exception):
                await asyncio.wait_for(announcer, 2.0)
            announcer.cancel()
            # Running jobs are not failed: their rows stay running and their streams hold
            # every segment so far; the next start resumes them (checkpointed by the log).
            await hub.close()
            await sessions.close()
            await live.close()
            await jobs.close()
            await pool.close()
            await bus.close()
            await store.close()
            await freezer.close()

    api = FastAPI(title="tonewire", version=__version__, lifespan=lifespan,
                  description="Analyse audio as it arrives and stream the results.")
    api.state.settings = settings
    api.state.services = services
    api.state.limits = limits
    install_error_handlers(api)
    if settings.cors_origins:
        api.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                           allow_headers=["*"], allow_credentials=False)
    api.include_router(jobs_router)
    api.include_router(sessions_router)
    api.include_router(urls_router)
    api.include_router(ops_router)
    mount_web(api)  # the page at / and /static/: after the API, shadowing none of it
    inner = socketio.ASGIApp(sio, other_asgi_app=api, socketio_path="socket.io")
    # Outermost first: every answer gets the security headers, refusals included.
    app: Any = SecurityHeaders(AccessGate(BodyLimit(inner, max_bytes=settings.max_body_bytes),
                                          keys, public=public_path))
    app.state = api.state  # tests and tools reach the services through the outer app too
    return app
