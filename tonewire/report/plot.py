"""The analysis as a picture: sections, bands, loudness, emotion and tempo on one time axis.

Needs the optional ``plot`` extra (matplotlib), imported only when a plot is drawn. Everything is
drawn on a private :class:`matplotlib.figure.Figure` with the Agg canvas: no pyplot, no global
rc changes. Per-segment data are drawn as a few vectorised artists (one mesh, one collection, a
line each), so an hour of one-second segments draws about as fast as a minute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import numpy.typing as npt

from tonewire.analysis.results import Emotion, Segment, TrackSummary
from tonewire.errors import TonewireError

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FloatArray = npt.NDArray[np.float64]
LegendLoc = Literal["upper left", "lower right"]

BAND_NAMES: Final = ("bass", "low-mid", "mid", "high-mid", "high")

EMOTION_COLOURS: Final[dict[str, str]] = {
    # From Okabe & Ito's and Paul Tol's colour-blind-safe palettes. Roughly: warm = positive and
    # aroused, blue = sad, green = calm, dark = negative and aroused.
    "happy": "#E69F00",
    "uplifting": "#DDCC77",
    "excited": "#D55E00",
    "energetic": "#CC79A7",
    "angry": "#882255",
    "tense": "#999933",
    "fearful": "#332288",
    "sad": "#0072B2",
    "melancholic": "#56B4E9",
    "calm": "#44AA99",
    "peaceful": "#117733",
}
"""A fixed colour per emotion category, so an emotion looks the same on every plot."""

UNCLEAR_COLOUR: Final = "#DADADA"
"""Sounding segments without a category (confidence under the floor). Silence stays white."""

_INK: Final = "#222222"
_SOFT: Final = "#666666"
_FAINT: Final = "#9A9A9A"
_GRID: Final = "#EBEBEB"
_SECTION: Final = "#555555"
_LOUD_ST: Final = "#1F4E79"
_LOUD_SEG: Final = "#9DB9D5"
_VALENCE: Final = "#C0392B"
_AROUSAL: Final = "#2C3E50"
_TEMPO: Final = "#333333"
_BEAT: Final = "#DDDDDD"
_BANDS_CMAP: Final = "YlGnBu"
_DB_RANGE: Final = (-80.0, 0.0)
_GATE_LUFS: Final = -70.0
_DASH: Final = (0, (4, 3))
_MINUS: Final = "\N{MINUS SIGN}"
_SECONDS: Final = (0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30)
_MINUTES: Final = (1, 2, 5, 10, 15, 20, 30, 60, 120, 240)
_TIME_STEPS: Final = (*_SECONDS, *(60 * m for m in _MINUTES))
"""Candidate tick spacings, seconds: the first that gives at most ten ticks wins."""
_LINES_PER_INCH: Final = 2.5
"""Above this density section boundaries are marked in the section lane only."""


def plot_analysis(
    segments: Sequence[Segment],
    summary: TrackSummary,
    *,
    title: str,
    out: Path,
    dpi: int = 120,
) -> None:
    """Draw the analysis of one track to ``out`` (PNG; other suffixes matplotlib writes work).

    Panels share the time axis: the sections, the five bands as a heatmap, loudness (segment
    and short-term LUFS, integrated as a dashed reference), the heuristic emotion per segment
    with valence and arousal, and local tempo over beat strength. Section boundaries cross every
    panel. The file is written whole or not at all.

    Raises :class:`~tonewire.errors.TonewireError`: code ``PLOT_UNAVAILABLE`` when matplotlib
    is not installed, ``INVALID_OPTION`` for a suffix matplotlib cannot write.
    """
    try:
        import matplotlib  # noqa: F401  (the package first: a stale submodule must not mask it)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise TonewireError(
            "drawing a plot needs matplotlib: pip install 'tonewire[plot]'",
            code="PLOT_UNAVAILABLE",
        ) from None

    out = Path(out)
    fmt = out.suffix.lower().lstrip(".") or "png"
    fig = Figure(figsize=(14.0, 9.6), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    supported = canvas.get_supported_filetypes()
    if fmt not in supported:
        raise TonewireError(
            f"cannot draw {out.name!r}: use a suffix matplotlib writes ({', '.join(supported)})",
            code="INVALID_OPTION",
        )

    d = _Columns(sorted(segments, key=lambda s: s.start))
    end = max(summary.duration, float(d.edges[-1]))
    _draw(fig, d, summary, title=title, end=end if end > 0 else 1.0)

    tmp = out.with_name(out.name + ".tmp")
    try:
        fig.savefig(tmp, format=fmt, dpi=dpi, facecolor="white")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


# -- data -----------------------------------------------------------------------------------


class _Columns:
    """The segments as arrays, one entry per segment."""

    def __init__(self, segs: Sequence[Segment]) -> None:
        n = self.n = len(segs)
        self.start = np.array([s.start for s in segs], dtype=np.float64)
        self.end = np.array([s.end for s in segs], dtype=np.float64)
        self.edges = np.append(self.start, self.end[-1]) if n else np.zeros(1)
        """Cell edges for the step plots and the heatmap, ``n + 1``."""
        self.mid = (self.start + self.end) / 2.0
        self.silent = np.array([s.silent for s in segs], dtype=bool)
        self.bands_db = np.array([s.bands_db for s in segs], dtype=np.float64).reshape(n, 5)
        self.lufs = self._gated([s.lufs for s in segs])
        self.lufs_st = self._gated([s.lufs_short_term for s in segs])
        self.tempo = np.array(
            [np.nan if s.tempo_bpm is None else s.tempo_bpm for s in segs], dtype=np.float64
        )
        self.beat = np.clip(np.array([s.beat_strength for s in segs], dtype=np.float64), 0, 1)
        self.emotions: list[Emotion] = [s.emotion for s in segs]
        self.valence = self._sounding([e.valence for e in self.emotions])
        self.arousal = self._sounding([e.arousal for e in self.emotions])

    @staticmethod
    def _gated(values: list[float]) -> FloatArray:
        """LUFS with everything under the -70 LUFS absolute gate as NaN (a gap in the line)."""
        v = np.array(values, dtype=np.float64)
        return np.where(v >= _GATE_LUFS, v, np.nan)

    def _sounding(self, values: list[float]) -> FloatArray:
        return np.where(self.silent, np.nan, np.array(values, dtype=np.float64))


# -- text -----------------------------------------------------------------------------------


def _minus(text: str) -> str:
    """Typographic minus signs, like matplotlib's own tick labels."""
    return text.replace("-", _MINUS)


