"""Tables. Plain SQLAlchemy Core, so SQLite and PostgreSQL share one code path."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("progress", Integer, nullable=False, default=0),
    Column("message", Text, nullable=False, default=""),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("source_kind", String(16), nullable=False),  # upload | url
    Column("source_name", Text, nullable=False),
    Column("input_path", Text),  # the file being analysed; removed when the job ends
    Column("content_sha256", String(64)),
    Column("cache_key", String(64)),
    Column("options", Text, nullable=False),  # JSON of AnalysisOptions + limits
    Column("title", Text),
    Column("duration", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    Index("jobs_cache_key", "cache_key"),
    Index("jobs_created_at", "created_at"),
    Index("jobs_status", "status"),
)

events = Table(
    "events",
    metadata,
    Column("stream", String(96), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("data", Text, nullable=False),  # JSON
    Column("ts", Float, nullable=False),
    PrimaryKeyConstraint("stream", "seq"),
)

analyses = Table(
    "analyses",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("data", Text, nullable=False),  # JSON, the complete analysis
    Column("created_at", Float, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("options", Text, nullable=False),  # JSON of SessionOptions
    Column("samples", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("end_reason", String(32)),
    Column("dropped_windows", BigInteger, nullable=False, default=0),
    # Which node owns the session's stream (holds its ingest), and until when (epoch s):
    # another node takes over only once the lease has lapsed. Added by migration 2.
    Column("owner", String(32)),
    Column("lease_expires", Float),
    Index("sessions_state", "state"),
)
