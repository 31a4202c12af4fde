"""Source to analysis: decode a file block by block and yield results as they become ready.

This is the one entry point jobs, the CLI and benchmarks share. It is a plain generator, so it
runs unchanged in a worker process; the caller decides what to keep (nothing here holds the
segments, which keeps memory flat in duration).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from threadpoolctl import threadpool_limits

from tonewire.analysis.options import AnalysisOptions
from tonewire.analysis.results import Segment, TrackSummary
from tonewire.analysis.track import TrackAnalyzer
from tonewire.audio.decode import AudioInfo, AudioReader


@dataclass(frozen=True, slots=True)
class Started:
    info: AudioInfo
    options: AnalysisOptions


@dataclass(frozen=True, slots=True)
class Progress:
    decoded_seconds: float
    fraction: float | None
    """0..1 of the declared duration, ``None`` when the container declares none."""


@dataclass(frozen=True, slots=True)
class Finished:
    summary: TrackSummary


AnalysisEvent = Started | Progress | Segment | Finished


def analyze_file(
    path: str | os.PathLike[str],
    options: AnalysisOptions | None = None,
    *,
    max_duration_s: float | None = None,
    block_seconds: float = 4.0,
    name: str | None = None,
) -> Iterator[AnalysisEvent]:
    """Yield ``Started``, then ``Progress`` and ``Segment`` events in order, then ``Finished``.

    Raises :class:`~tonewire.errors.AudioError` (possibly after some segments were yielded,
    for instance when the file turns out to be truncated).
    """
    opt = options or AnalysisOptions()
    # The matrices here are small: BLAS threads cost more in hand-offs than they save, and
    # parallelism belongs to processes (one analysis per worker).
    with threadpool_limits(limits=1, user_api="blas"), AudioReader(
            path, sample_rate=opt.sample_rate, block_seconds=block_seconds,
            max_duration_s=max_duration_s, name=name) as reader:
        info = reader.info
        yield Started(info=info, options=opt)
        analyzer = TrackAnalyzer(opt, channels=info.channels)
        declared = info.declared_seconds
        for block in reader:
            yield from analyzer.feed(block)
            done = reader.decoded_seconds
            frac = min(done / declared, 1.0) if declared else None
            yield Progress(decoded_seconds=done, fraction=frac)
        segments, summary = analyzer.finish()
        yield from segments
        yield Finished(summary=summary)