def _clock(seconds: float, *, hours: bool = False, decimals: int = 0) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour or with ``hours``), ``m:ss.d`` with ``decimals``."""
    seconds = max(seconds, 0.0)
    if decimals:
        m, s = divmod(round(seconds, decimals), 60.0)
        return f"{int(m)}:{s:0{3 + decimals}.{decimals}f}"
    total = round(seconds)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if hours or h else f"{m}:{s:02d}"


def _hz(f: float) -> str:
    if f >= 1000:
        k = f / 1000.0
        return f"{k:.0f}" if abs(k - round(k)) < 0.05 or k >= 10 else f"{k:.1f}"
    return f"{f:.0f}"


def _band_labels(summary: TrackSummary) -> list[str]:
    """``"high  4–11 kHz"``...: the edges as analysed (the top one is the analysis Nyquist)."""
    if len(summary.band_edges_hz) != len(BAND_NAMES):
        return list(BAND_NAMES)
    labels = []
    for name, (lo, hi) in zip(BAND_NAMES, summary.band_edges_hz, strict=True):
        if lo >= 1000:
            span = f"{_hz(lo)}–{_hz(hi)} kHz"
        elif hi >= 1000:
            span = f"{_hz(lo)} Hz–{_hz(hi)} kHz"
        else:
            span = f"{_hz(lo)}–{_hz(hi)} Hz"
        labels.append(f"{name}  {span}")
    return labels


def _subtitle(summary: TrackSummary) -> str:
    bits = [_clock(summary.duration, decimals=1 if summary.duration < 10 else 0)]
    if summary.silent:
        bits.append("silent: no level above the silence threshold")
        return "   ·   ".join(bits)
    bits.append(f"{summary.tempo.bpm:.1f} BPM" if summary.tempo.bpm else "no steady beat")
    bits.append(summary.key.name or "no clear key")
    lufs = summary.integrated_lufs
    bits.append(_minus(f"{lufs:.1f} LUFS integrated" if lufs is not None else "below -70 LUFS"))
    e = summary.overall_emotion
    bits.append(
        f"{e.primary} ({e.confidence:.0%}, heuristic)"
        if e.primary
        else "no clear emotion (heuristic)"
    )
    return "   ·   ".join(bits)


# -- layout helpers -------------------------------------------------------------------------


def _time_step(span: float) -> float:
    return float(next((s for s in _TIME_STEPS if span / s <= 10), _TIME_STEPS[-1]))


def _style(ax: Axes, *, grid: bool = True) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#BBBBBB")
        ax.spines[side].set_linewidth(0.8)
    ax.tick_params(colors=_SOFT, labelsize=8.5, length=3, width=0.6)
    if grid:
        ax.grid(True, axis="y", color=_GRID, linewidth=0.7)
    ax.set_axisbelow(True)


def _panel_title(ax: Axes, text: str, note: str = "", *, colour: str = _INK) -> None:
    """Bold title at the top left, an optional quiet note right after it."""
    t = ax.set_title(text, loc="left", fontsize=10, color=colour, fontweight="bold", pad=5)
    if note:
        ax.annotate(
            note,
            xy=(1.0, 0.0),
            xycoords=t,
            xytext=(7.0, 0.0),
            textcoords="offset points",
            fontsize=8.5,
            color=_FAINT,
            va="bottom",
            annotation_clip=False,
        )


def _line_key(ax: Axes, handles: Sequence[Artist]) -> None:
    """A one-row legend for a panel's lines, at its top right above the plot."""
    _legend(
        ax,
        handles,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.03),
        ncol=len(handles),
        columnspacing=1.4,
    )


