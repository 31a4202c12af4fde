"""Deterministic test signals and audio files with known answers.

Every generator returns a float32 mono array ``[shape=(n,)]`` with ``n = round(seconds * sr)``;
random parts come from a seeded :class:`numpy.random.Generator`, so the same arguments always give
the same samples. Files are written with PyAV (:func:`write_audio`), rendered from MIDI with
Debian's ``fluidsynth`` (:func:`render_midi`) or spoken by ``espeak-ng`` (:func:`espeak`); the
last two call :func:`pytest.skip` when the tool is not installed. Nothing here uses the network.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal, NamedTuple

import av
import numpy as np
import numpy.typing as npt
import pytest

FloatArray = npt.NDArray[np.float32]
Mode = Literal["major", "minor"]

SR = 22050
"""Default sample rate (Hz): the analysis rate."""

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
"""General MIDI soundfont from Debian's ``fluid-soundfont-gm``."""


class Note(NamedTuple):
    """One MIDI note: onset and duration in seconds, MIDI pitch (60 = middle C), velocity 1-127."""

    start_s: float
    dur_s: float
    pitch: int
    velocity: int = 90
    channel: int = 0
    """MIDI channel 0-15; 9 is General MIDI percussion (36 kick, 38 snare, 42 closed hat)."""


NoteLike = Note | tuple[float, float, int, int]


def _n(seconds: float, sr: int) -> int:
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    if sr <= 0:
        raise ValueError(f"sr must be > 0, got {sr}")
    return round(seconds * sr)


def _f32(x: npt.NDArray[np.floating]) -> FloatArray:
    return np.ascontiguousarray(x, dtype=np.float32)


# -- elementary signals ---------------------------------------------------------------------


def sine(
    freq: float, seconds: float, sr: int = SR, amp: float = 0.5, *, phase: float = 0.0
) -> FloatArray:
    """Pure tone: ``amp * sin(2π freq t + phase)``; freq in Hz, phase in radians."""
    t = np.arange(_n(seconds, sr)) / sr
    return _f32(amp * np.sin(2 * np.pi * freq * t + phase))


def noise(seconds: float, sr: int = SR, amp: float = 0.1, seed: int = 0) -> FloatArray:
    """White noise, uniform in ``[-amp, amp]`` (so the peak never exceeds ``amp``)."""
    rng = np.random.default_rng(seed)
    return _f32(rng.uniform(-amp, amp, _n(seconds, sr)))


def voice(f0: float, seconds: float, *, sr: int, syllable_hz: float = 4.0, amp: float = 0.3,
          glide_semitones: float = 0.0, gap_s: float = 0.04) -> FloatArray:
    """A harmonic "voice": harmonics 1/h of ``f0`` (Hz) up to 0.45 sr, gliding sinusoidally by
    ``glide_semitones`` (peak) at 0.7 Hz, under a syllable-rate raised-cosine envelope (each
    burst followed by ``gap_s`` of silence; ``syllable_hz=0``: no envelope). Peak ``amp``.
    float32 ``[shape=(seconds * sr,)]``."""
    n = round(seconds * sr)
    t = np.arange(n) / sr
    inst = f0 * 2.0 ** (glide_semitones * np.sin(2 * np.pi * 0.7 * t) / 12.0)
    phase = 2 * np.pi * np.cumsum(inst) / sr
    top = f0 * 2.0 ** (abs(glide_semitones) / 12.0)
    x = sum(np.sin(h * phase) / h for h in range(1, 60) if h * top < 0.45 * sr)
    if syllable_hz:
        period = 1.0 / syllable_hz
        pos = (t % period) / (period - gap_s)
        x = x * np.where(pos < 1.0, np.sin(np.pi * np.minimum(pos, 1.0)) ** 2, 0.0)
    out: FloatArray = (amp * x / np.max(np.abs(x))).astype(np.float32)
    return out


def silence(seconds: float, sr: int = SR) -> FloatArray:
    """Digital silence."""
    return np.zeros(_n(seconds, sr), dtype=np.float32)


