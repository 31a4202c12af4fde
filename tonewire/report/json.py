"""The analysis as JSON, in the original job protocol's camelCase shape plus tonewire's fields.

Pure encoders: dataclasses in, plain dicts out (only str, float, int, bool, None, list, dict),
so every transport serialises them the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from tonewire.analysis.filterbanks import PITCH_CLASSES
from tonewire.analysis.results import Emotion, Section, Segment, TrackSummary
from tonewire.analysis.tonality import Key

BAND_KEYS: Final = ("bass", "lowMid", "mid", "highMid", "high")
WAVE_KEYS: Final = ("delta", "theta", "alpha", "beta", "gamma")
REGION_KEYS: Final = ("auditoryCortex", "amygdala", "hippocampus", "nucleusAccumbens",
                      "motorCortex", "prefrontalCortex", "basalGanglia")
SCHEMA_VERSION: Final = 1


def emotion_json(e: Emotion) -> dict[str, Any]:
    return {"primary": e.primary, "confidence": e.confidence, "valence": e.valence,
            "arousal": e.arousal}


def key_json(k: Key) -> dict[str, Any]:
    return {"tonic": k.tonic, "mode": k.mode, "name": k.name, "confidence": k.confidence}


def segment_json(s: Segment) -> dict[str, Any]:
    return {
        "index": s.index,
        "startTime": s.start,
        "endTime": s.end,
        "silent": s.silent,
        "frequencies": dict(zip(BAND_KEYS, s.bands, strict=True)),
        "frequenciesDb": dict(zip(BAND_KEYS, s.bands_db, strict=True)),
        "brainRegions": dict(zip(REGION_KEYS, s.brain_regions, strict=True)),
        "brainwaves": dict(zip(WAVE_KEYS, s.brainwaves, strict=True)),
        "emotion": emotion_json(s.emotion),
        "energy": s.rms,
        "loudness": {"rmsDbfs": s.rms_dbfs, "peakDbfs": s.peak_dbfs, "lufs": s.lufs,
                     "shortTermLufs": s.lufs_short_term},
        "spectral": {"centroid": s.centroid_hz, "rolloff": s.rolloff_hz,
                     "flatness": s.flatness},
        "zeroCrossingRate": s.zero_crossing_rate,
        "rhythm": {"tempo": s.tempo_bpm, "beatStrength": s.beat_strength,
                   "onsetStrength": s.onset_strength},
        "chroma": list(s.chroma),
    }


def section_json(s: Section) -> dict[str, Any]:
    return {"startTime": s.start, "endTime": s.end, "tempo": s.tempo_bpm, "key": key_json(s.key),
            "lufs": s.lufs, "emotion": emotion_json(s.emotion)}


def summary_json(t: TrackSummary) -> dict[str, Any]:
    """Track-level fields (everything but identity, segments and time of analysis)."""
    return {
        "duration": t.duration,
        "overallEmotion": emotion_json(t.overall_emotion),
        "tempo": {"bpm": t.tempo.bpm, "confidence": t.tempo.confidence},
        "beats": list(t.beats),
        "key": key_json(t.key),
        "loudness": {"integratedLufs": t.integrated_lufs, "loudnessRange": t.loudness_range_lu,
                     "peakDbfs": t.peak_dbfs},
        "sections": [section_json(s) for s in t.sections],
        "silent": t.silent,
        "warnings": list(t.warnings),
        "parameters": {
            "sampleRate": t.sample_rate,
            "segmentSeconds": t.segment_seconds,
            "bandEdges": {k: list(v) for k, v in zip(BAND_KEYS, t.band_edges_hz, strict=True)},
            "pitchClasses": list(PITCH_CLASSES),
            "schemaVersion": SCHEMA_VERSION,
        },
    }


def analysis_json(
    *,
    analysis_id: str,
    video: dict[str, Any],
    segments: Iterable[dict[str, Any]],
    summary: TrackSummary,
    analyzed_at: str,
) -> dict[str, Any]:
    """The complete analysis: ``{id, video, overallEmotion, segments, analyzedAt, ...}``.

    ``video`` is ``{id, title, duration, thumbnailUrl}`` (for a file: a content hash, its name,
    its duration and ``None``). ``segments`` are already-encoded segment dicts, so a caller
    that stored them as JSON does not decode and re-encode them.
    """
    out: dict[str, Any] = {"id": analysis_id, "video": video}
    track = summary_json(summary)
    out["overallEmotion"] = track.pop("overallEmotion")
    out["segments"] = list(segments)
    out["analyzedAt"] = analyzed_at
    out.update(track)
    return out
