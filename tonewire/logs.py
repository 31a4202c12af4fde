"""Logging: text for people, or one JSON object per line for log pipelines; either way each
record carries the job or session it concerns.

The ids travel in context variables, set once where a job or a session's work begins: tasks
created from there inherit them, so nothing has to pass ids to every log call.
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from typing import Final

job_id_var: Final[ContextVar[str | None]] = ContextVar("tonewire_job_id", default=None)
session_id_var: Final[ContextVar[str | None]] = ContextVar("tonewire_session_id", default=None)

_TEXT: Final = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


class ContextFilter(logging.Filter):
    """Adds ``job_id``, ``session_id`` and a ready-made ``context`` suffix to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = getattr(record, "job_id", None) or job_id_var.get()
        session = getattr(record, "session_id", None) or session_id_var.get()
        record.__dict__.update(job_id=job, session_id=session)
        parts = [f"job={job}" if job else "", f"session={session}" if session else ""]
        text = " ".join(p for p in parts if p)
        record.context = f" [{text}]" if text else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("job_id", "session_id"):
            value = getattr(record, key, None)
            if value:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure(fmt: str = "text", level: int = logging.INFO) -> dict[str, object]:
    """Set up the root logger; returns a uvicorn ``log_config`` that sends its own records
    (access log included) through the same handler."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return {"version": 1, "disable_existing_loggers": False,
            "loggers": {name: {"handlers": [], "propagate": True, "level": "INFO"}
                        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")}}