def am_noise(
    rate_hz: float,
    seconds: float,
    sr: int = SR,
    depth: float = 1.0,
    *,
    amp: float = 0.5,
    seed: int = 0,
) -> FloatArray:
    """White noise amplitude-modulated by a raised cosine at ``rate_hz``.

    The envelope swings between ``1 - depth`` and 1 (``depth`` in [0, 1]), peaking at t = 0,
    1/rate_hz, 2/rate_hz, ... — a signal with a known modulation (e.g. "syllable") rate.
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    t = np.arange(_n(seconds, sr)) / sr
    envelope = 1.0 - depth * (0.5 - 0.5 * np.cos(2 * np.pi * rate_hz * t))
    return _f32(envelope * noise(seconds, sr, amp=amp, seed=seed))


def beat_times(bpm: float, seconds: float, *, subdivision: int = 1) -> npt.NDArray[np.float64]:
    """Onset times (s) of every beat (or every 1/subdivision beat) in ``[0, seconds)``."""
    step = 60.0 / bpm / subdivision
    return np.arange(0.0, seconds - 1e-9, step)


def _place(out: npt.NDArray[np.float64], sound: npt.NDArray[np.float64], at: int) -> None:
    """Add ``sound`` into ``out`` starting at sample ``at`` (cut at the end of ``out``)."""
    if at >= out.size:
        return
    k = min(sound.size, out.size - at)
    out[at : at + k] += sound[:k]


def click_track(
    bpm: float,
    seconds: float,
    sr: int = SR,
    *,
    amp: float = 0.8,
    click_s: float = 0.01,
    seed: int = 0,
) -> FloatArray:
    """A click on every beat (the first at t = 0): a ``click_s`` burst of 1 kHz tone plus noise,
    exponentially decaying, peak about ``amp``; silence between clicks."""
    n_click = max(1, _n(click_s, sr))
    t = np.arange(n_click) / sr
    rng = np.random.default_rng(seed)
    burst = 0.7 * np.sin(2 * np.pi * 1000.0 * t) + 0.3 * rng.uniform(-1, 1, n_click)
    click = amp * burst * np.exp(-t / (click_s / 5.0))
    out = np.zeros(_n(seconds, sr))
    for onset in beat_times(bpm, seconds):
        _place(out, click, round(onset * sr))
    return _f32(out)


# -- drums ----------------------------------------------------------------------------------


def _kick(sr: int) -> npt.NDArray[np.float64]:
    """Decaying sine falling from ~120 Hz to ~50 Hz: a bass drum."""
    t = np.arange(_n(0.35, sr)) / sr
    freq = 50.0 + 70.0 * np.exp(-t / 0.03)  # pitch drop
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return np.sin(phase) * np.exp(-t / 0.12)


def _snare(sr: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Noise burst plus a 200 Hz body, both decaying fast."""
    t = np.arange(_n(0.2, sr)) / sr
    body = 0.5 * np.sin(2 * np.pi * 200.0 * t) * np.exp(-t / 0.04)
    rattle = 0.6 * rng.uniform(-1, 1, t.size) * np.exp(-t / 0.05)
    return body + rattle


