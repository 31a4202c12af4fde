"""What the analysis produces: one :class:`Segment` per segment, one :class:`TrackSummary`.

Plain frozen dataclasses of Python floats (no numpy scalars), so they pickle across a process
pool and encode to JSON without surprises. Wire shapes (camelCase) live in ``tonewire.report``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tonewire.analysis.tonality import Key


@dataclass(frozen=True, slots=True)
class Emotion:
    primary: str | None
    """One of the eleven categories, or ``None`` for silence or when under the floor."""
    confidence: float
    valence: float
    """-1 (negative) .. 1 (positive)."""
    arousal: float
    """-1 (calm) .. 1 (excited)."""


NO_EMOTION = Emotion(primary=None, confidence=0.0, valence=0.0, arousal=0.0)


@dataclass(frozen=True, slots=True)
class Segment:
    index: int
    start: float
    """Seconds."""
    end: float
    """Seconds; the last segment keeps its true (possibly shorter) end."""
    silent: bool
    bands: tuple[float, float, float, float, float]
    """bass, low-mid, mid, high-mid, high on a fixed 0..1 scale: (dBFS + 80) / 80, clipped."""
    bands_db: tuple[float, float, float, float, float]
    """Band levels, dBFS (a full-scale sine in the band reads 0)."""
    rms: float
    """Linear RMS of the mono mix, 0..1."""
    rms_dbfs: float
    peak_dbfs: float
    lufs: float
    """Loudness of the segment itself (ungated BS.1770 over its duration)."""
    lufs_short_term: float
    """BS.1770 short-term loudness: the 3 s ending at ``end``."""
    centroid_hz: float
    rolloff_hz: float
    """Frequency under which 85 % of the segment's spectral energy lies."""
    flatness: float
    """Spectral flatness 0 (tonal) .. 1 (white noise)."""
    zero_crossing_rate: float
    """Sign changes per sample."""
    tempo_bpm: float | None
    """Local tempo from the 8 s around the segment, ``None`` without a regular pulse."""
    beat_strength: float
    """Periodicity of the onset envelope at the local tempo, 0..1."""
    onset_strength: float
    """Mean onset power flux (square root of full-scale power rise per frame)."""
    chroma: tuple[float, ...]
    """Energy per pitch class C..B, the largest scaled to 1 (all 0 when silent)."""
    brainwaves: tuple[float, float, float, float, float]
    """delta, theta, alpha, beta, gamma shares of envelope modulation; sum to 1 (0 if none)."""
    brain_regions: tuple[float, float, float, float, float, float, float]
    emotion: Emotion


@dataclass(frozen=True, slots=True)
class Tempo:
    bpm: float | None
    confidence: float


@dataclass(frozen=True, slots=True)
class Section:
    start: float
    end: float
    tempo_bpm: float | None
    key: Key
    lufs: float | None
    emotion: Emotion


@dataclass(frozen=True, slots=True)
class TrackSummary:
    duration: float
    sample_rate: int
    segment_seconds: float
    n_segments: int
    tempo: Tempo
    beats: tuple[float, ...]
    """Beat times, seconds."""
    key: Key
    integrated_lufs: float | None
    """BS.1770 gated integrated loudness; ``None`` when everything is below the -70 LUFS gate."""
    loudness_range_lu: float | None
    peak_dbfs: float
    overall_emotion: Emotion
    sections: tuple[Section, ...]
    band_edges_hz: tuple[tuple[float, float], ...]
    """The bands as analysed: the top edge stops at Nyquist of the analysis rate."""
    silent: bool
    warnings: tuple[str, ...] = field(default=())
