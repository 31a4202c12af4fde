"""Settings: the one place the environment is read (prefix ``TONEWIRE_``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tonewire.analysis.options import AnalysisOptions
from tonewire.audio.fetch import FetchSettings
from tonewire.audio.ssrf import Allowlist
from tonewire.heap_policy import DEFAULT_RETAIN_MB


def _default_workers() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TONEWIRE_", extra="ignore")

    data_dir: Path = Field(default=Path("./tonewire-data"),
                           description="SQLite database and uploads in progress")
    database_url: str | None = Field(default=None,
                                     description="default: SQLite in the data directory")
    bus_url: str = Field(default="memory://", description="event bus between processes")
    queue_url: str = Field(default="memory://",
                           description="job queue: memory:// (this process) or redis://")
    namespace: str = Field(default="tonewire", min_length=1, max_length=64,
                           pattern=r"^[A-Za-z0-9_.:-]+$",
                           description="prefix of every Redis key and channel")
    run_jobs: bool = Field(default=True, description="take jobs from the queue (serve "
                           "--no-worker: false)")
    job_lease_s: float = Field(default=10.0, ge=0.5, le=600,
                               description="a worker silent this long has its job retried")
    job_max_attempts: int = Field(default=3, ge=1, le=100,
                                  description="runs of a job whose workers keep dying")
    session_lease_s: float = Field(default=10.0, ge=0.5, le=600,
                                   description="a node silent this long loses its sessions")

    # Analysis
    sample_rate: int = Field(default=22050, ge=8000, le=96000, description="Analysis rate, Hz")
    segment_seconds: float = Field(default=1.0, gt=0.05, le=60.0)
    max_duration_s: float = Field(default=4 * 3600.0, gt=0, description="Longest input accepted")
    silence_dbfs: float = Field(default=-60.0, le=0, description="Segments below are silent")
    min_confidence: float = Field(default=0.3, ge=0, le=1, description="Label confidence floor")

    # Jobs
    workers: int = Field(default_factory=_default_workers, ge=1, le=64,
                         description="analysis worker processes")
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)

    # URL ingestion
    url_jobs: bool = Field(default=True,
                           description="accept URL jobs; false: the server never fetches URLs")
    url_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated hosts, addresses or CIDR ranges fetched although not public")
    max_download_bytes: int = Field(default=512 * 1024 * 1024, ge=1024,
                                    description="largest media a URL job downloads")
    download_timeout_s: float = Field(default=600.0, gt=0,
                                      description="a URL job's whole fetch: metadata and media")
    download_socket_timeout_s: float = Field(default=20.0, gt=0,
                                             description="one connect or read while fetching")

    # Live sessions
    session_idle_ttl_s: float = Field(default=90.0, gt=0,
                                      description="end sessions idle (no subscriber, no ingest)")
    max_sessions: int = Field(default=1000, ge=1, description="live sessions per process")
    max_frame_bytes: int = Field(default=64 * 1024, ge=2, le=16 * 1024 * 1024,
                                 description="largest ingest frame; larger closes with 1009")
    sidecar_url: str | None = Field(default=None, description="classifier=sidecar service")
    sidecar_timeout_s: float = Field(default=5.0, gt=0)
    # One per two cores, at most 4: the event loop needs a core of its own under load (at
    # 500 streams on 2 cores, one worker held p99 under 100 ms where two did not), and one
    # worker analyses over a thousand windows a second.
    live_workers: int = Field(default_factory=lambda: max(1, min(4, (os.cpu_count() or 1) // 2)),
                              ge=1, le=64, description="processes for live speech analysis "
                              "(default: one per two cores, at most 4)")
    gc_full_interval_s: float = Field(
        default=600.0, ge=0.0, description="survivors of full garbage collections are frozen "
        "(no pauses over long-lived connections); this often everything is collected once "
        "(0: never)")
    live_gather_ms: float = Field(default=20.0, ge=0.0, le=500.0,
                                  description="how long a due window waits for others to be "
                                  "analysed with it as one batch")
    heap_retain_mb: int = Field(
        default=DEFAULT_RETAIN_MB, ge=0, le=2047, description="freed memory each analysis "
        "process keeps for reuse instead of returning it to the kernel at once (glibc; halves "
        "live analysis cost where page faults are dear); 0: the C library's default")

    # Delivery
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed cross-origin")
    subscriber_buffer: int = Field(default=2048, ge=16,
                                   description="events a subscriber may fall behind")
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    socketio_ping_interval_s: float = Field(
        default=25.0, gt=0, description="engine.io ping interval (its default)")
    socketio_ping_timeout_s: float = Field(
        default=60.0, gt=0, description="engine.io: how long a ping may wait for its pong; "
        "clients allow interval + timeout (python: max of the two + 5 s) without a packet, so "
        "a client busy reading a burst is not dropped (engine.io's default is 20 s)")
    socketio_fanout: Literal["direct", "queue", "emit"] = Field(
        default="direct", description="room fan-out: direct (pre-framed writes), queue "
        "(pre-encoded packets on engine.io queues), emit (python-socketio's emit; to compare)")
    max_subscribers_per_stream: int = Field(
        default=1000, ge=1, description="SSE + Socket.IO followers of one job or session")

    # Access and limits
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated keys; when set, every API, stream "
        "and socket needs one (Authorization: Bearer KEY or ?token=KEY)")
    rate_limit_per_minute: int = Field(
        default=10, ge=0, description="job creations and session starts per client IP "
        "per minute (0: no limit)")
    max_active_jobs: int = Field(default=100, ge=1,
                                 description="jobs waiting or running at once")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024,
                                description="JSON and form bodies (uploads have their own)")

    # Operations
    log_format: Literal["text", "json"] = Field(default="text",
                                                description="json: one object per line")

    @field_validator("cors_origins", "api_keys", "url_allowlist", mode="before")
    @classmethod
    def _split_list(cls, v: object) -> object:
        if isinstance(v, str):
            return [o.strip() for o in v.split(",") if o.strip()]
        return v

    @field_validator("api_keys")
    @classmethod
    def _long_keys(cls, v: list[str]) -> list[str]:
        if any(len(k) < 16 for k in v):
            raise ValueError("API keys must be at least 16 characters")
        return v

    @field_validator("url_allowlist")
    @classmethod
    def _check_allowlist(cls, v: list[str]) -> list[str]:
        Allowlist.parse(v)  # a typo fails at start, not silently at the first fetch
        return v

    def analysis_options(self) -> AnalysisOptions:
        return AnalysisOptions(
            sample_rate=self.sample_rate,
            segment_seconds=self.segment_seconds,
            silence_dbfs=self.silence_dbfs,
            min_confidence=self.min_confidence,
        )

    def fetch_settings(self) -> FetchSettings:
        return FetchSettings(max_bytes=self.max_download_bytes,
                             timeout_s=self.download_timeout_s,
                             socket_timeout_s=self.download_socket_timeout_s,
                             max_duration_s=self.max_duration_s,
                             allowlist=tuple(self.url_allowlist))

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'tonewire.db'}"

    @property
    def heap_retain_bytes(self) -> int:
        return self.heap_retain_mb * 1024 * 1024

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"