def _legend(
    ax: Axes,
    handles: Sequence[Artist],
    *,
    loc: LegendLoc = "upper left",
    bbox_to_anchor: tuple[float, float] | None = None,
    ncol: int = 1,
    columnspacing: float = 0.8,
) -> None:
    if handles:
        ax.legend(
            handles=handles,
            loc=loc,
            bbox_to_anchor=bbox_to_anchor,
            ncol=ncol,
            columnspacing=columnspacing,
            frameon=False,
            fontsize=8.5,
            labelcolor=_SOFT,
            handlelength=1.6,
            handleheight=0.9,
            borderaxespad=0.0,
            borderpad=0.0,
            labelspacing=0.45,
            handletextpad=0.5,
        )


def _note(ax: Axes, text: str) -> None:
    """A quiet centred remark where a panel has nothing to draw."""
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=9,
        color=_FAINT,
        style="italic",
        zorder=6,
    )


# -- drawing --------------------------------------------------------------------------------


def _draw(fig: Figure, d: _Columns, summary: TrackSummary, *, title: str, end: float) -> None:
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    fig.text(
        0.045,
        0.963,
        title or "untitled",
        fontsize=17,
        color=_INK,
        fontweight="bold",
        ha="left",
        va="baseline",
    )
    fig.text(0.045, 0.935, _subtitle(summary), fontsize=10.5, color=_SOFT, ha="left", va="baseline")

    gs = fig.add_gridspec(
        6,
        2,
        height_ratios=(0.28, 1.55, 1.15, 0.45, 0.95, 0.85),
        width_ratios=(1.0, 0.12),
        left=0.115,
        right=0.985,
        top=0.893,
        bottom=0.065,
        hspace=0.55,
        wspace=0.06,
    )
    ax_sec = fig.add_subplot(gs[0, 0])
    panels = [fig.add_subplot(gs[i, 0], sharex=ax_sec) for i in range(1, 6)]
    ax_band, ax_loud, ax_emo, ax_va, ax_tempo = panels
    key_emo = fig.add_subplot(gs[3:, 1])
    key_emo.set_axis_off()

    step = _time_step(end)
    hours = end >= 3600
    decimals = 0 if step >= 1 else 1 if step >= 0.1 else 2
    ax_sec.set_xlim(0.0, end)
    ax_tempo.xaxis.set_major_locator(MultipleLocator(step))
    ax_tempo.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _pos: _clock(x, hours=hours, decimals=decimals))
    )
    ax_tempo.set_xlabel("time (h:mm:ss)" if hours else "time (m:ss)", fontsize=8.5, color=_SOFT)
    for ax in (ax_sec, *panels[:-1]):
        ax.tick_params(axis="x", labelbottom=False)

    _draw_sections(fig, ax_sec, summary, end)
    _draw_bands(fig, ax_band, d, summary)
    _draw_loudness(ax_loud, d, summary)
    _draw_emotion(ax_emo, ax_va, key_emo, d)
    _draw_tempo(ax_tempo, d, summary)

    starts = [s.start for s in summary.sections if 0.0 < s.start < end]
    width_in = ax_band.get_position().width * fig.get_figwidth()
    if starts and len(starts) <= _LINES_PER_INCH * width_in:
        for ax in panels:
            ax.vlines(
                starts,
                0.0,
                1.0,
                transform=ax.get_xaxis_transform(),
                colors=_SECTION,
                linewidth=0.9,
                alpha=0.75,
                zorder=5,
            )