def _hihat(sr: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Short high-passed noise (first difference, twice): a closed hi-hat."""
    t = np.arange(_n(0.05, sr)) / sr
    x = rng.uniform(-1, 1, t.size + 2)
    hp = np.diff(x, n=2) / 4.0  # |response| rises as f^2: most energy above sr/4
    return hp * np.exp(-t / 0.012)


def drum_pattern(bpm: float, seconds: float, sr: int = SR, seed: int = 0) -> FloatArray:
    """A rock beat in 4/4: kick on beats 1 and 3, snare on 2 and 4, closed hi-hat on every
    eighth note (quieter). The first kick is at t = 0; peak well under 1.0."""
    rng = np.random.default_rng(seed)
    kick, snare = 0.8 * _kick(sr), 0.5 * _snare(sr, rng)
    out = np.zeros(_n(seconds, sr))
    for i, onset in enumerate(beat_times(bpm, seconds)):
        _place(out, kick if i % 2 == 0 else snare, round(onset * sr))
    for onset in beat_times(bpm, seconds, subdivision=2):
        _place(out, 0.25 * _hihat(sr, rng), round(onset * sr))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0.95:
        out *= 0.95 / peak
    return _f32(out)


# -- harmony --------------------------------------------------------------------------------

_PITCH_CLASSES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_HARMONIC_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 11)
# (root offset from the tonic, triad intervals) for I-IV-V-I and i-iv-V-i.
_PROGRESSIONS: dict[str, tuple[tuple[int, tuple[int, int, int]], ...]] = {
    "major": ((0, (0, 4, 7)), (5, (0, 4, 7)), (7, (0, 4, 7)), (0, (0, 4, 7))),
    "minor": ((0, (0, 3, 7)), (5, (0, 3, 7)), (7, (0, 4, 7)), (0, (0, 3, 7))),
}


def pitch_class(key: str) -> int:
    """Pitch class 0-11 of a note name: ``"C"``, ``"F#"``, ``"Bb"``, ``"c#"``..."""
    name = key.strip()
    if not name or name[0].upper() not in _PITCH_CLASSES:
        raise ValueError(f"not a note name: {key!r}")
    pc = _PITCH_CLASSES[name[0].upper()]
    for accidental in name[1:]:
        if accidental in "#♯":
            pc += 1
        elif accidental in "b♭":
            pc -= 1
        else:
            raise ValueError(f"not a note name: {key!r}")
    return pc % 12


def chord_progression(
    key: str,
    mode: Mode = "major",
    seconds_per_chord: float = 1.0,
    repeats: int = 4,
    *,
    velocity: int = 90,
) -> list[Note]:
    """Notes of I-IV-V-I (major) or i-iv-V-i (minor; V is major, with the leading tone, as in
    harmonic minor), ``repeats`` times, one chord every ``seconds_per_chord`` seconds.

    Each triad is voiced in root position with its root in G3-F#4 (MIDI 55-66, around middle
    C), plus a bass note on the chord root in C2-B2 (MIDI 36-47).
    """
    if mode not in _PROGRESSIONS:
        raise ValueError(f"mode must be 'major' or 'minor', got {mode!r}")
    tonic = pitch_class(key)
    notes: list[Note] = []
    for r in range(repeats):
        for i, (offset, triad) in enumerate(_PROGRESSIONS[mode]):
            start = (r * 4 + i) * seconds_per_chord
            root_pc = (tonic + offset) % 12
            root = 55 + (root_pc - 7) % 12
            notes.extend(Note(start, seconds_per_chord, root + iv, velocity) for iv in triad)
            notes.append(Note(start, seconds_per_chord, 36 + root_pc, velocity))
    return notes


def scale_pitch_classes(key: str, mode: Mode = "major") -> set[int]:
    """Pitch classes of the major or harmonic-minor scale on ``key``."""
    steps = _MAJOR_SCALE if mode == "major" else _HARMONIC_MINOR_SCALE
    tonic = pitch_class(key)
    return {(tonic + s) % 12 for s in steps}


def melody_in_key(
    key: str,
    mode: Mode = "major",
    seconds: float = 8.0,
    *,
    note_s: float = 0.25,
    seed: int = 0,
    velocity: int = 80,
) -> list[Note]:
    """A seeded random walk over two octaves of the major / harmonic-minor scale, from the tonic
    at or above middle C (MIDI 60-71) up; one note every ``note_s`` seconds, starting and ending
    on the tonic."""
    steps = _MAJOR_SCALE if mode == "major" else _HARMONIC_MINOR_SCALE
    tonic = 60 + pitch_class(key)
    ladder = [tonic + 12 * octave + s for octave in (0, 1) for s in steps] + [tonic + 24]
    rng = np.random.default_rng(seed)
    count = max(1, int(seconds / note_s + 1e-9))
    idx = 0
    notes: list[Note] = []
    for k in range(count):
        if k == count - 1:
            idx = 0 if idx < 7 else 7
        notes.append(Note(k * note_s, note_s, ladder[idx], velocity))
        idx = int(np.clip(idx + rng.choice([-2, -1, 1, 2]), 0, len(ladder) - 1))
    return notes


def _pad(notes: Iterable[NoteLike], seconds: float, sr: int) -> npt.NDArray[np.float64]:
    """Additive-synth pad: each note a few decaying harmonics with soft attack and release."""
    out = np.zeros(_n(seconds, sr))
    for start_s, dur_s, pitch, velocity, *_ in notes:
        n = _n(dur_s, sr)
        if n == 0:
            continue
        t = np.arange(n) / sr
        f0 = 440.0 * 2.0 ** ((pitch - 69) / 12)
        tone = sum(np.sin(2 * np.pi * h * f0 * t) / h**1.5 for h in (1, 2, 3, 4) if h * f0 < sr / 2)
        env = np.minimum(1.0, np.minimum(t / 0.03, (dur_s - t) / 0.05)).clip(0.0)
        _place(out, (velocity / 127.0) * env * tone, round(start_s * sr))
    return out


def music_like(seconds: float, bpm: float = 120.0, sr: int = SR, seed: int = 0) -> FloatArray:
    """Drums (:func:`drum_pattern`) over a sustained C-major I-IV-V-I pad, one chord per bar.

    Peak about 0.9: loud enough for music analysis, never clipping."""
    bar_s = 4 * 60.0 / bpm
    repeats = max(1, int(np.ceil(seconds / (4 * bar_s))))
    chords = [n for n in chord_progression("C", "major", bar_s, repeats) if n.start_s < seconds]
    pad = _pad(chords, seconds, sr)
    pad *= 0.35 / max(float(np.max(np.abs(pad))), 1e-9)
    mix = drum_pattern(bpm, seconds, sr, seed=seed) * 0.6 + pad
    mix *= 0.9 / max(float(np.max(np.abs(mix))), 1e-9)
    return _f32(mix)


# -- files ----------------------------------------------------------------------------------

# suffix -> (container format, encoder)
_CODECS: dict[str, tuple[str, str]] = {
    ".wav": ("wav", "pcm_s16le"),
    ".flac": ("flac", "flac"),
    ".mp3": ("mp3", "libmp3lame"),
    ".m4a": ("ipod", "aac"),
    ".ogg": ("ogg", "libopus"),
    ".opus": ("opus", "libopus"),
    ".webm": ("webm", "libopus"),
}
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def write_audio(
    path: str | Path,
    samples: npt.ArrayLike,
    sr: int = SR,
    *,
    codec: str | None = None,
    bit_rate: int | None = None,
    frame_samples: int = 4096,
) -> Path:
    """Encode ``samples`` to ``path`` with PyAV, the codec chosen from the suffix.

    ``samples``: float in [-1, 1], mono ``[shape=(n,)]`` or ``[shape=(channels, n)]`` (1-8
    channels). Suffixes: .wav (pcm_s16le), .flac, .mp3 (libmp3lame; 1-2 channels, with a
    LAME/Xing header), .m4a (aac in mp4), .ogg / .opus (libopus in Ogg), .webm (libopus in WebM).
    ``codec`` overrides the encoder; ``bit_rate`` (bit/s) defaults to the encoder's, except AAC
    (192 kb/s mono, 128 kb/s per channel otherwise) which is too lossy for tones. When the
    encoder does not support ``sr`` (Opus takes 8, 12, 16, 24 or 48 kHz) the stream is written
    at 48 kHz (or the encoder's nearest rate) and PyAV resamples; the duration is unchanged.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _CODECS:
        raise ValueError(f"unsupported suffix {suffix!r}; use one of {sorted(_CODECS)}")
    fmt, default_codec = _CODECS[suffix]
    arr = np.asarray(samples, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2 or arr.shape[0] not in _LAYOUTS:
        raise ValueError(f"samples must be (n,) or (channels<=8, n), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError("no samples to write")
    if not np.all(np.isfinite(arr)):
        raise ValueError("samples contain NaN or inf")
    layout = _LAYOUTS[arr.shape[0]]
    encoder = codec or default_codec
    rates = av.codec.Codec(encoder, "w").audio_rates
    rate = sr
    if rates and sr not in rates:
        rate = 48000 if 48000 in rates else min(rates, key=lambda r: abs(r - sr))
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(encoder, rate=rate, layout=layout)
        assert isinstance(stream, av.audio.stream.AudioStream)
        if bit_rate is None and encoder == "aac":
            # FFmpeg's AAC encoder mangles pure tones at its default ~70 kb/s (0.5 sine peaks
            # at 0.85); AAC allows at most 6 bits per sample per channel.
            bit_rate = min(192_000 if arr.shape[0] == 1 else 128_000, 6 * rate) * arr.shape[0]
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for start in range(0, arr.shape[1], frame_samples):
            # Interleaved ("flt", shape (1, n * channels)): PyAV 18's planar from_ndarray fails
            # on 8 channels. PyAV converts to whatever the encoder takes.
            chunk = np.ascontiguousarray(arr[:, start : start + frame_samples].T).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout=layout)
            frame.sample_rate = sr
            # Timestamps let the encoder signal its priming delay (mp4 edit list, LAME header,
            # Opus pre-skip), so decoders trim it and the duration survives the round trip.
            frame.pts = start
            frame.time_base = Fraction(1, sr)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def decode_all(
    path: str | Path,
    sample_rate: int = SR,
    *,
    block_seconds: float = 4.0,
    max_duration_s: float | None = None,
) -> FloatArray:
    """Decode a whole file with :class:`tonewire.audio.decode.AudioReader`: ``(channels, n)``."""
    from tonewire.audio.decode import AudioReader

    with AudioReader(
        path, sample_rate=sample_rate, block_seconds=block_seconds, max_duration_s=max_duration_s
    ) as reader:
        blocks = list(reader)
        channels = reader.info.channels
    if not blocks:
        return np.zeros((channels, 0), dtype=np.float32)
    return _f32(np.concatenate(blocks, axis=1))


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity: 7 bits per byte, high bit set on all but the last."""
    if value < 0:
        raise ValueError("delta time must be >= 0")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_bytes(
    notes: Iterable[NoteLike],
    *,
    program: int = 0,
    tempo_bpm: float = 120.0,
    ppq: int = 480,
    programs: dict[int, int] | None = None,
) -> bytes:
    """A Standard MIDI File (format 0, one track, channel 1) playing ``notes``.

    The track holds a tempo meta event, a program change (General MIDI ``program`` 0-127), then
    note on / note off events (offs before ons at the same tick) and end of track.
    """
    if not 0 <= program <= 127:
        raise ValueError(f"program must be 0-127, got {program}")
    us_per_quarter = round(60_000_000 / tempo_bpm)
    ticks_per_s = ppq * 1_000_000 / us_per_quarter
    events: list[tuple[int, int, bytes]] = []  # (tick, 0 = off / 1 = on, message)
    for note in notes:
        start_s, dur_s, pitch, velocity = note[:4]
        channel = Note(*note).channel
        if not (0 <= pitch <= 127 and 1 <= velocity <= 127 and start_s >= 0 and dur_s > 0):
            raise ValueError(f"bad note {(start_s, dur_s, pitch, velocity)}")
        on = round(start_s * ticks_per_s)
        off = max(on + 1, round((start_s + dur_s) * ticks_per_s))
        events.append((on, 1, bytes([0x90 | channel, pitch, velocity])))
        events.append((off, 0, bytes([0x80 | channel, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray(_vlq(0) + b"\xff\x51\x03" + us_per_quarter.to_bytes(3, "big"))
    for channel, prog in ({0: program} | (programs or {})).items():
        track += _vlq(0) + bytes([0xC0 | channel, prog])
    tick = 0
    for at, _, message in events:
        track += _vlq(at - tick) + message
        tick = at
    track += _vlq(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ppq)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


BAND_PROGRAMS = {0: 0, 1: 33}
"""Channel programs for :func:`band_notes`: piano chords, fingered bass (drums on 9)."""


def band_notes(bpm: float, seconds: float, *, style: str = "rock") -> list[Note]:
    """A General MIDI band in A minor for :func:`render_midi` with ``programs=BAND_PROGRAMS``.

    Drums on channel 9 in one of three styles: ``rock`` (kick on 1 and 3, snare on 2 and 4,
    closed hi-hat on eighths), ``disco`` (kick on every beat, clap on 2 and 4, open hi-hat on
    the off-beats), ``halftime`` (kick on 1, snare on 3, hi-hat eighths); a bass note on every
    beat and a chord every bar (i-VI-VII-V: Am, F, G, E).
    """
    beat = 60.0 / bpm
    bars = ((45, (0, 3, 7)), (41, (0, 4, 7)), (43, (0, 4, 7)), (40, (0, 4, 7)))
    notes: list[Note] = []
    for i in range(int(seconds / beat)):
        t = i * beat
        if style == "rock":
            notes.append(Note(t, 0.1, 36 if i % 2 == 0 else 38, 110, 9))
            notes += [Note(t, 0.05, 42, 70, 9), Note(t + beat / 2, 0.05, 42, 60, 9)]
        elif style == "disco":
            notes.append(Note(t, 0.1, 36, 110, 9))
            if i % 2:
                notes.append(Note(t, 0.1, 39, 100, 9))
            notes.append(Note(t + beat / 2, 0.1, 46, 70, 9))
        elif style == "halftime":
            if i % 4 in (0, 2):
                notes.append(Note(t, 0.1, 36 if i % 4 == 0 else 38, 110, 9))
            notes += [Note(t, 0.05, 42, 70, 9), Note(t + beat / 2, 0.05, 42, 60, 9)]
        else:
            raise ValueError(f"unknown style {style!r}")
        root, triad = bars[(i // 4) % 4]
        notes.append(Note(t, beat * 0.9, root, 90, 1))
        if i % 4 == 0:
            notes += [Note(t, beat * 3.8, root + 24 + iv, 60, 0) for iv in triad]
    return notes


def _require_tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed")
    return exe


def render_midi(
    notes: Sequence[NoteLike],
    path_wav: str | Path,
    sr: int = SR,
    program: int = 0,
    *,
    programs: dict[int, int] | None = None,
) -> Path:
    """Render ``notes`` to a WAV (stereo, 16-bit, ``sr`` Hz) with fluidsynth and FluidR3_GM.

    Writes ``<path_wav>.mid`` beside it. Skips the test when fluidsynth or the soundfont is
    missing (Debian packages ``fluidsynth``, ``fluid-soundfont-gm``).
    """
    exe = _require_tool("fluidsynth")
    if not SOUNDFONT.is_file():
        pytest.skip(f"soundfont {SOUNDFONT} is not installed")
    path_wav = Path(path_wav)
    midi = path_wav.with_suffix(".mid")
    midi.write_bytes(midi_bytes(notes, program=program, programs=programs))
    cmd = [exe, "-ni", "-q", "-g", "0.8", "-r", str(sr), "-F", str(path_wav), str(SOUNDFONT)]
    subprocess.run([*cmd, str(midi)], check=True, capture_output=True, timeout=120)
    if not path_wav.is_file() or path_wav.stat().st_size <= 44:
        raise RuntimeError(f"fluidsynth wrote no audio to {path_wav}")
    return path_wav


def espeak(text: str, path_wav: str | Path, *, pitch: int = 50, speed: int = 175) -> Path:
    """Speak ``text`` into a WAV (mono, 22050 Hz) with espeak-ng; skip when it is missing.

    ``pitch`` 0-99 (50 default), ``speed`` in words per minute."""
    exe = _require_tool("espeak-ng")
    path_wav = Path(path_wav)
    cmd = [exe, "-w", str(path_wav), "-p", str(pitch), "-s", str(speed), text]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return path_wav


def seconds_of(samples: npt.NDArray[np.generic], sr: int) -> float:
    """Duration in seconds of ``(n,)`` or ``(channels, n)`` samples."""
    return float(samples.shape[-1]) / sr
