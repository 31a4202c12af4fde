"""Settings: the one place the environment is read (prefix ``TONEWIRE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tonewire.analysis.options import AnalysisOptions


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TONEWIRE_", extra="ignore")

    data_dir: Path = Field(default=Path("./tonewire-data"), description="SQLite and temp files")

    # Analysis
    sample_rate: int = Field(default=22050, ge=8000, le=96000, description="Analysis rate, Hz")
    segment_seconds: float = Field(default=1.0, gt=0.05, le=60.0)
    max_duration_s: float = Field(default=4 * 3600.0, gt=0, description="Longest input accepted")
    silence_dbfs: float = Field(default=-60.0, le=0, description="Segments below are silent")
    min_confidence: float = Field(default=0.3, ge=0, le=1, description="Label confidence floor")

    def analysis_options(self) -> AnalysisOptions:
        return AnalysisOptions(
            sample_rate=self.sample_rate,
            segment_seconds=self.segment_seconds,
            silence_dbfs=self.silence_dbfs,
            min_confidence=self.min_confidence,
        )
