"""Settings: the one place the environment is read (prefix ``TONEWIRE_``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tonewire.analysis.options import AnalysisOptions


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

    # Live sessions
    session_idle_ttl_s: float = Field(default=90.0, gt=0,
                                      description="end sessions idle (no subscriber, no ingest)")
    max_sessions: int = Field(default=1000, ge=1, description="live sessions per process")
    max_frame_bytes: int = Field(default=64 * 1024, ge=2, le=16 * 1024 * 1024,
                                 description="largest ingest frame; larger closes with 1009")
    sidecar_url: str | None = Field(default=None, description="classifier=sidecar service")
    sidecar_timeout_s: float = Field(default=5.0, gt=0)
    live_workers: int = Field(default=1, ge=1, le=64,
                              description="processes for live speech analysis")

    # Delivery
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed cross-origin")
    subscriber_buffer: int = Field(default=2048, ge=16,
                                   description="events a subscriber may fall behind")
    sse_heartbeat_s: float = Field(default=15.0, gt=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> object:
        if isinstance(v, str):
            return [o.strip() for o in v.split(",") if o.strip()]
        return v

    def analysis_options(self) -> AnalysisOptions:
        return AnalysisOptions(
            sample_rate=self.sample_rate,
            segment_seconds=self.segment_seconds,
            silence_dbfs=self.silence_dbfs,
            min_confidence=self.min_confidence,
        )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'tonewire.db'}"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"
