"""REST for jobs: tonewire's ``/api/jobs`` routes and the original ``/api/job/{id}`` ones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from tonewire.jobs.model import TERMINAL, JobStatus, job_view
from tonewire.jobs.service import JobService
from tonewire.streams.event import job_stream
from tonewire.transports.errors import ApiError
from tonewire.transports.http_urls import (
    UrlJob,
    UrlJobCreated,
    create_url_job,
    is_json,
    read_json,
)
from tonewire.transports.limits import limit_job_creation
from tonewire.transports.socketio_hub import JOB_TERMINAL
from tonewire.transports.sse import event_stream, parse_last_event_id
from tonewire.transports.upload import receive_upload

router = APIRouter()


class JobCreated(BaseModel):
    job_id: str
    status: str
    websocket_url: str
    events_url: str
    cached: bool = False


class JobState(BaseModel):
    job_id: str
    status: str
    progress: int
    error: dict[str, str] | None
    message: str = ""
    source: dict[str, str] | None = None
    title: str | None = None
    duration: float | None = None
    created_at: float | None = None
    finished_at: float | None = None


class JobList(BaseModel):
    jobs: list[JobState]
    total: int
    limit: int
    offset: int


class Deleted(BaseModel):
    job_id: str
    status: str


def _jobs(request: Request) -> JobService:
    service: JobService = request.app.state.services.jobs
    return service


def socket_url(request: Request) -> str:
    scheme = "wss" if request.url.scheme == "https" else "ws"
    return f"{scheme}://{request.url.netloc}/socket.io/"


def _created(request: Request, row: dict[str, Any], *, cached: bool) -> JobCreated:
    return JobCreated(job_id=row["id"], status=row["status"], websocket_url=socket_url(request),
                      events_url=str(request.url_for("job_events", job_id=row["id"])),
                      cached=cached)


@router.post("/api/jobs", status_code=202, response_model=UrlJobCreated | JobCreated,
             dependencies=[Depends(limit_job_creation)],
             responses={200: {"model": JobCreated, "description": "cached complete job"},
                        403: {"description": "URL_NOT_ALLOWED"},
                        413: {"description": "UPLOAD_TOO_LARGE"},
                        415: {"description": "UNSUPPORTED_MEDIA_TYPE"},
                        422: {"description": "INVALID_URL"},
                        429: {"description": "RATE_LIMITED (with Retry-After)"},
                        503: {"description": "JOB_LIMIT"}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "multipart/form-data": {"schema": {
                     "type": "object", "required": ["file"],
                     "properties": {"file": {"type": "string", "format": "binary"}}}},
                 "application/json": {"schema": UrlJob.model_json_schema()}}}})
async def create_job(request: Request, response: Response) -> UrlJobCreated | JobCreated:
    """Upload an audio file (multipart field ``file``), or send ``{"url": ...}`` as JSON to
    fetch one (YouTube or a direct media link); 202 with the job."""
    settings = request.app.state.settings
    if is_json(request.headers.get("content-type")):
        try:
            url = UrlJob.model_validate(await read_json(request)).url
        except ValidationError as exc:
            raise ApiError(422, "INVALID_REQUEST", "send {\"url\": \"https://...\"}: "
                           f"{exc.errors()[0].get('msg', 'invalid body')}") from None
        row, created, source = await create_url_job(request, url)
        if not created:
            response.status_code = 200
        job = _created(request, row, cached=not created)
        return UrlJobCreated(**job.model_dump(), video_id=source.video_id)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > settings.max_upload_bytes + 64 * 1024:
        raise ApiError(413, "UPLOAD_TOO_LARGE",
                       f"the upload is larger than the {settings.max_upload_bytes} byte limit")
    received = await receive_upload(request.headers.get("content-type"), request.stream(),
                                    field="file", directory=settings.upload_dir,
                                    max_bytes=settings.max_upload_bytes)
    row, created = await _jobs(request).create_from_file(
        path=received.path, source_name=received.filename, content_sha256=received.sha256)
    if not created:
        response.status_code = 200
    return _created(request, row, cached=not created)


@router.get("/api/jobs", response_model=JobList)
async def list_jobs(request: Request, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                    offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> JobList:
    rows, total = await _jobs(request).store.list_jobs(limit=limit, offset=offset)
    return JobList(jobs=[JobState(**job_view(r)) for r in rows], total=total, limit=limit,
                   offset=offset)


@router.get("/api/jobs/{job_id}", response_model=JobState)
@router.get("/api/job/{job_id}", response_model=JobState, include_in_schema=False)
async def get_job(request: Request, job_id: str) -> JobState:
    return JobState(**job_view(await _jobs(request).get(job_id)))


@router.get("/api/jobs/{job_id}/analysis", responses={409: {"description": "JOB_NOT_COMPLETE"}})
@router.get("/api/job/{job_id}/analysis", include_in_schema=False)
async def get_analysis(request: Request, job_id: str) -> Response:
    """The complete analysis (camelCase, the original shape plus tonewire's fields)."""
    text = await _jobs(request).analysis_json(job_id)
    return Response(text, media_type="application/json")


@router.delete("/api/jobs/{job_id}", response_model=Deleted)
@router.delete("/api/job/{job_id}", response_model=Deleted, include_in_schema=False)
async def delete_job(request: Request, job_id: str) -> Deleted:
    """Cancel the job if it is running, then delete it, its events and its analysis."""
    await _jobs(request).delete(job_id)
    return Deleted(job_id=job_id, status="deleted")


@router.get("/api/jobs/{job_id}/events", name="job_events",
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(request: Request, job_id: str,
                     last_event_id: Annotated[str | None, Header()] = None,
                     since: Annotated[str | None, Query()] = None) -> Response:
    """Server-Sent Events of the job's stream, replayed from ``Last-Event-ID`` (or ``since``);
    the stream closes after ``complete`` or ``error``."""
    after = parse_last_event_id(last_event_id if last_event_id is not None else since)
    jobs = _jobs(request)
    row = await jobs.get(job_id)
    if row["status"] in TERMINAL and after >= await jobs.store.last_seq(job_stream(job_id)):
        # Resuming an ended stream at its end: 204 tells EventSource not to reconnect.
        return Response(status_code=204)
    settings = request.app.state.settings
    request.app.state.limits.admit_follower(job_stream(job_id))
    body = event_stream(jobs.log, job_stream(job_id), after=after,
                        heartbeat_s=settings.sse_heartbeat_s, terminal=JOB_TERMINAL,
                        maxsize=settings.subscriber_buffer,
                        stopping=request.app.state.services.stopping)
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    services = request.app.state.services
    return {"status": "healthy", "service": "tonewire",
            "workers": services.pool.size, "running_jobs": len(services.pool.running())}


def job_resolver(service: JobService) -> Any:
    """What a Socket.IO ``subscribe {job_id}`` means: the job's stream, if the job exists."""
    async def resolve(data: dict[str, Any]) -> tuple[str, str, str]:
        job_id = data.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise LookupError("INVALID_JOB", "job_id is required and must be a string")
        row = await service.store.get_job(job_id)
        if row is None:
            raise LookupError("JOB_NOT_FOUND", f"no job {job_id}")
        return job_stream(job_id), "job_id", job_id
    return resolve


__all__ = ["JobStatus", "job_resolver", "router"]
