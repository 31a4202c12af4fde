"""Prometheus metrics, one registry per app (two apps in one process never mix counts).

Counters and histograms are fed where things happen (the bus, the job and session
services, the Socket.IO hub); gauges of current state are read at scrape time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tonewire.streams.bus import Bus, Subscription
from tonewire.streams.event import StreamEvent

__all__ = ["CONTENT_TYPE", "MeteredBus", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.jobs = Gauge("tonewire_jobs", "Jobs by state", ["state"], registry=r)
        self.live_sessions = Gauge("tonewire_live_sessions",
                                   "Live sessions held by this process", registry=r)
        self.subscribers = Gauge("tonewire_subscribers",
                                 "Followers of job and session streams connected here",
                                 ["transport"], registry=r)
        self.events_published = Counter("tonewire_events_published",
                                        "Stream events published, by type", ["type"],
                                        registry=r)
        self.subscribers_cut_off = Counter(
            "tonewire_subscribers_cut_off",
            "Subscribers cut off for falling behind their buffer (the events stay in the "
            "log; the subscriber resumes from its last seq)", ["transport"], registry=r)
        self.socketio_deliveries = Counter(
            "tonewire_socketio_deliveries",
            "Socket.IO room deliveries by path: direct (pre-framed write), queued (engine.io "
            "queue), emit (python-socketio)", ["path"], registry=r)
        self.ingest_frames = Counter(
            "tonewire_ingest_frames",
            "Live ingest frames answered, by path: direct (the connection's frame sink, "
            "transports/ws_protocol.py) or asgi (the route's receive loop); added in batches",
            ["path"], registry=r)
        self.live_batch_windows = Histogram(
            "tonewire_live_batch_windows", "Windows per batch sent to a live analysis worker",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.live_batch_wait = Histogram(
            "tonewire_live_batch_wait_seconds",
            "How long a batch's oldest window waited before the batch left for its worker "
            "(gathering, or the worker busy with the previous batch)",
            # Edges clear of the default gathering time (20 ms), where most batches leave.
            buckets=(0.005, 0.01, 0.015, 0.025, 0.035, 0.05, 0.1, 0.25, 0.5, 1.0), registry=r)
        self.live_batch_seconds = Histogram(
            "tonewire_live_batch_seconds",
            "A batch's round trip through its live analysis worker",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0), registry=r)
        self.live_worker_restarts = Counter(
            "tonewire_live_worker_restarts",
            "Live analysis workers started again after dying (killed, out of memory, a crash)",
            registry=r)
        self.windows_dropped = Counter(
            "tonewire_live_windows_dropped",
            "Live analysis windows dropped because analysis fell behind", registry=r)
        self.realtime_factor = Histogram(
            "tonewire_analysis_realtime_factor",
            "Seconds of audio analysed per second of wall time, per job",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=r)
        self.window_latency = Histogram(
            "tonewire_window_to_event_seconds",
            "From a live window's last sample arriving to its events being published",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=r)
        # The first part of the above: what is left is storing and publishing the events.
        self.window_analysis = Histogram(
            "tonewire_window_analysis_seconds",
            "From a live window's last sample arriving to its analysis being back (waiting "
            "for a batch, the worker, the tone tracker)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=r)
        self.rate_limited = Counter("tonewire_rate_limited",
                                    "Requests refused by the per-client rate limit",
                                    registry=r)

    # The live batcher's observer (``sessions.batcher.BatchObserver``).
    def observe_live_batch(self, windows: int, waited_s: float, worker_s: float) -> None:
        self.live_batch_windows.observe(windows)
        self.live_batch_wait.observe(waited_s)
        self.live_batch_seconds.observe(worker_s)

    def live_worker_restarted(self) -> None:
        self.live_worker_restarts.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MeteredBus:
    """A bus that counts what passes through it, around any other bus."""

    def __init__(self, inner: Bus, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self._active: dict[str, set[Subscription]] = {}

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, event: StreamEvent) -> None:
        self.metrics.events_published.labels(event.type).inc()
        await self.inner.publish(event)

    def subscriptions(self, stream: str | None = None) -> int:
        """Open subscriptions in this process, to one stream or to all."""
        if stream is None:
            return sum(len(subs) for subs in self._active.values())
        return len(self._active.get(stream, ()))

    def nudge_all(self) -> None:
        """Wake every subscriber's reader (at shutdown, so each can see it and leave)."""
        for subs in self._active.values():
            for sub in subs:
                sub.nudge()

    def subscribe(self, stream: str, *, maxsize: int = 1024
                  ) -> AbstractAsyncContextManager[Subscription]:
        return self._subscribe(stream, maxsize)

    @asynccontextmanager
    async def _subscribe(self, stream: str, maxsize: int) -> AsyncIterator[Subscription]:
        async with self.inner.subscribe(stream, maxsize=maxsize) as sub:
            self._active.setdefault(stream, set()).add(sub)
            try:
                yield sub
            finally:
                subs = self._active[stream]
                subs.discard(sub)
                if not subs:
                    del self._active[stream]
                if sub.overflowed:
                    self.metrics.subscribers_cut_off.labels("bus").inc()
