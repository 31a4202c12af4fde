"""Analysis parameters: one frozen value, hashable, so equal options mean equal results."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    sample_rate: int = 22050
    """Analysis rate in Hz. Band edges above ``sample_rate / 2`` are reported where they stop."""
    segment_seconds: float = 1.0
    n_fft: int = 2048
    hop_length: int = 512
    silence_dbfs: float = -60.0
    """A segment whose RMS level is below this is silent: no labels, zero activations."""
    min_confidence: float = 0.3
    """Labels (emotion) below this confidence are not emitted (``primary`` is ``None``)."""

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate <= 96000:
            raise ValueError("sample_rate must be within 8000..96000 Hz")
        if not 0.05 < self.segment_seconds <= 60.0:
            raise ValueError("segment_seconds must be within (0.05, 60]")
        if self.hop_length <= 0 or self.n_fft < self.hop_length or self.n_fft % 2:
            raise ValueError("need an even n_fft >= hop_length > 0")

    @property
    def segment_samples(self) -> int:
        return max(1, round(self.segment_seconds * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