def _draw_sections(fig: Figure, ax: Axes, summary: TrackSummary, end: float) -> None:
    """A lane of alternating grey blocks, one per section, labelled "n  tempo · key" where it
    fits (the number alone where only that fits)."""
    from matplotlib.collections import PolyCollection

    ax.set_axis_off()
    ax.set_ylim(0.0, 1.0)
    sections = summary.sections
    if not sections:
        _panel_title(ax, "Sections: none found", colour=_FAINT)
        return
    _panel_title(ax, "Sections", "tempo · key per section")
    verts = [((s.start, 0.0), (s.start, 1.0), (s.end, 1.0), (s.end, 0.0)) for s in sections]
    shades = ["#F0F0F0" if i % 2 == 0 else "#E2E2E2" for i in range(len(sections))]
    ax.add_collection(PolyCollection(verts, facecolors=shades, edgecolors="white", linewidths=1.0))
    lane_in = ax.get_position().width * fig.get_figwidth()
    inset = 0.06 / lane_in * end
    for i, s in enumerate(sections):
        room_in = (min(s.end, end) - s.start) / end * lane_in - 0.12
        tempo = f"{s.tempo_bpm:.0f} BPM" if s.tempo_bpm else "no beat"
        for label in (f"{i + 1}   {tempo} · {s.key.name or 'no key'}", str(i + 1)):
            if len(label) * 8.5 * 0.6 / 72 < room_in:  # rough width of DejaVu Sans at 8.5 pt
                ax.text(
                    s.start + inset, 0.5, label, fontsize=8.5, color=_INK, ha="left", va="center"
                )
                break


def _draw_bands(fig: Figure, ax: Axes, d: _Columns, summary: TrackSummary) -> None:
    from matplotlib.colors import Normalize

    _style(ax, grid=False)
    _panel_title(ax, "Frequency bands", "level per band, dBFS")
    ax.set_ylim(0.0, 5.0)
    ax.set_yticks(np.arange(5) + 0.5, _band_labels(summary))
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    if not d.n:
        _note(ax, "no segments")
        return
    mesh = ax.pcolormesh(
        d.edges,
        np.arange(6.0),
        np.clip(d.bands_db.T, *_DB_RANGE),
        cmap=_BANDS_CMAP,
        norm=Normalize(*_DB_RANGE),
        shading="flat",
        rasterized=True,
    )
    cax = ax.inset_axes((1.02, 0.0, 0.012, 1.0))
    cbar = fig.colorbar(mesh, cax=cax, ticks=[-80, -60, -40, -20, 0])
    cbar.ax.tick_params(labelsize=8, colors=_SOFT, length=2)
    cbar.outline.set_visible(False)
    cbar.ax.set_ylabel("dBFS", fontsize=8, color=_SOFT, labelpad=2)
    if d.silent.all():
        _note(ax, "silent")


