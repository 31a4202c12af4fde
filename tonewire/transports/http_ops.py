"""Operations: Prometheus ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from tonewire.jobs.model import JobStatus
from tonewire.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format. Gauges of current state are read now; counters and
    histograms accumulate as things happen."""
    services = request.app.state.services
    m = services.metrics
    counts = await services.store.count_jobs_by_status()
    for status in JobStatus:
        m.jobs.labels(status.value).set(counts.get(status.value, 0))
    m.live_sessions.set(len(services.sessions.live))
    socketio_members = services.hub.total_members()
    m.subscribers.labels("socketio").set(socketio_members)
    # Every SSE follower holds one bus subscription; each Socket.IO room pump holds one more.
    m.subscribers.labels("sse").set(max(0, services.bus.subscriptions() - len(services.hub.pumps)))
    return Response(m.render(), media_type=CONTENT_TYPE)
