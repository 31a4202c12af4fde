"""Benchmark fixtures: realistic music as 192 kbps stereo 44.1 kHz mp3, made offline and cached.

A song (A minor, drums, bass, chords, melody; intro, verses, choruses, a slower bridge, a faster
last chorus, an outro that fades) is composed here as a list of notes, written as a Standard MIDI
File and rendered with Debian's ``fluidsynth`` and the FluidR3 General MIDI soundfont. Without
either, the same score is synthesised with numpy (cruder timbres, same structure). The rendered
5-minute master is cached as a 16-bit WAV; the mp3s are encoded from it with PyAV (libmp3lame).
The 60-minute mp3 plays the master twelve times, streamed chunk by chunk.

Everything lands in ``bench/out/`` (gitignored). Run this file to (re)build the fixtures::

    python bench/fixtures.py [--long] [--force] [--engine auto|fluidsynth|numpy]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from scipy.io import wavfile
from scipy.ndimage import maximum_filter1d, uniform_filter1d

OUT_DIR = Path(__file__).resolve().parent / "out"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
VERSION = "v2"  # bump when the score or the encoding changes: cached files are then rebuilt
RATE = 44100
BIT_RATE = 192_000
SONG_SECONDS = 300.0
LONG_REPEATS = 12  # 12 x 5 min = 60 min
TICKS_PER_BEAT = 480
_CHUNK = RATE  # samples per channel handed to the encoder at a time (1 s)


# -- the score ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Note:
    beat: float  # absolute position in beats (quarter notes)
    length: float  # beats
    channel: int  # MIDI channel index; 9 is drums
    pitch: int
    velocity: int


@dataclass(frozen=True, slots=True)
class SectionPlan:
    name: str
    bars: int
    bpm: float
    chords: tuple[str, ...]  # one chord per bar, cycled
    energy: float  # 0..1: dynamics and density
    drums: str  # pattern name
    programs: tuple[int, int, int]  # chords, bass, melody (GM program numbers, 0-based)


@dataclass(slots=True)
class Score:
    notes: list[Note]
    tempos: list[tuple[float, float]]  # (beat, bpm)
    programs: list[tuple[float, int, int]]  # (beat, channel, program)
    controls: list[tuple[float, int, int, int]]  # (beat, channel, controller, value)
    total_beats: float

    def seconds_at(self, beat: float) -> float:
        t, prev_beat, prev_bpm = 0.0, 0.0, self.tempos[0][1]
        for b, bpm in self.tempos[1:]:
            if b >= beat:
                break
            t += (b - prev_beat) * 60.0 / prev_bpm
            prev_beat, prev_bpm = b, bpm
        return t + (beat - prev_beat) * 60.0 / prev_bpm


CH_CHORDS, CH_BASS, CH_MELODY, CH_PAD, CH_DRUMS = 0, 1, 2, 3, 9
KICK, SNARE, CLOSED_HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 42, 46, 49, 51
_ROOTS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SCALE = (0, 2, 3, 5, 7, 8, 10)  # A natural minor, relative to A


def _chord(name: str) -> tuple[int, list[int]]:
    """'Am' -> (root pitch class, intervals)."""
    minor = name.endswith("m")
    return _ROOTS[name[0]], [0, 3, 7] if minor else [0, 4, 7]


def _plan() -> list[SectionPlan]:
    verse = ("Am", "F", "C", "G")
    chorus = ("F", "C", "G", "Am")
    bridge = ("Dm", "Am", "E", "E")
    plan = [
        SectionPlan("intro", 8, 112, verse, 0.35, "intro", (4, 33, 73)),
        SectionPlan("verse", 16, 112, verse, 0.55, "verse", (4, 33, 73)),
        SectionPlan("chorus", 16, 112, chorus, 0.85, "chorus", (48, 33, 81)),
        SectionPlan("verse", 16, 112, verse, 0.6, "verse", (4, 33, 73)),
        SectionPlan("chorus", 16, 112, chorus, 0.9, "chorus", (48, 33, 81)),
        SectionPlan("bridge", 16, 84, bridge, 0.45, "bridge", (0, 32, 65)),
        SectionPlan("chorus", 24, 120, chorus, 1.0, "chorus", (48, 33, 81)),
    ]
    elapsed = sum(s.bars * 4 * 60.0 / s.bpm for s in plan)
    outro_bars = math.ceil((SONG_SECONDS - elapsed) / (4 * 60.0 / 112)) + 2
    plan.append(SectionPlan("outro", outro_bars, 112, verse, 0.3, "intro", (4, 33, 73)))
    return plan


def compose(seed: int = 7) -> Score:
    rng = random.Random(seed)
    notes: list[Note] = []
    tempos: list[tuple[float, float]] = []
    programs: list[tuple[float, int, int]] = []
    controls: list[tuple[float, int, int, int]] = [
        (0.0, CH_CHORDS, 10, 40),
        (0.0, CH_BASS, 10, 64),
        (0.0, CH_MELODY, 10, 84),
        (0.0, CH_PAD, 10, 30),
        (0.0, CH_DRUMS, 10, 64),
    ]
    beat = 0.0
    motifs: dict[str, list[tuple[float, float, int]]] = {}
    for sec in _plan():
        tempos.append((beat, sec.bpm))
        for ch, prog in zip((CH_CHORDS, CH_BASS, CH_MELODY), sec.programs, strict=True):
            programs.append((beat, ch, prog))
        programs.append((beat, CH_PAD, 48 if sec.name == "chorus" else 89))
        for ch in (CH_CHORDS, CH_BASS, CH_MELODY, CH_PAD, CH_DRUMS):
            controls.append((beat, ch, 7, int(70 + 50 * sec.energy)))  # channel volume
        # One 4-bar melodic motif per section type, reused: real songs repeat themselves.
        motif = motifs.setdefault(sec.name, _motif(rng, high=sec.name == "chorus"))
        for bar in range(sec.bars):
            b0 = beat + 4 * bar
            chord = sec.chords[bar % len(sec.chords)]
            root, intervals = _chord(chord)
            fading = sec.name == "outro" and bar >= sec.bars - 8
            vel_scale = sec.energy * (0.5 if fading else 1.0)
            notes += _drums(sec.drums, b0, bar, vel_scale, rng)
            notes += _bass(root, b0, sec.energy, vel_scale, rng)
            notes += _chords(root, intervals, b0, sec, vel_scale)
            if sec.name != "intro" or bar >= 4:
                notes += _melody(motif, bar % 4, root, intervals, b0, vel_scale, rng)
        beat += 4 * sec.bars
    return Score(notes, tempos, programs, controls, total_beats=beat)


def _motif(rng: random.Random, *, high: bool) -> list[tuple[float, float, int]]:
    """Four bars of (beat offset within the 4 bars, length, scale degree)."""
    out: list[tuple[float, float, int]] = []
    degree = rng.choice([0, 2, 4]) + (7 if high else 0)
    rhythms = [
        [(0, 1), (1, 0.5), (1.5, 0.5), (2, 1.5), (3.5, 0.5)],
        [(0, 0.5), (0.5, 0.5), (1, 1), (2, 2)],
        [(0, 1.5), (1.5, 0.5), (2, 0.5), (2.5, 0.5), (3, 1)],
        [(0, 3), (3, 1)],
    ]
    for bar in range(4):
        for pos, length in rng.choice(rhythms):
            degree = max(-2, min(12, degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3])))
            out.append((4 * bar + pos, length, degree))
    return out


def _degree_pitch(degree: int, base: int = 69) -> int:
    octave, step = divmod(degree, 7)
    return base + 12 * octave + _SCALE[step]


def _melody(
    motif: list[tuple[float, float, int]],
    bar: int,
    root: int,
    intervals: list[int],
    b0: float,
    vel: float,
    rng: random.Random,
) -> list[Note]:
    out = []
    chord_pcs = {(root + i) % 12 for i in intervals}
    for pos, length, degree in motif:
        if not 4 * bar <= pos < 4 * bar + 4:
            continue
        pitch = _degree_pitch(degree)
        if pos % 1 == 0 and pitch % 12 not in chord_pcs:  # strong beats land on chord tones
            pitch += 1 if (pitch + 1) % 12 in chord_pcs else -1
        v = int(np.clip((60 + 50 * vel) + rng.randint(-8, 8), 1, 127))
        out.append(Note(b0 + pos - 4 * bar, length * 0.95, CH_MELODY, pitch, v))
    return out


def _bass(root: int, b0: float, energy: float, vel: float, rng: random.Random) -> list[Note]:
    pitch = 36 + root if root < 7 else 24 + root  # E1..D2 region
    steps = [0, 1, 1.5, 2, 3, 3.5] if energy > 0.5 else [0, 2, 3]
    out = []
    for i, s in enumerate(steps):
        p = pitch + (12 if (i == 4 and energy > 0.8) else 0) + (7 if i == 3 else 0)
        v = int(np.clip(70 + 45 * vel + rng.randint(-6, 6), 1, 127))
        out.append(Note(b0 + s, 0.45 if energy > 0.5 else 0.9, CH_BASS, p, v))
    return out


def _chords(root: int, intervals: list[int], b0: float, sec: SectionPlan, vel: float) -> list[Note]:
    base = 48 + root if root <= 7 else 36 + root
    pitches = [base + i for i in intervals] + [base + 12]
    v = int(40 + 50 * vel)
    out: list[Note] = []
    if sec.name == "chorus":  # sustained pad plus stabs
        out += [Note(b0, 3.9, CH_PAD, p, v) for p in pitches[:3]]
        for s in (0, 1.5, 2.5):
            out += [Note(b0 + s, 0.4, CH_CHORDS, p + 12, v) for p in pitches]
    elif sec.name == "bridge":  # arpeggio
        for k in range(8):
            out.append(Note(b0 + 0.5 * k, 0.5, CH_CHORDS, pitches[k % 4] + 12, v))
        out += [Note(b0, 4.0, CH_PAD, p, int(v * 0.7)) for p in pitches[:3]]
    else:
        for s in (0, 2):
            out += [Note(b0 + s, 1.8, CH_CHORDS, p, v) for p in pitches]
    return out


def _drums(pattern: str, b0: float, bar: int, vel: float, rng: random.Random) -> list[Note]:
    hits: list[tuple[float, int, float]] = []  # (beat, instrument, relative velocity)
    if pattern == "intro":
        hits += [(0, KICK, 0.9)] + [
            (s * 0.5, CLOSED_HAT, 0.5 + 0.2 * (s % 2 == 0)) for s in range(8)
        ]
    elif pattern == "verse":
        hits += [(0, KICK, 1.0), (2, KICK, 0.9), (2.5, KICK, 0.7), (1, SNARE, 1.0), (3, SNARE, 1.0)]
        hits += [(s * 0.5, CLOSED_HAT, 0.55 + 0.2 * (s % 2 == 0)) for s in range(8)]
    elif pattern == "chorus":
        hits += [(s, KICK, 1.0) for s in range(4)] + [(1, SNARE, 1.0), (3, SNARE, 1.0)]
        hits += [(s + 0.5, OPEN_HAT, 0.6) for s in range(4)]
        hits += [(s * 0.5, CLOSED_HAT, 0.4) for s in range(0, 8, 2)]
        if bar % 8 == 0:
            hits.append((0, CRASH, 0.9))
        if bar % 4 == 3:  # fill
            hits += [(3.25, SNARE, 0.7), (3.5, SNARE, 0.8), (3.75, SNARE, 0.9)]
    elif pattern == "bridge":
        hits += [(0, KICK, 0.9), (2, SNARE, 0.8)] + [(s, RIDE, 0.6) for s in range(4)]
    out = []
    for pos, inst, rel in hits:
        v = int(np.clip((50 + 75 * vel) * rel + rng.randint(-5, 5), 1, 127))
        out.append(Note(b0 + pos, 0.25, CH_DRUMS, inst, v))
    return out


# -- Standard MIDI File ---------------------------------------------------------------------
def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def write_midi(score: Score, path: Path) -> None:
    """Format 0, one track: tempo meta events, program/control changes, notes."""
    tick = lambda beat: round(beat * TICKS_PER_BEAT)  # noqa: E731
    events: list[tuple[int, int, bytes]] = []  # (tick, order, bytes): offs before ons
    for beat, bpm in score.tempos:
        events.append((tick(beat), 0, b"\xff\x51\x03" + round(60e6 / bpm).to_bytes(3, "big")))
    for beat, ch, prog in score.programs:
        events.append((tick(beat), 1, bytes([0xC0 | ch, prog])))
    for beat, ch, cc, value in score.controls:
        events.append((tick(beat), 1, bytes([0xB0 | ch, cc, value])))
    for n in score.notes:
        events.append((tick(n.beat), 3, bytes([0x90 | n.channel, n.pitch, n.velocity])))
        events.append((tick(n.beat + n.length), 2, bytes([0x80 | n.channel, n.pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray()
    now = 0
    for t, _, data in events:
        track += _vlq(t - now) + data
        now = t
    track += _vlq(TICKS_PER_BEAT * 4) + b"\xff\x2f\x00"  # a bar of room for release tails
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    path.write_bytes(header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


# -- rendering ------------------------------------------------------------------------------
def fluidsynth_available() -> bool:
    return shutil.which("fluidsynth") is not None and SOUNDFONT.is_file()


def render_fluidsynth(score: Score, tmp: Path) -> np.ndarray:
    mid, wav = tmp / "song.mid", tmp / "song.wav"
    write_midi(score, mid)
    # Chorus off: FluidR3's chorus sends put parts of the mix out of phase between channels,
    # which a mono downmix (what the analysis sees) would partly cancel. Reverb stays on.
    cmd = [
        "fluidsynth",
        "-ni",
        "-q",
        "-C",
        "0",
        "-g",
        "0.6",
        "-r",
        str(RATE),
        "-O",
        "float",
        "-T",
        "wav",
        "-F",
        str(wav),
        str(SOUNDFONT),
        str(mid),
    ]
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    with warnings.catch_warnings():  # fluidsynth writes a LIST chunk scipy doesn't parse
        warnings.simplefilter("ignore", wavfile.WavFileWarning)
        rate, data = wavfile.read(wav)
    if rate != RATE:
        raise RuntimeError(f"fluidsynth rendered at {rate} Hz")
    return np.ascontiguousarray(np.asarray(data, dtype=np.float32).T)


def render_numpy(score: Score, seed: int = 7) -> np.ndarray:
    """The same score with simple additive/noise synthesis: a fallback without fluidsynth."""
    rng = np.random.default_rng(seed)
    n_total = int((score.seconds_at(score.total_beats) + 2.0) * RATE)
    out = np.zeros((2, n_total), dtype=np.float32)
    pans = {CH_CHORDS: -0.4, CH_BASS: 0.0, CH_MELODY: 0.35, CH_PAD: -0.2, CH_DRUMS: 0.0}
    drum_pan = {CLOSED_HAT: 0.3, OPEN_HAT: 0.3, RIDE: -0.3, CRASH: -0.25}
    for n in score.notes:
        t0 = score.seconds_at(n.beat)
        dur = score.seconds_at(n.beat + n.length) - t0
        amp = (n.velocity / 127.0) ** 1.5
        if n.channel == CH_DRUMS:
            sig = _drum_hit(n.pitch, rng) * amp
            pan = drum_pan.get(n.pitch, 0.0)
        else:
            sig = _tone(n.channel, n.pitch, dur) * amp
            pan = pans[n.channel]
        i0 = int(t0 * RATE)
        i1 = min(i0 + sig.size, n_total)
        sig = sig[: i1 - i0]
        out[0, i0:i1] += sig * math.sqrt(0.5 * (1 - pan))
        out[1, i0:i1] += sig * math.sqrt(0.5 * (1 + pan))
    return out


def _tone(channel: int, pitch: int, dur: float) -> np.ndarray:
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    release = 0.25
    t = np.arange(int((dur + release) * RATE), dtype=np.float32) / RATE
    if channel == CH_BASS:
        harm, weights, attack, decay = range(1, 7), [1 / k for k in range(1, 7)], 0.005, 1.5
    elif channel == CH_MELODY:
        harm, weights, attack, decay = (1, 3, 5, 7), (1, 1 / 3, 1 / 5, 1 / 7), 0.02, 0.0
        t = t + 0.002 * np.sin(2 * np.pi * 5.5 * t) / (2 * np.pi * f0 / 100)  # vibrato
    elif channel == CH_PAD:
        harm, weights, attack, decay = (1, 2, 3, 4), (1, 0.5, 0.3, 0.2), 0.3, 0.0
    else:  # electric-piano-ish chords
        harm, weights, attack, decay = (1, 2, 3), (1, 0.4, 0.15), 0.005, 2.0
    sig = np.zeros_like(t)
    for k, w in zip(harm, weights, strict=True):
        if k * f0 < RATE / 2:
            sig += w * np.sin(2 * np.pi * k * f0 * t)
    env = np.minimum(t / attack, 1.0)
    if decay:
        env *= np.exp(-decay * t)
    env *= np.clip((dur + release - t) / release, 0.0, 1.0)
    level = {CH_BASS: 0.35, CH_MELODY: 0.18, CH_PAD: 0.07, CH_CHORDS: 0.08}[channel]
    return (sig * env * level).astype(np.float32)


def _drum_hit(inst: int, rng: np.random.Generator) -> np.ndarray:
    length = {KICK: 0.35, SNARE: 0.25, CLOSED_HAT: 0.08, OPEN_HAT: 0.35, CRASH: 1.5, RIDE: 0.8}
    t = np.arange(int(length[inst] * RATE), dtype=np.float32) / RATE
    noise = rng.standard_normal(t.size).astype(np.float32)
    if inst == KICK:
        phase = 2 * np.pi * (50 * t + 70 * (1 - np.exp(-t * 30)) / 30)
        return (0.9 * np.sin(phase) * np.exp(-t * 9)).astype(np.float32)
    if inst == SNARE:
        tone = np.sin(2 * np.pi * 185 * t)
        return ((0.35 * noise + 0.3 * tone) * np.exp(-t * 18)).astype(np.float32)
    bright = np.diff(noise, prepend=0.0)  # crude high-pass
    decay = {CLOSED_HAT: 60, OPEN_HAT: 9, CRASH: 2.5, RIDE: 4}[inst]
    level = {CLOSED_HAT: 0.12, OPEN_HAT: 0.1, CRASH: 0.12, RIDE: 0.06}[inst]
    return (level * bright * np.exp(-t * decay)).astype(np.float32)


def _master(audio: np.ndarray) -> np.ndarray:
    """Trim to the song length, fade the ends, normalise the peak to -1 dBFS, 16-bit."""
    n = int(SONG_SECONDS * RATE)
    if audio.shape[1] < n:
        audio = np.pad(audio, ((0, 0), (0, n - audio.shape[1])))
    audio = audio[:, :n].astype(np.float32)
    fade_in, fade_out = int(0.02 * RATE), int(4.0 * RATE)
    audio[:, :fade_in] *= np.linspace(0, 1, fade_in, dtype=np.float32)
    audio[:, -fade_out:] *= np.linspace(1, 0, fade_out, dtype=np.float32)
    # Mastering, crudely: gain so the loudest 10 s sit at -15 dBFS RMS, then a brick-wall limiter
    # (centred 10 ms peak window, smoothed gain: never above the ceiling) at -1 dBFS.
    mono_ms = np.square(audio.mean(axis=0), dtype=np.float64)
    win = 10 * RATE
    loudest = float(uniform_filter1d(mono_ms[: mono_ms.size // win * win], win)[::win].max())
    audio *= np.float32(10 ** (-15 / 20) / math.sqrt(max(loudest, 1e-12)))
    ceiling, size = 10 ** (-1 / 20), int(0.01 * RATE) | 1
    env = maximum_filter1d(np.abs(audio).max(axis=0), size=size)
    gain = uniform_filter1d(np.minimum(1.0, ceiling / np.maximum(env, 1e-9)), size=size)
    audio *= gain.astype(np.float32)
    return np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


# -- encoding -------------------------------------------------------------------------------
def encode_mp3(chunks: Iterator[np.ndarray], path: Path, title: str) -> None:
    """Encode float32 ``(2, n)`` chunks at 44.1 kHz to a 192 kbps stereo mp3, atomically."""
    tmp = path.with_suffix(".part.mp3")
    container = av.open(str(tmp), "w", format="mp3")
    try:
        container.metadata["title"] = title
        stream = container.add_stream("libmp3lame", rate=RATE)
        stream.bit_rate = BIT_RATE
        stream.layout = "stereo"
        pts = 0
        for chunk in chunks:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk, dtype=np.float32), format="fltp", layout="stereo"
            )
            frame.sample_rate = RATE
            frame.pts = pts
            pts += chunk.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    os.replace(tmp, path)


def _wav_chunks(wav: Path, repeats: int = 1) -> Iterator[np.ndarray]:
    """Stream a 16-bit stereo WAV (memory-mapped) as float32 ``(2, n)`` chunks, looped."""
    _, data = wavfile.read(wav, mmap=True)
    for _ in range(repeats):
        for i in range(0, data.shape[0], _CHUNK):
            yield (data[i : i + _CHUNK].T.astype(np.float32) / 32768.0)


# -- cache ----------------------------------------------------------------------------------
def _paths() -> dict[str, Path]:
    return {
        "master": OUT_DIR / f"song-{VERSION}.wav",
        "meta": OUT_DIR / f"song-{VERSION}.json",
        "5min": OUT_DIR / f"song-{VERSION}-5min-192k.mp3",
        "60min": OUT_DIR / f"song-{VERSION}-60min-192k.mp3",
    }


def master_wav(*, engine: str = "auto", force: bool = False) -> Path:
    """The rendered 5-minute song as 16-bit stereo 44.1 kHz WAV (cached)."""
    p = _paths()
    if p["master"].is_file() and p["meta"].is_file() and not force:
        return p["master"]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if engine == "auto":
        engine = "fluidsynth" if fluidsynth_available() else "numpy"
    score = compose()
    print(f"[fixtures] rendering {len(score.notes)} notes with {engine} ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=OUT_DIR) as tmp:
        if engine == "fluidsynth":
            audio = render_fluidsynth(score, Path(tmp))
        elif engine == "numpy":
            audio = render_numpy(score)
        else:
            raise ValueError(f"unknown engine {engine!r}")
        pcm = _master(audio)
        del audio
        part = Path(tmp) / "master.wav"
        wavfile.write(part, RATE, np.ascontiguousarray(pcm.T))
        os.replace(part, p["master"])
    p["meta"].write_text(
        json.dumps({"engine": engine, "seconds": SONG_SECONDS, "rate": RATE, "version": VERSION})
    )
    for key in ("5min", "60min"):  # encoded from an older master: stale
        p[key].unlink(missing_ok=True)
    return p["master"]


def fixture_engine() -> str:
    meta = _paths()["meta"]
    return str(json.loads(meta.read_text())["engine"]) if meta.is_file() else "?"


def song_5min(*, engine: str = "auto", force: bool = False) -> Path:
    """5-minute 192 kbps stereo 44.1 kHz mp3 (cached)."""
    master = master_wav(engine=engine, force=force)
    out = _paths()["5min"]
    if force or not out.is_file():
        print(f"[fixtures] encoding {out.name} ...", file=sys.stderr)
        encode_mp3(_wav_chunks(master), out, title="tonewire bench song (5 min)")
    return out


def song_60min(*, engine: str = "auto", force: bool = False) -> Path:
    """60-minute 192 kbps stereo 44.1 kHz mp3: the 5-minute song twelve times (cached).

    Streamed from the memory-mapped master one second at a time, so generating it never holds
    more than the 5-minute master.
    """
    master = master_wav(engine=engine, force=force)
    out = _paths()["60min"]
    if force or not out.is_file():
        print(f"[fixtures] encoding {out.name} (takes a while) ...", file=sys.stderr)
        encode_mp3(
            _wav_chunks(master, repeats=LONG_REPEATS), out, title="tonewire bench song x12 (60 min)"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long", action="store_true", help="also build the 60-minute mp3")
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    ap.add_argument("--engine", choices=("auto", "fluidsynth", "numpy"), default="auto")
    ap.add_argument("--midi", type=Path, help="also write the score as a MIDI file here")
    ap.add_argument("--json", action="store_true", help="print the paths as one JSON line")
    args = ap.parse_args()
    if args.midi:
        write_midi(compose(), args.midi)
    out = {"5min": str(song_5min(engine=args.engine, force=args.force))}
    if args.long:
        out["60min"] = str(song_60min(engine=args.engine))
    out["engine"] = fixture_engine()
    print(json.dumps(out) if args.json else "\n".join(out.values()))


if __name__ == "__main__":
    main()