def _draw_loudness(ax: Axes, d: _Columns, summary: TrackSummary) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MultipleLocator

    _style(ax)
    _panel_title(ax, "Loudness", _minus("LUFS; gaps are below -70"))
    lufs = summary.integrated_lufs
    shown = np.concatenate([d.lufs, d.lufs_st, [np.nan if lufs is None else lufs]])
    finite = shown[np.isfinite(shown)]
    if finite.size:
        hi = min(math.ceil((float(finite.max()) + 2.0) / 6.0) * 6.0, 6.0)
        lo = max(min(math.floor((float(finite.min()) - 2.0) / 6.0) * 6.0, hi - 18.0), -72.0)
    else:
        lo, hi = -72.0, -12.0
    ax.set_ylim(lo, hi)
    ax.yaxis.set_major_locator(MultipleLocator(6.0 if hi - lo <= 36.0 else 12.0))

    handles: list[Artist] = []
    if np.isfinite(d.lufs).any():
        ax.stairs(d.lufs, d.edges, color=_LOUD_SEG, linewidth=1.1, baseline=None)
        handles.append(Line2D([], [], color=_LOUD_SEG, linewidth=2.0, label="segment"))
    if np.isfinite(d.lufs_st).any():
        ax.plot(
            d.end,
            d.lufs_st,
            color=_LOUD_ST,
            linewidth=1.6,
            marker="o" if d.n <= 3 else "",
            markersize=3.5,
        )
        handles.append(Line2D([], [], color=_LOUD_ST, linewidth=1.6, label="short-term (3 s)"))
    if lufs is not None:
        ax.axhline(lufs, color=_INK, linewidth=1.0, linestyle=_DASH)
        handles.append(
            Line2D(
                [],
                [],
                color=_INK,
                linewidth=1.0,
                linestyle=_DASH,
                label=_minus(f"integrated {lufs:.1f} LUFS"),
            )
        )
    if not finite.size:
        _note(ax, _minus("silent: everything below -70 LUFS") if d.n else "no segments")
    _line_key(ax, handles)


def _emotion_colours(d: _Columns) -> tuple[FloatArray, FloatArray, list[str], bool]:
    """Per segment: the category colour (grey when unclear, white when silent) and confidence
    (0 unless a category was given); the categories present in palette order; and whether any
    sounding segment is unclear."""
    from matplotlib.colors import to_rgb

    rgb = np.ones((d.n, 3))
    confidence = np.zeros(d.n)
    present: set[str] = set()
    unclear = False
    for i, (e, quiet) in enumerate(zip(d.emotions, d.silent, strict=True)):
        if quiet:
            continue
        if e.primary is None:
            rgb[i] = to_rgb(UNCLEAR_COLOUR)
            unclear = True
            continue
        present.add(e.primary)
        rgb[i] = to_rgb(EMOTION_COLOURS.get(e.primary, UNCLEAR_COLOUR))
        confidence[i] = min(max(e.confidence, 0.0), 1.0)
    order = [k for k in EMOTION_COLOURS if k in present]
    return rgb, confidence, order + sorted(present.difference(EMOTION_COLOURS)), unclear


def _cells(start: FloatArray, end: FloatArray, top: FloatArray) -> list[FloatArray]:
    """Rectangles ``[start, end] x [0, top]`` as polygon vertices, for one PolyCollection."""
    zero = np.zeros_like(start)
    corners = [(start, zero), (start, top), (end, top), (end, zero)]
    return list(np.stack([np.column_stack(c) for c in corners], axis=1))


