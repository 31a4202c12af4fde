"""A short human summary of a track analysis, for the terminal."""

from __future__ import annotations

from tonewire.analysis.results import Emotion, TrackSummary


def format_duration(seconds: float) -> str:
    m, s = divmod(seconds, 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def _emotion(e: Emotion) -> str:
    if e.primary is None:
        return "no clear emotion (heuristic confidence too low)" if e.confidence else "none"
    return f"{e.primary} ({e.confidence:.0%} heuristic confidence)"


def summary_text(t: TrackSummary, *, title: str) -> str:
    lines = [f"{title}  ·  {format_duration(t.duration)}"]
    if t.silent:
        lines.append("  silent: no level above the silence threshold")
        return "\n".join(lines)
    tempo = (f"{t.tempo.bpm:.1f} BPM ({t.tempo.confidence:.0%} confidence)"
             if t.tempo.bpm else "no steady beat")
    key = f"{t.key.name} ({t.key.confidence:.0%} confidence)" if t.key.name else "no clear key"
    loud = (f"{t.integrated_lufs:.1f} LUFS integrated, peak {t.peak_dbfs:.1f} dBFS"
            if t.integrated_lufs is not None else f"below -70 LUFS, peak {t.peak_dbfs:.1f} dBFS")
    if t.loudness_range_lu is not None:
        loud += f", range {t.loudness_range_lu:.1f} LU"
    lines += [f"  tempo     {tempo}", f"  key       {key}", f"  loudness  {loud}",
              f"  emotion   {_emotion(t.overall_emotion)}"]
    lines.append(f"  sections  {len(t.sections)}")
    for s in t.sections:
        bits = [f"{format_duration(s.start)}-{format_duration(s.end)}"]
        bits.append(f"{s.tempo_bpm:.0f} BPM" if s.tempo_bpm else "no beat")
        bits.append(s.key.name or "no key")
        bits.append(f"{s.lufs:.1f} LUFS" if s.lufs is not None else "quiet")
        if s.emotion.primary:
            bits.append(s.emotion.primary)
        lines.append("    " + "  ·  ".join(bits))
    for w in t.warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)
