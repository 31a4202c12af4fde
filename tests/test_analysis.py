"""The analysis engine on signals with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import signals as S

from tonewire.analysis import loudness as ld
from tonewire.analysis.options import AnalysisOptions
from tonewire.analysis.results import Segment, TrackSummary
from tonewire.analysis.track import TrackAnalyzer
from tonewire.pipeline import Finished, Progress, analyze_file
from tonewire.report.json import segment_json, summary_json

SR = S.SR


def run(x: np.ndarray, *, block: int = 4 * SR, options: AnalysisOptions | None = None,
        ) -> tuple[list[Segment], TrackSummary]:
    x = np.asarray(x, dtype=np.float32)
    channels = 1 if x.ndim == 1 else x.shape[0]
    a = TrackAnalyzer(options, channels=channels)
    segs: list[Segment] = []
    n = x.shape[-1]
    for i in range(0, n, block):
        segs += a.feed(x[..., i : i + block])
    tail, summary = a.finish()
    return segs + tail, summary


def all_numbers(obj: object) -> list[float]:
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in all_numbers(x)]
    if isinstance(obj, list | tuple):
        return [v for x in obj for v in all_numbers(x)]
    return [float(obj)] if isinstance(obj, int | float) and not isinstance(obj, bool) else []


# -- bands and levels --------------------------------------------------------------------------

@pytest.mark.parametrize(("freq", "band"), [(100, 0), (350, 1), (1000, 2), (3000, 3), (6000, 4)])
def test_a_sine_lands_in_its_band(freq: float, band: int) -> None:
    segs, _ = run(S.sine(freq, 4.0, amp=0.5))
    for s in segs[1:-1]:
        assert int(np.argmax(s.bands)) == band
        # Full scale sine at 0.5 amplitude: its band reads -6 dBFS, the others far below.
        assert s.bands_db[band] == pytest.approx(-6.02, abs=0.5)
        assert sorted(s.bands_db)[-2] < s.bands_db[band] - 30


def test_levels_track_the_signal_level() -> None:
    x = S.music_like(12.0, bpm=120)
    loud, loud_sum = run(x)
    quiet, quiet_sum = run(x * 0.01)  # 40 dB down
    for a, b in zip(loud[2:-2], quiet[2:-2], strict=True):
        assert b.rms_dbfs == pytest.approx(a.rms_dbfs - 40.0, abs=0.1)
        assert b.lufs == pytest.approx(a.lufs - 40.0, abs=0.1)
        for x_db, y_db in zip(a.bands_db, b.bands_db, strict=True):
            if x_db > -70:
                assert y_db == pytest.approx(x_db - 40.0, abs=0.2)
        assert sum(b.bands) < sum(a.bands) - 2.0  # the 0..1 scale moves 0.5 per 40 dB
    assert loud_sum.integrated_lufs is not None and quiet_sum.integrated_lufs is not None
    assert quiet_sum.integrated_lufs == pytest.approx(loud_sum.integrated_lufs - 40.0, abs=0.1)


def test_bands_vary_where_the_music_varies() -> None:
    x = np.concatenate([S.sine(100, 5.0, amp=0.5), S.sine(3000, 5.0, amp=0.5)])
    segs, _ = run(x)
    assert segs[1].bands[0] > 0.9 and segs[1].bands[3] < 0.2
    assert segs[8].bands[3] > 0.9 and segs[8].bands[0] < 0.2


def test_band_edges_are_honest_about_the_analysis_rate() -> None:
    _, summary = run(S.sine(440, 1.0))
    assert summary.band_edges_hz[-1] == (4000.0, SR / 2)
    _, s44 = run(S.sine(440, 1.0, sr=44100), options=AnalysisOptions(sample_rate=44100))
    assert s44.band_edges_hz[-1] == (4000.0, 20000.0)


def test_k_weighting_matches_the_published_48k_coefficients() -> None:
    sos = ld.k_weighting_sos(sr=48000)
    np.testing.assert_allclose(sos[0], [1.53512485958697, -2.69169618940638, 1.19839281085285,
                                        1.0, -1.69065929318241, 0.73248077421585], atol=1e-8)
    np.testing.assert_allclose(sos[1], [1.0, -2.0, 1.0, 1.0, -1.99004745483398,
                                        0.99007225036621], atol=1e-8)


def test_integrated_loudness_of_a_reference_tone() -> None:
    # BS.1770: a 997 Hz sine on one channel at -20 dBFS peak reads about -23.0 LUFS.
    _, summary = run(S.sine(997, 10.0, amp=10 ** (-20 / 20)))
    assert summary.integrated_lufs == pytest.approx(-23.0, abs=0.15)
    # A stereo pair of the same tone adds both channels' power: 3 dB more.
    x = S.sine(997, 10.0, amp=10 ** (-20 / 20))
    _, stereo = run(np.stack([x, x]))
    assert stereo.integrated_lufs == pytest.approx(-20.0, abs=0.15)


# -- silence and short input ------------------------------------------------------------------

def test_silence_is_reported_as_silence() -> None:
    segs, summary = run(S.silence(10.0))
    assert len(segs) == 10
    for s in segs:
        assert s.silent and s.rms == 0.0 and s.bands == (0.0,) * 5
        assert s.emotion.primary is None and s.emotion.confidence == 0.0
        assert s.brain_regions == (0.0,) * 7 and s.brainwaves == (0.0,) * 5
        assert s.tempo_bpm is None
    assert summary.silent
    assert summary.overall_emotion.primary is None
    assert summary.tempo.bpm is None and summary.key.name is None
    assert summary.integrated_lufs is None
    doc = [segment_json(s) for s in segs] + [summary_json(summary)]
    assert all(math.isfinite(v) for v in all_numbers(doc))
    json.dumps(doc, allow_nan=False)


def test_a_fifth_of_a_second_works(tmp_path: Path) -> None:
    path = S.write_audio(tmp_path / "short.wav", S.sine(440, 0.2, amp=0.3), SR)
    events = list(analyze_file(path))
    segs = [e for e in events if isinstance(e, Segment)]
    summary = next(e for e in events if isinstance(e, Finished)).summary
    assert len(segs) == 1
    assert segs[0].start == 0.0 and segs[0].end == pytest.approx(0.2, abs=1e-3)
    assert not segs[0].silent and segs[0].lufs > -30
    assert summary.duration == pytest.approx(0.2, abs=1e-3)
    # A fifth of a second of one tone is no evidence of a mood or a beat.
    assert summary.overall_emotion.primary is None
    assert summary.tempo.bpm is None


def test_the_last_partial_segment_keeps_its_true_end() -> None:
    segs, summary = run(S.music_like(5.5))
    assert [s.end for s in segs][-2:] == [5.0, 5.5]
    assert summary.n_segments == 6


# -- rhythm ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bpm", [60, 72, 85, 97, 110, 120, 128, 140, 155, 168, 180])
def test_click_track_tempo(bpm: float) -> None:
    segs, summary = run(S.click_track(bpm, 30.0))
    assert summary.tempo.bpm == pytest.approx(bpm, abs=1.0)
    assert summary.tempo.confidence > 0.5
    beats = np.asarray(summary.beats)
    assert np.median(np.diff(beats)) == pytest.approx(60.0 / bpm, rel=0.01)
    local = [s.tempo_bpm for s in segs[4:-4]]
    assert all(t is not None and abs(t - bpm) < 2.0 for t in local)


@pytest.mark.parametrize("bpm", [60, 75, 90, 105, 120, 135, 150, 165, 180])
def test_drum_pattern_tempo_has_no_octave_error(bpm: float) -> None:
    _, summary = run(S.drum_pattern(bpm, 30.0))
    assert summary.tempo.bpm == pytest.approx(bpm, abs=1.0)


@pytest.mark.parametrize("style", ["rock", "disco", "halftime"])
@pytest.mark.parametrize("bpm", [62, 84, 100, 118, 136, 158, 178])
def test_tempo_of_a_rendered_band(tmp_path: Path, bpm: float, style: str) -> None:
    """General MIDI drums, bass and chords through fluidsynth: no half or double tempo."""
    seconds = max(24.0, 32 * 60.0 / bpm)  # at least two rounds of the chord progression
    path = S.render_midi(S.band_notes(bpm, seconds, style=style), tmp_path / "band.wav",
                         programs=S.BAND_PROGRAMS)
    summary = next(e for e in analyze_file(path) if isinstance(e, Finished)).summary
    assert summary.tempo.bpm == pytest.approx(bpm, abs=1.0)
    assert summary.key.name == "A minor"


def test_local_tempo_follows_a_tempo_change() -> None:
    x = np.concatenate([S.drum_pattern(90, 30.0), S.drum_pattern(140, 30.0, seed=1)])
    segs, summary = run(x)
    assert segs[10].tempo_bpm == pytest.approx(90, abs=2)
    assert segs[50].tempo_bpm == pytest.approx(140, abs=2)
    assert len(summary.sections) >= 2
    cut = min((s.start for s in summary.sections[1:]), key=lambda t: abs(t - 30.0))
    assert cut == pytest.approx(30.0, abs=3.0)
    first, last = summary.sections[0], summary.sections[-1]
    assert first.tempo_bpm == pytest.approx(90, abs=1.5)
    assert last.tempo_bpm == pytest.approx(140, abs=1.5)


def test_no_beat_in_noise_or_a_steady_tone() -> None:
    for x in (S.sine(440, 20.0), S.noise(20.0, amp=0.3)):
        segs, summary = run(x)
        assert summary.tempo.bpm is None or summary.tempo.confidence < 0.3
        assert np.mean([s.beat_strength for s in segs]) < 0.3


# -- key ---------------------------------------------------------------------------------------

KEYS = [("C", "major"), ("A", "minor"), ("G", "major"), ("E", "minor"), ("F", "major"),
        ("D", "minor"), ("D", "major"), ("B", "minor"), ("A#", "major"), ("G", "minor"),
        ("E", "major"), ("C#", "minor")]


@pytest.mark.parametrize(("key", "mode"), KEYS)
def test_chord_progression_key(tmp_path: Path, key: str, mode: S.Mode) -> None:
    path = S.render_midi(S.chord_progression(key, mode, repeats=3), tmp_path / "p.wav")
    summary = next(e for e in analyze_file(path) if isinstance(e, Finished)).summary
    assert summary.key.name == f"{key} {mode}"
    assert summary.key.confidence > 0.4


def test_relative_keys_are_told_apart(tmp_path: Path) -> None:
    """C major and A minor share every note; tonic and leading tone decide."""
    names = []
    for key, mode in (("C", "major"), ("A", "minor")):
        path = S.render_midi(S.chord_progression(key, mode, repeats=3), tmp_path / f"{key}.wav")
        names.append(next(e for e in analyze_file(path) if isinstance(e, Finished))
                     .summary.key.name)
    assert names == ["C major", "A minor"]


# -- sections ----------------------------------------------------------------------------------

def test_a_quiet_intro_then_a_loud_chorus_makes_a_section() -> None:
    x = np.concatenate([S.music_like(25.0, bpm=110) * 0.05, S.music_like(25.0, bpm=110, seed=3)])
    _, summary = run(x)
    assert len(summary.sections) == 2
    assert summary.sections[1].start == pytest.approx(25.0, abs=2.0)
    quiet, loud = summary.sections
    assert quiet.lufs is not None and loud.lufs is not None
    assert loud.lufs - quiet.lufs == pytest.approx(26.0, abs=2.0)


def test_steady_music_is_one_section() -> None:
    _, summary = run(S.music_like(40.0, bpm=100))
    assert len(summary.sections) == 1


# -- interpretations ---------------------------------------------------------------------------

@pytest.mark.parametrize(("rate", "band"), [(2.0, 0), (6.0, 1), (10.0, 2), (20.0, 3), (40.0, 4)])
def test_brainwaves_follow_the_modulation_rate(rate: float, band: int) -> None:
    segs, _ = run(S.am_noise(rate, 10.0, depth=0.8))
    for s in segs[2:-2]:
        assert int(np.argmax(s.brainwaves)) == band
        assert sum(s.brainwaves) == pytest.approx(1.0, abs=1e-3)


def test_a_steady_tone_has_no_brainwave_split() -> None:
    segs, _ = run(S.sine(440, 8.0))
    assert all(s.brainwaves == (0.0,) * 5 for s in segs[2:-2])


def test_emotion_moves_with_the_music_and_confidence_is_honest() -> None:
    calm = S.sine(220, 20.0, amp=0.05) + S.sine(277.2, 20.0, amp=0.05)
    energetic = S.music_like(20.0, bpm=150)
    c_segs, _ = run(calm)
    e_segs, _ = run(energetic)
    assert np.mean([s.emotion.arousal for s in e_segs]) > np.mean(
        [s.emotion.arousal for s in c_segs]) + 0.3
    confidences = {s.emotion.confidence for s in c_segs + e_segs}
    assert len(confidences) > 5  # not a constant
    floor = AnalysisOptions().min_confidence
    for s in c_segs + e_segs:
        assert (s.emotion.primary is None) == (s.emotion.confidence < floor)


def test_brain_regions_track_features_and_rest_in_silence() -> None:
    x = np.concatenate([S.silence(6.0), S.music_like(20.0, bpm=120)])
    segs, _ = run(x)
    assert all(v == 0.0 for s in segs[:5] for v in s.brain_regions)
    music = np.array([s.brain_regions for s in segs[10:-3]])
    assert music[:, 0].mean() > 0.5  # auditory cortex: it is loud
    assert music[:, 6].mean() > 0.3  # basal ganglia: a regular beat
    assert music.std(axis=0).max() > 0.01  # not frozen


# -- streaming ---------------------------------------------------------------------------------

def test_results_do_not_depend_on_block_size() -> None:
    x = S.music_like(15.0, bpm=123)
    a, sa = run(x, block=4 * SR)
    b, sb = run(x, block=1000)
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        assert p.bands_db == pytest.approx(q.bands_db, abs=0.02)
        assert p.lufs == pytest.approx(q.lufs, abs=0.02)
        assert p.chroma == pytest.approx(q.chroma, abs=1e-3)
    assert sa.tempo.bpm == pytest.approx(sb.tempo.bpm, abs=0.01)


def test_segments_stream_before_the_file_is_decoded(tmp_path: Path) -> None:
    path = S.write_audio(tmp_path / "long.flac", S.music_like(60.0), SR)
    first_segment_at = None
    fractions = []
    for event in analyze_file(path, block_seconds=1.0):
        if isinstance(event, Progress):
            fractions.append(event.fraction)
        elif isinstance(event, Segment) and first_segment_at is None:
            first_segment_at = fractions[-1]
    assert first_segment_at is not None and first_segment_at < 0.2


def test_every_value_is_finite_on_music(music_mp3: Path) -> None:
    events = list(analyze_file(music_mp3))
    segs = [e for e in events if isinstance(e, Segment)]
    summary = next(e for e in events if isinstance(e, Finished)).summary
    doc = [segment_json(s) for s in segs] + [summary_json(summary)]
    assert all(math.isfinite(v) for v in all_numbers(doc))
    assert len(segs) == 20