def _draw_emotion(ax: Axes, ax_va: Axes, key: Axes, d: _Columns) -> None:
    from matplotlib.collections import PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    _style(ax, grid=False)
    _panel_title(ax, "Emotion", "heuristic; colour = category, bar height = confidence")
    ax.set_ylim(0.0, 1.0)
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    _style(ax_va)
    _panel_title(ax_va, "Valence & arousal", _minus("heuristic, -1 … 1"))
    ax_va.set_ylim(-1.08, 1.08)
    ax_va.set_yticks([-1.0, 0.0, 1.0])
    ax_va.axhline(0.0, color="#CCCCCC", linewidth=0.8)
    if not d.n:
        _note(ax, "no segments")
        _note(ax_va, "no segments")
        return

    rgb, confidence, present, unclear = _emotion_colours(d)
    # A pale wash of the category over the whole height, and a bar as tall as the confidence
    # in its full colour: hue stays exact at any confidence, so categories never blur together.
    # Edges in the face colour close the hairline gaps antialiasing leaves between cells.
    wash = np.where(confidence[:, None] > 0, 1.0 - 0.25 * (1.0 - rgb), rgb)
    ax.add_collection(
        PolyCollection(
            _cells(d.start, d.end, np.ones(d.n)),
            facecolors=wash,
            edgecolors=wash,
            linewidths=0.3,
            rasterized=True,
        )
    )
    bars = confidence > 0
    if bars.any():
        ax.add_collection(
            PolyCollection(
                _cells(d.start[bars], d.end[bars], confidence[bars]),
                facecolors=rgb[bars],
                edgecolors=rgb[bars],
                linewidths=0.3,
                rasterized=True,
            )
        )
    handles: list[Artist] = [
        Patch(facecolor=EMOTION_COLOURS.get(k, UNCLEAR_COLOUR), edgecolor="none", label=k)
        for k in present
    ]
    if unclear:
        handles.append(Patch(facecolor=UNCLEAR_COLOUR, edgecolor="none", label="unclear"))
    _legend(key, handles)

    if np.isfinite(d.valence).any():
        mark = "o" if d.n <= 3 else ""
        ax_va.plot(d.mid, d.valence, color=_VALENCE, linewidth=1.2, marker=mark, markersize=3.5)
        ax_va.plot(d.mid, d.arousal, color=_AROUSAL, linewidth=1.2, marker=mark, markersize=3.5)
        _line_key(
            ax_va,
            [
                Line2D([], [], color=_VALENCE, linewidth=1.4, label="valence"),
                Line2D([], [], color=_AROUSAL, linewidth=1.4, label="arousal"),
            ],
        )
    else:
        _note(ax, "silent")
        _note(ax_va, "silent")


def _draw_tempo(ax: Axes, d: _Columns, summary: TrackSummary) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MultipleLocator

    _style(ax)
    _panel_title(ax, "Tempo", "local BPM, 8 s window")
    handles: list[Artist] = []
    if d.n and d.beat.any():
        beat = ax.twinx()
        beat.set_ylim(0.0, 2.0)  # strength 1 fills the lower half: a backdrop, not a rival
        beat.set_axis_off()
        ax.set_zorder(beat.get_zorder() + 1)
        ax.patch.set_visible(False)
        beat.stairs(d.beat, d.edges, fill=True, color=_BEAT, linewidth=0)
        handles.append(Patch(facecolor=_BEAT, edgecolor="none", label="beat strength"))

    tempo = d.tempo[np.isfinite(d.tempo)]
    if tempo.size:
        lo, hi = float(tempo.min()), float(tempo.max())
        pad = max(8.0, 0.15 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), hi + pad)
        ax.plot(
            d.mid,
            d.tempo,
            color=_TEMPO,
            linewidth=1.3,
            marker="o" if d.n <= 3 else "",
            markersize=3.5,
        )
        handles.insert(0, Line2D([], [], color=_TEMPO, linewidth=1.3, label="local BPM"))
        if summary.tempo.bpm:
            ax.axhline(summary.tempo.bpm, color=_FAINT, linewidth=0.8, linestyle=_DASH)
            handles.insert(
                1,
                Line2D(
                    [],
                    [],
                    color=_FAINT,
                    linewidth=0.8,
                    linestyle=_DASH,
                    label=f"track {summary.tempo.bpm:.1f} BPM",
                ),
            )
    else:
        ax.set_ylim(60.0, 180.0)
        _note(ax, "no steady beat" if d.n else "no segments")
    span = ax.get_ylim()[1] - ax.get_ylim()[0]
    ax.yaxis.set_major_locator(
        MultipleLocator(next((s for s in (5.0, 10.0, 20.0, 40.0, 50.0) if span / s <= 5), 100.0))
    )
    _line_key(ax, handles)
