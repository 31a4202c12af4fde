"""The test-signal generators produce what they promise (so later tests can trust them)."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import signals as S
from signals import Note

SR = S.SR


def dominant_hz(x: np.ndarray, sr: int) -> float:
    """Frequency (Hz) of the largest FFT bin of a Hann-windowed signal."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * sr / x.size)


def frame_rms(x: np.ndarray, frame: int) -> np.ndarray:
    n = x.size // frame
    return np.sqrt(np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))


# -- elementary signals ---------------------------------------------------------------------


@pytest.mark.parametrize("sr", [8000, 22050, 48000])
def test_sine_length_dtype_peak_and_pitch(sr: int) -> None:
    x = S.sine(440.0, 1.5, sr, amp=0.25)
    assert x.dtype == np.float32 and x.shape == (round(1.5 * sr),)
    assert x.flags.c_contiguous
    assert np.max(np.abs(x)) == pytest.approx(0.25, abs=1e-3)
    assert dominant_hz(x, sr) == pytest.approx(440.0, abs=1.0)


def test_noise_is_seeded_and_bounded() -> None:
    a, b, c = S.noise(1.0, SR, 0.2, seed=1), S.noise(1.0, SR, 0.2, seed=1), S.noise(1.0, SR, 0.2)
    assert a.dtype == np.float32 and a.shape == (SR,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0.19 < np.max(np.abs(a)) <= 0.2
    assert abs(float(np.mean(a))) < 0.01


def test_silence() -> None:
    x = S.silence(0.5, 16000)
    assert x.dtype == np.float32 and x.shape == (8000,) and not np.any(x)


def test_lengths_round_and_reject_bad_arguments() -> None:
    assert S.sine(100, 0.0).shape == (0,)
    assert S.noise(1 / 3, 22050).shape == (7350,)
    with pytest.raises(ValueError):
        S.silence(-1.0)
    with pytest.raises(ValueError):
        S.sine(100, 1.0, sr=0)
    with pytest.raises(ValueError):
        S.am_noise(4.0, 1.0, depth=1.5)


def test_am_noise_envelope_has_the_modulation_rate() -> None:
    x = S.am_noise(4.0, 4.0, SR, depth=1.0, amp=0.5, seed=3)
    assert x.dtype == np.float32 and x.shape == (4 * SR,)
    assert np.max(np.abs(x)) <= 0.5
    env = frame_rms(x, SR // 100)  # 10 ms frames: 100 Hz envelope rate
    env = env - env.mean()
    assert dominant_hz(env, 100) == pytest.approx(4.0, abs=0.3)
    # Full depth: the quietest frames are near silence, the loudest near amp / sqrt(3).
    rms = frame_rms(x, SR // 100)
    assert rms.min() < 0.02 and rms.max() > 0.25


def test_am_noise_without_depth_is_plain_noise() -> None:
    np.testing.assert_array_equal(
        S.am_noise(4.0, 1.0, depth=0.0, seed=5), S.noise(1.0, amp=0.5, seed=5)
    )


def test_beat_times() -> None:
    np.testing.assert_allclose(S.beat_times(120, 2.0), [0.0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(S.beat_times(60, 2.0, subdivision=2), [0.0, 0.5, 1.0, 1.5])
    assert S.beat_times(100, 6.0).size == 10


def onsets(x: np.ndarray, sr: int, threshold: float) -> np.ndarray:
    """Times (s) where |x| first exceeds threshold after at least 50 ms below it."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    if loud.size == 0:
        return np.array([])
    starts = loud[np.concatenate([[True], np.diff(loud) > 0.05 * sr])]
    return starts / sr


@pytest.mark.parametrize("bpm", [60.0, 90.0, 128.0])
def test_click_track_clicks_on_every_beat(bpm: float) -> None:
    x = S.click_track(bpm, 8.0, SR, amp=0.8)
    assert x.dtype == np.float32 and x.shape == (8 * SR,)
    assert 0.5 < np.max(np.abs(x)) <= 0.85
    expected = S.beat_times(bpm, 8.0)
    np.testing.assert_allclose(onsets(x, SR, 0.05), expected, atol=0.002)
    # Clicks are short: silence 20 ms after each.
    assert np.all(np.abs(x[np.round((expected + 0.02) * SR).astype(int)]) < 1e-3)


def band_energy(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum())


def test_drum_pattern_places_kick_snare_and_hats() -> None:
    bpm, sr = 120.0, SR
    x = S.drum_pattern(bpm, 8.0, sr, seed=0)
    assert x.dtype == np.float32 and x.shape == (8 * sr,)
    assert 0.3 < np.max(np.abs(x)) < 1.0
    np.testing.assert_array_equal(x, S.drum_pattern(bpm, 8.0, sr, seed=0))

    def window(t: float, length: float = 0.1) -> np.ndarray:
        i = round(t * sr)
        return x[i : i + round(length * sr)].astype(np.float64)

    beats = S.beat_times(bpm, 8.0)
    kicks, snares = beats[0::2], beats[1::2]
    for t in kicks:  # beats 1 and 3: mostly below 150 Hz
        w = window(t)
        assert band_energy(w, sr, 20, 150) > 3 * band_energy(w, sr, 150, sr / 2)
    for t in snares:  # beats 2 and 4: broadband, far more high-frequency energy than a kick
        w = window(t)
        assert band_energy(w, sr, 1000, sr / 2) > band_energy(w, sr, 20, 150)
    for t in beats[:-1] + 0.25:  # off-beat eighths: a quiet hi-hat over the drum tails
        w, before = window(t, 0.04), window(t - 0.04, 0.04)
        assert np.max(np.abs(w)) < 0.4
        assert band_energy(w, sr, 5000, sr / 2) > 20 * band_energy(before, sr, 5000, sr / 2)


def test_music_like() -> None:
    x = S.music_like(6.0, bpm=100.0, sr=16000, seed=2)
    assert x.dtype == np.float32 and x.shape == (96000,)
    assert np.max(np.abs(x)) == pytest.approx(0.9, abs=1e-4)
    rms = frame_rms(x, 1600)
    assert rms.min() > 0.01  # the pad sustains between drum hits
    # The pad is a C-major progression: C (261.6 Hz) is strong in the first bar.
    first_bar = x[: round(2.4 * 16000)].astype(np.float64)
    assert band_energy(first_bar, 16000, 255, 268) > band_energy(first_bar, 16000, 270, 285)


# -- harmony --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "pc"), [("C", 0), ("c#", 1), ("Db", 1), ("F#", 6), ("Bb", 10), ("B", 11), ("Cb", 11)]
)
def test_pitch_class(name: str, pc: int) -> None:
    assert S.pitch_class(name) == pc


@pytest.mark.parametrize("bad", ["", "H", "C+", "minor"])
def test_pitch_class_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        S.pitch_class(bad)


def chords_of(notes: list[Note], seconds_per_chord: float) -> list[tuple[set[int], int]]:
    """(pitch classes of the upper voices, bass pitch) per chord slot."""
    slots: dict[int, list[int]] = {}
    for n in notes:
        slots.setdefault(round(n.start_s / seconds_per_chord), []).append(n.pitch)
    out = []
    for k in sorted(slots):
        bass = min(slots[k])
        out.append(({p % 12 for p in slots[k] if p != bass}, bass))
    return out


def test_chord_progression_major() -> None:
    notes = S.chord_progression("G", "major", seconds_per_chord=0.5, repeats=2)
    assert len(notes) == 2 * 4 * 4
    assert all(n.dur_s == 0.5 for n in notes)
    chords = chords_of(notes, 0.5)
    g, c, d = {7, 11, 2}, {0, 4, 7}, {2, 6, 9}
    assert [pcs for pcs, _ in chords] == [g, c, d, g] * 2
    assert [bass % 12 for _, bass in chords] == [7, 0, 2, 7] * 2
    assert all(36 <= bass <= 47 for _, bass in chords)
    uppers = [n.pitch for n in notes if n.pitch >= 48]
    assert min(uppers) >= 55 and max(uppers) <= 66 + 7


def test_chord_progression_minor_has_major_dominant() -> None:
    notes = S.chord_progression("A", "minor", seconds_per_chord=1.0, repeats=1)
    chords = chords_of(notes, 1.0)
    a_min, d_min, e_maj = {9, 0, 4}, {2, 5, 9}, {4, 8, 11}  # G# is the leading tone
    assert [pcs for pcs, _ in chords] == [a_min, d_min, e_maj, a_min]
    assert [bass for _, bass in chords] == [45, 38, 40, 45]
    assert max(n.start_s + n.dur_s for n in notes) == 4.0


def test_chord_progression_rejects_bad_mode() -> None:
    with pytest.raises(ValueError):
        S.chord_progression("C", "dorian")  # type: ignore[arg-type]


@pytest.mark.parametrize(("key", "mode"), [("D", "major"), ("F#", "minor"), ("Eb", "minor")])
def test_melody_in_key(key: str, mode: S.Mode) -> None:
    notes = S.melody_in_key(key, mode, 6.0, note_s=0.25, seed=4)
    assert len(notes) == 24
    scale = S.scale_pitch_classes(key, mode)
    assert {n.pitch % 12 for n in notes} <= scale
    assert notes[0].pitch % 12 == notes[-1].pitch % 12 == S.pitch_class(key)
    tonic = 60 + S.pitch_class(key)
    assert all(tonic <= n.pitch <= tonic + 24 for n in notes)
    assert len({n.pitch for n in notes}) > 3
    assert notes == S.melody_in_key(key, mode, 6.0, note_s=0.25, seed=4)


# -- MIDI -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (0x7F, b"\x7f"), (0x80, b"\x81\x00"), (0x3FFF, b"\xff\x7f"),
     (0x4000, b"\x81\x80\x00"), (0x0FFFFFFF, b"\xff\xff\xff\x7f")],
)  # fmt: skip
def test_vlq(value: int, encoded: bytes) -> None:
    assert S._vlq(value) == encoded


def parse_smf(data: bytes) -> tuple[tuple[int, int, int], list[tuple[int, bytes]]]:
    """Parse a format-0 SMF: (format, tracks, division), [(absolute tick, event bytes)]."""
    assert data[:4] == b"MThd"
    length, fmt, ntracks, division = struct.unpack(">IHHH", data[4:14])
    assert length == 6
    assert data[14:18] == b"MTrk"
    (tlen,) = struct.unpack(">I", data[18:22])
    track = data[22:]
    assert len(track) == tlen
    events, i, tick = [], 0, 0
    while i < len(track):
        delta = 0
        while True:
            b = track[i]
            i += 1
            delta = (delta << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        tick += delta
        status = track[i]
        if status == 0xFF:
            n = track[i + 2]
            events.append((tick, track[i : i + 3 + n]))
            i += 3 + n
        elif status & 0xF0 == 0xC0:
            events.append((tick, track[i : i + 2]))
            i += 2
        else:
            events.append((tick, track[i : i + 3]))
            i += 3
    return (fmt, ntracks, division), events


def test_midi_bytes_round_trip() -> None:
    notes = [Note(0.0, 0.5, 60, 100), Note(0.5, 0.5, 60, 90), Note(0.25, 100.0, 72, 64)]
    (fmt, ntracks, ppq), events = parse_smf(S.midi_bytes(notes, program=40, tempo_bpm=120))
    assert (fmt, ntracks, ppq) == (0, 1, 480)
    assert events[0] == (0, b"\xff\x51\x03\x07\xa1\x20")  # 500000 us per quarter note
    assert events[1] == (0, b"\xc0\x28")
    assert events[-1] == (96240, b"\xff\x2f\x00")
    # 120 bpm, 480 ppq: 960 ticks per second. Offs sort before ons at the same tick.
    assert events[2:-1] == [
        (0, b"\x90\x3c\x64"),
        (240, b"\x90\x48\x40"),
        (480, b"\x80\x3c\x00"),
        (480, b"\x90\x3c\x5a"),
        (960, b"\x80\x3c\x00"),
        (96240, b"\x80\x48\x00"),
    ]


def test_midi_bytes_rejects_bad_notes() -> None:
    with pytest.raises(ValueError):
        S.midi_bytes([Note(0.0, 1.0, 128, 90)])
    with pytest.raises(ValueError):
        S.midi_bytes([Note(0.0, 0.0, 60, 90)])
    with pytest.raises(ValueError):
        S.midi_bytes([Note(0.0, 1.0, 60, 90)], program=128)


def wav_info(path: Path) -> tuple[int, int, int]:
    with wave.open(str(path), "rb") as w:
        return w.getnchannels(), w.getframerate(), w.getnframes()


def test_render_midi_plays_the_notes(tmp_path: Path) -> None:
    # A4 for 1 s on a piano, then a C-major chord for 1 s.
    notes = [Note(0.0, 1.0, 69, 100)] + [Note(1.0, 1.0, p, 90) for p in (60, 64, 67)]
    path = S.render_midi(notes, tmp_path / "piano.wav", sr=SR, program=0)
    assert path.with_suffix(".mid").is_file()
    channels, rate, frames = wav_info(path)
    assert rate == SR and channels in (1, 2)
    assert frames >= 2 * SR
    y = S.decode_all(path, SR)[0].astype(np.float64)
    assert 0.02 < np.max(np.abs(y)) <= 1.0
    assert dominant_hz(y[int(0.05 * SR) : int(0.95 * SR)], SR) == pytest.approx(440.0, abs=5)
    chord = y[int(1.05 * SR) : int(1.95 * SR)]
    assert frame_rms(chord, SR // 10).min() > 1e-3


def test_espeak_speaks(tmp_path: Path) -> None:
    path = S.espeak("The quick brown fox jumps over the lazy dog.", tmp_path / "fox.wav")
    channels, rate, frames = wav_info(path)
    assert channels == 1 and rate == 22050
    assert 1.5 < frames / rate < 6.0
    y = S.decode_all(path, 16000)
    assert y.shape[0] == 1 and np.max(np.abs(y)) > 0.05
    slow = S.espeak("The quick brown fox jumps over the lazy dog.", tmp_path / "s.wav", speed=90)
    assert wav_info(slow)[2] > 1.5 * frames


# -- files ----------------------------------------------------------------------------------

SUFFIXES = [".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".webm"]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("channels", [1, 2])
def test_write_audio_round_trips_through_the_decoder(
    tmp_path: Path, suffix: str, channels: int
) -> None:
    tone = S.sine(440.0, 2.0, SR, amp=0.5)
    samples = tone if channels == 1 else np.stack([tone, S.sine(1000.0, 2.0, SR, amp=0.25)])
    path = S.write_audio(tmp_path / f"x{suffix}", samples, SR)
    assert path.stat().st_size > 100
    y = S.decode_all(path, SR)
    assert y.dtype == np.float32 and y.shape[0] == channels
    assert y.shape[1] / SR == pytest.approx(2.0, abs=0.05)
    assert dominant_hz(y[0, :SR].astype(np.float64), SR) == pytest.approx(440.0, abs=2)
    assert np.max(np.abs(y[0])) == pytest.approx(0.5, abs=0.05)
    if channels == 2:
        assert dominant_hz(y[1, :SR].astype(np.float64), SR) == pytest.approx(1000.0, abs=2)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_write_audio_lossless_is_exact(tmp_path: Path, suffix: str) -> None:
    x = S.music_like(2.0, sr=SR, seed=1)
    y = S.decode_all(S.write_audio(tmp_path / f"m{suffix}", x, SR), SR)
    assert y.shape == (1, x.size)
    np.testing.assert_allclose(y[0], x, atol=1.5 / 32768)


def test_write_audio_opus_is_stored_at_48k(tmp_path: Path) -> None:
    import av

    path = S.write_audio(tmp_path / "x.opus", S.sine(440, 1.0, 22050), 22050)
    with av.open(str(path)) as c:
        assert c.streams.audio[0].codec_context.name == "opus"
        assert c.streams.audio[0].sample_rate == 48000


def test_write_audio_mp3_has_a_lame_header(tmp_path: Path) -> None:
    path = S.write_audio(tmp_path / "x.mp3", S.sine(440, 1.0, 22050), 22050)
    head = path.read_bytes()[:2048]
    assert b"Xing" in head or b"Info" in head
    assert b"LAME" in head or b"Lavc" in head


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".m4a", ".opus"])
def test_write_audio_six_channels(tmp_path: Path, suffix: str) -> None:
    import av

    x = np.stack([S.sine(200.0 * (k + 1), 1.0, 48000, amp=0.1) for k in range(6)])
    path = S.write_audio(tmp_path / f"six{suffix}", x, 48000)
    with av.open(str(path)) as c:
        assert c.streams.audio[0].codec_context.channels == 6


def test_write_audio_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="suffix"):
        S.write_audio(tmp_path / "x.aiff", S.silence(0.1), SR)
    with pytest.raises(ValueError, match="shape"):
        S.write_audio(tmp_path / "x.wav", np.zeros((2, 3, 4), np.float32), SR)
    with pytest.raises(ValueError, match="shape"):
        S.write_audio(tmp_path / "x.wav", np.zeros((9, 100), np.float32), SR)
    with pytest.raises(ValueError, match="no samples"):
        S.write_audio(tmp_path / "x.wav", S.silence(0.0), SR)
    with pytest.raises(ValueError, match="NaN"):
        S.write_audio(tmp_path / "x.wav", np.full(100, np.nan, np.float32), SR)


def test_session_files_exist(audio_files: dict[str, object]) -> None:
    from conftest import FORMATS, AudioFile

    assert tuple(audio_files) == FORMATS
    for f in audio_files.values():
        assert isinstance(f, AudioFile) and f.path.stat().st_size > 1000
