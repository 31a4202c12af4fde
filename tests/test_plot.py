"""``plot_analysis`` draws a valid, non-blank PNG for real audio and for every edge case.

The picture itself is checked where a test can check it: the file is a PNG of the expected size,
holds a real image (not a blank canvas), and section boundaries show up as vertical lines at the
right spacing, found by rendering the same analysis with and without its sections.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from signals import SR, music_like, silence, sine, write_audio

from tonewire.analysis.results import NO_EMOTION, Section, Segment, Tempo, TrackSummary
from tonewire.analysis.tonality import NO_KEY
from tonewire.errors import TonewireError
from tonewire.pipeline import Finished, analyze_file
from tonewire.pipeline import Segment as SegmentEvent
from tonewire.report.plot import plot_analysis

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DPI = 120
SIZE_PX = (1152, 1680)
"""(height, width) of the default 14 x 9.6 inch figure at 120 dpi."""

Analysis = tuple[list[Segment], TrackSummary]


def analyse(path: Path) -> Analysis:
    segments: list[Segment] = []
    summary: TrackSummary | None = None
    for event in analyze_file(path):
        if isinstance(event, SegmentEvent):
            segments.append(event)
        elif isinstance(event, Finished):
            summary = event.summary
    assert summary is not None
    return segments, summary


def quiet_then_loud(seconds: float = 40.0, quiet_s: float = 16.0) -> np.ndarray:
    """A soft A-minor triad, then drums over loud chords (``music_like``)."""
    quiet = sum(sine(f, quiet_s, SR, amp=0.03) for f in (220.0, 261.63, 329.63))
    loud = music_like(seconds - quiet_s, bpm=128.0, sr=SR, seed=3)
    return np.concatenate([np.asarray(quiet, dtype=np.float32), loud])


@pytest.fixture(scope="module")
def track(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    """40 s analysed: a quiet passage, then a loud drum-and-chord passage."""
    path = write_audio(tmp_path_factory.mktemp("plot") / "track.wav", quiet_then_loud(), SR)
    return analyse(path)


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    """A 0.2 s tone: one short segment."""
    path = write_audio(tmp_path_factory.mktemp("plot") / "short.wav", sine(440.0, 0.2), SR)
    return analyse(path)


@pytest.fixture(scope="module")
def silent(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    """5 s of digital silence."""
    path = write_audio(tmp_path_factory.mktemp("plot") / "silent.wav", silence(5.0), SR)
    return analyse(path)


def render(
    segments: list[Segment], summary: TrackSummary, out: Path, title: str = "t"
) -> np.ndarray:
    """Draw, check the file is a sane PNG, and return it as RGB floats ``(h, w, 3)``."""
    import matplotlib.image

    plot_analysis(segments, summary, title=title, out=out, dpi=DPI)
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert 20_000 < len(data) < 4_000_000
    assert not out.with_name(out.name + ".tmp").exists()
    img = np.asarray(matplotlib.image.imread(out))
    assert img.shape[:2] == SIZE_PX
    return img[..., :3].astype(np.float64)


def assert_not_blank(img: np.ndarray, *, min_inked: float = 0.01) -> None:
    """More than a white canvas: some share of the pixels carry ink, and they vary."""
    inked = (img < 0.9).any(axis=2).mean()
    assert inked > min_inked, f"only {inked:.1%} of the pixels are drawn on"
    assert img.std() > 0.05


def colour_count(img: np.ndarray) -> int:
    return len(np.unique((img * 255).round().astype(np.uint8).reshape(-1, 3), axis=0))


def vertical_lines(a: np.ndarray, b: np.ndarray, *, min_height: float = 0.3) -> list[float]:
    """Centres (px) of the columns where ``a`` and ``b`` differ over at least ``min_height`` of
    the image height: the lines drawn in one and not the other."""
    differs = (np.abs(a - b) > 0.05).any(axis=2)
    tall = np.flatnonzero(differs.sum(axis=0) > min_height * a.shape[0])
    if tall.size == 0:
        return []
    groups = np.split(tall, np.flatnonzero(np.diff(tall) > 2) + 1)
    return [float(g.mean()) for g in groups]


def with_sections(summary: TrackSummary, starts: list[float]) -> TrackSummary:
    template = Section(
        start=0.0, end=0.0, tempo_bpm=120.0, key=summary.key, lufs=-20.0, emotion=NO_EMOTION
    )
    bounds = [*starts, summary.duration]
    return replace(
        summary,
        sections=tuple(replace(template, start=s, end=e) for s, e in itertools.pairwise(bounds)),
    )


# -- real audio -----------------------------------------------------------------------------


def test_real_track_draws_every_panel(track: Analysis, tmp_path: Path) -> None:
    segments, summary = track
    assert len(segments) == 40 and summary.integrated_lufs is not None
    img = render(segments, summary, tmp_path / "track.png", title="quiet then loud")
    assert_not_blank(img, min_inked=0.15)
    assert colour_count(img) > 500  # heatmap, emotion strip, lines: far more than text alone


def test_section_boundaries_cross_the_panels_at_their_times(
    track: Analysis, tmp_path: Path
) -> None:
    segments, summary = track
    marked = with_sections(summary, [0.0, 10.0, 20.0, 30.0])
    bare = replace(summary, sections=())
    a = render(segments, marked, tmp_path / "marked.png")
    b = render(segments, bare, tmp_path / "bare.png")
    lines = vertical_lines(a, b)
    assert len(lines) == 3, lines  # a line per boundary after the start, none at 0
    gaps = np.diff(lines)
    assert abs(gaps[0] - gaps[1]) <= 2.0, lines  # 10 s apart both times
    assert gaps[0] > 0.15 * SIZE_PX[1]  # a quarter of the time axis, not adjacent pixels


def test_analysed_sections_are_marked(track: Analysis, tmp_path: Path) -> None:
    segments, summary = track
    inner = [s.start for s in summary.sections if s.start > 0]
    assert inner, f"expected the quiet-to-loud change to start a section: {summary.sections}"
    a = render(segments, summary, tmp_path / "analysed.png")
    b = render(segments, replace(summary, sections=()), tmp_path / "bare.png")
    assert len(vertical_lines(a, b)) == len(inner)


def test_no_sections_means_no_lines(track: Analysis, tmp_path: Path) -> None:
    segments, summary = track
    bare = replace(summary, sections=())
    a = render(segments, bare, tmp_path / "a.png")
    b = render(segments, bare, tmp_path / "b.png")
    assert vertical_lines(a, b) == []
    assert np.array_equal(a, b)  # deterministic: same analysis, same pixels


# -- edge cases -----------------------------------------------------------------------------


def test_one_short_segment(short: Analysis, tmp_path: Path) -> None:
    segments, summary = short
    assert len(segments) == 1 and segments[0].end == pytest.approx(0.2, abs=0.01)
    assert_not_blank(render(segments, summary, tmp_path / "short.png"))


def test_all_silent(silent: Analysis, tmp_path: Path) -> None:
    segments, summary = silent
    assert summary.silent and summary.integrated_lufs is None and summary.tempo.bpm is None
    assert_not_blank(render(segments, summary, tmp_path / "silent.png"))


def test_no_segments(silent: Analysis, tmp_path: Path) -> None:
    _, summary = silent
    assert_not_blank(render([], summary, tmp_path / "empty.png", title=""))


def test_nothing_known(track: Analysis, tmp_path: Path) -> None:
    """No tempo, key, loudness or emotion anywhere, sections without tempo or key."""
    segments, summary = track
    blank = [replace(s, tempo_bpm=None, beat_strength=0.0, emotion=NO_EMOTION) for s in segments]
    unknown = replace(
        with_sections(summary, [0.0, 20.0]),
        tempo=Tempo(bpm=None, confidence=0.0),
        key=NO_KEY,
        integrated_lufs=None,
        loudness_range_lu=None,
        overall_emotion=NO_EMOTION,
    )
    unknown = replace(
        unknown,
        sections=tuple(replace(s, tempo_bpm=None, key=NO_KEY, lufs=None) for s in unknown.sections),
    )
    assert_not_blank(render(blank, unknown, tmp_path / "unknown.png"))


def test_hour_long_track_draws_quickly(track: Analysis, tmp_path: Path) -> None:
    """3600 segments and 180 sections: vectorised drawing, so seconds rather than minutes."""
    segments, summary = track
    copies = 3600 // len(segments)
    span = summary.duration
    long = [
        replace(
            s, index=k * len(segments) + s.index, start=s.start + k * span, end=s.end + k * span
        )
        for k in range(copies)
        for s in segments
    ]
    starts = [k * span + 20.0 * j for k in range(copies) for j in (0, 1)]
    summary = with_sections(replace(summary, duration=copies * span, n_segments=len(long)), starts)
    t0 = time.perf_counter()
    img = render(long, summary, tmp_path / "hour.png")
    assert time.perf_counter() - t0 < 30.0
    assert len(long) == 3600
    assert_not_blank(img, min_inked=0.15)


# -- errors and hygiene ---------------------------------------------------------------------


def test_missing_matplotlib_is_a_clear_error(
    track: Analysis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "never.png"
    with pytest.raises(TonewireError) as info:
        plot_analysis(*track, title="t", out=out)
    assert info.value.code == "PLOT_UNAVAILABLE"
    assert "pip install 'tonewire[plot]'" in info.value.message
    assert not out.exists()


def test_unknown_suffix_is_rejected(track: Analysis, tmp_path: Path) -> None:
    with pytest.raises(TonewireError) as info:
        plot_analysis(*track, title="t", out=tmp_path / "plot.nope")
    assert info.value.code == "INVALID_OPTION"
    assert list(tmp_path.iterdir()) == []


def test_leaves_global_matplotlib_state_alone(track: Analysis, tmp_path: Path) -> None:
    import matplotlib

    before = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    plot_analysis(*track, title="t", out=tmp_path / "p.png")
    assert dict(matplotlib.rcParams) == before
    assert matplotlib.get_backend() == backend
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []  # no figure registered with pyplot
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]


def test_cli_writes_the_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tonewire.cli import main

    wav = write_audio(tmp_path / "song.wav", quiet_then_loud(12.0, 4.0), SR)
    out = tmp_path / "song.png"
    assert main(["analyze", str(wav), "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert f"wrote {out}" in capsys.readouterr().out
