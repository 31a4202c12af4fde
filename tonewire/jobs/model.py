"""Job states and the public view of a job."""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Any, Final


class JobStatus(StrEnum):
    PENDING = "pending"
    DECODING = "decoding"
    ANALYZING = "analyzing"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"


TERMINAL: Final = frozenset({JobStatus.COMPLETE, JobStatus.ERROR, JobStatus.CANCELLED})
RUNNING: Final = (JobStatus.PENDING, JobStatus.DECODING, JobStatus.ANALYZING)


def new_job_id() -> str:
    """128 random bits, URL-safe (22 characters): not guessable, not derived from input."""
    return secrets.token_urlsafe(16)


def job_view(row: dict[str, Any]) -> dict[str, Any]:
    """``{job_id, status, progress, error}`` as the original protocol, plus tonewire's fields."""
    error = None
    if row.get("error_code"):
        error = {"code": row["error_code"], "message": row.get("error_message") or ""}
    return {
        "job_id": row["id"],
        "status": row["status"],
        "progress": row["progress"],
        "error": error,
        "message": row.get("message") or "",
        "source": {"kind": row["source_kind"], "name": row["source_name"]},
        "title": row.get("title"),
        "duration": row.get("duration"),
        "created_at": row["created_at"],
        "finished_at": row.get("finished_at"),
    }
