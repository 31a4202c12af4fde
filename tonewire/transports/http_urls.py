"""URL jobs over HTTP: ``POST /api/jobs {url}`` (JSON) and the original ``POST /api/analyze``.

What can be known when the request arrives is answered then: a malformed or unsupported URL
is 422 ``INVALID_URL``, a host that resolves to a refused address is 403 ``URL_NOT_ALLOWED``.
Everything else (unavailable media, extraction failures, too long, too large) is learned by
the worker and arrives as the job's ``error`` event.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from tonewire.audio.ssrf import AddressGuard, Allowlist
from tonewire.audio.urls import SourceUrl, parse_source_url
from tonewire.errors import InvalidUrl, UrlNotAllowed
from tonewire.jobs.service import JobService
from tonewire.transports.errors import ApiError
from tonewire.transports.limits import limit_job_creation

router = APIRouter()

MAX_JSON_BYTES: Final = 16 * 1024
RESOLVE_TIMEOUT_S: Final = 5.0


class UrlJob(BaseModel):
    url: str = Field(max_length=4096, description="a YouTube link or a direct http(s) media URL")


class AnalyzeRequest(BaseModel):
    youtube_url: str = Field(max_length=4096)
    video_id: str | None = Field(default=None, max_length=64)


class UrlJobCreated(BaseModel):
    """A URL job: what an upload gets, plus the ``video_id`` the original returned."""

    job_id: str
    video_id: str
    status: str
    websocket_url: str
    events_url: str
    cached: bool = False


AnalyzeCreated = UrlJobCreated  # the original route answers the same shape


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def read_json(request: Request) -> Any:
    """The request's JSON body, read with a size cap (400 ``INVALID_JSON``, 413
    ``REQUEST_TOO_LARGE``)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise ApiError(413, "REQUEST_TOO_LARGE",
                           f"a JSON body may be at most {MAX_JSON_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "INVALID_JSON", "the body is not valid JSON") from None


async def check_host(source: SourceUrl, allowlist: list[str]) -> None:
    """Refuse a URL whose host resolves to a refused address now, before creating a job.

    A name that does not resolve (or not in time) is left to the worker, which checks every
    connection again anyway: this early check is for a clear 403, not the guard itself.
    """
    guard = AddressGuard(Allowlist.parse(allowlist))
    try:
        await asyncio.wait_for(asyncio.to_thread(guard.resolve, source.host, source.port),
                               RESOLVE_TIMEOUT_S)
    except UrlNotAllowed:
        raise
    except (OSError, TimeoutError):
        return


async def create_url_job(request: Request, raw_url: str,
                         video_id: str | None = None) -> tuple[dict[str, Any], bool, SourceUrl]:
    """Validate, check the host and create (or find the cached) job for ``raw_url``."""
    settings = request.app.state.settings
    if not settings.url_jobs:
        raise ApiError(403, "URL_JOBS_DISABLED", "this server does not fetch URLs "
                       "(TONEWIRE_URL_JOBS=false): upload the file instead")
    source = parse_source_url(raw_url)
    if video_id is not None and source.kind == "youtube" and video_id != source.video_id:
        raise InvalidUrl(f"video_id {video_id!r} does not match the URL's {source.video_id!r}")
    await check_host(source, settings.url_allowlist)
    service: JobService = request.app.state.services.jobs
    row, created = await service.create_from_url(source)
    return row, created, source


@router.post("/api/analyze", status_code=202, response_model=AnalyzeCreated,
             dependencies=[Depends(limit_job_creation)],
             responses={200: {"model": AnalyzeCreated, "description": "cached complete job"},
                        403: {"description": "URL_NOT_ALLOWED"},
                        422: {"description": "INVALID_URL"}})
async def analyze(request: Request, response: Response, body: AnalyzeRequest) -> AnalyzeCreated:
    """The original route: analyse a YouTube video (or a direct media URL); 202 with
    ``{job_id, video_id, status, websocket_url}``."""
    from tonewire.transports.http_jobs import socket_url  # (http_jobs imports this module)

    row, created, source = await create_url_job(request, body.youtube_url, body.video_id)
    if not created:
        response.status_code = 200
    return AnalyzeCreated(job_id=row["id"], video_id=source.video_id, status=row["status"],
                          websocket_url=socket_url(request),
                          events_url=str(request.url_for("job_events", job_id=row["id"])),
                          cached=not created)
