"""tonewire.audio.decode.AudioReader: formats, rates, channels, bounded blocks, error codes."""

from __future__ import annotations

import struct
import tracemalloc
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest
import signals as S
from conftest import AudioFile

from tonewire.audio.decode import AudioReader
from tonewire.config import Settings
from tonewire.errors import AudioError

DEFAULT_MAX_S: float = Settings.model_fields["max_duration_s"].default  # 4 h
TOLERANCE_S = 0.05


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.argmax(spec) * sr / x.size)


def read_blocks(path: Path, **kwargs: object) -> tuple[AudioReader, list[np.ndarray]]:
    with AudioReader(path, **kwargs) as reader:  # type: ignore[arg-type]
        return reader, list(reader)


def error_code(path: Path, **kwargs: object) -> str:
    """Open and fully iterate ``path``; return the code of the AudioError raised."""
    with pytest.raises(AudioError) as info:
        read_blocks(path, **kwargs)
    assert isinstance(info.value.code, str) and info.value.message
    return info.value.code


def wav_bytes(
    data: bytes,
    *,
    channels: int = 1,
    rate: int = 22050,
    bits: int = 16,
    declared: int | None = None,
) -> bytes:
    """A canonical 44-byte-header PCM WAV; ``declared`` overrides the data chunk's size."""
    size = len(data) if declared is None else declared
    block_align = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH", 1, channels, rate, (rate * block_align) & 0xFFFFFFFF, block_align, bits
    )
    riff_size = (36 + size) & 0xFFFFFFFF
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", size) + data
    )  # fmt: skip


def pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    """A valid RGB PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# -- every format -----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [22050, 16000])
def test_every_format_decodes_to_float32_blocks(audio_file: AudioFile, rate: int) -> None:
    reader, blocks = read_blocks(audio_file.path, sample_rate=rate, block_seconds=2.0)
    info = reader.info
    assert info.source_channels == audio_file.channels == info.channels
    assert info.source_rate == audio_file.source_rate
    assert info.declared_seconds == pytest.approx(audio_file.seconds, abs=0.1)
    assert reader.block_samples == 2 * rate
    assert blocks, "no blocks"
    for block in blocks:
        assert block.dtype == np.float32
        assert block.ndim == 2 and block.shape[0] == audio_file.channels
        assert np.all(np.isfinite(block))
    assert all(b.shape[1] == reader.block_samples for b in blocks[:-1])
    assert 0 < blocks[-1].shape[1] <= reader.block_samples
    total = sum(b.shape[1] for b in blocks)
    assert reader.decoded_samples == total
    assert reader.decoded_seconds == pytest.approx(total / rate)
    assert total / rate == pytest.approx(audio_file.seconds, abs=TOLERANCE_S)
    assert reader.bad_packets == 0

    y = np.concatenate(blocks, axis=1)
    peak = float(np.max(np.abs(y[0])))
    assert 0.7 < peak < 1.1  # music_like peaks at 0.9; lossy codecs overshoot a little
    if audio_file.channels == 2:  # the right channel is a 440 Hz tone at 0.3
        assert dominant_hz(y[1, rate : 3 * rate], rate) == pytest.approx(440.0, abs=1.0)
        assert float(np.max(np.abs(y[1]))) == pytest.approx(0.3, abs=0.05)


def test_info_describes_the_container(audio_files: dict[str, AudioFile]) -> None:
    expected = {
        ".wav": ("wav", "pcm_s16le"),
        ".flac": ("flac", "flac"),
        ".mp3": ("mp3", "mp3float"),
        ".m4a": ("mov,mp4,m4a,3gp,3g2,mj2", "aac"),
        ".opus": ("ogg", "opus"),
        ".ogg": ("ogg", "opus"),
        ".webm": ("matroska,webm", "opus"),
    }
    for suffix, (fmt, codec) in expected.items():
        with AudioReader(audio_files[suffix].path) as reader:
            assert (reader.info.format, reader.info.codec) == (fmt, codec), suffix
            assert reader.info.path == str(audio_files[suffix].path)
            assert reader.info.title is None


def test_lossless_decode_matches_the_source(music_wav: Path, music_signal: np.ndarray) -> None:
    """At the file's own rate a WAV decodes to its samples (16-bit quantisation only)."""
    _, blocks = read_blocks(music_wav, sample_rate=44100)
    y = np.concatenate(blocks, axis=1)
    assert y.shape == (1, music_signal.size)
    np.testing.assert_allclose(y[0], music_signal, atol=1.5 / 32768)


def test_small_blocks(music_mp3: Path) -> None:
    reader, blocks = read_blocks(music_mp3, sample_rate=16000, block_seconds=0.1)
    assert reader.block_samples == 1600
    assert {b.shape[1] for b in blocks[:-1]} == {1600}
    assert sum(b.shape[1] for b in blocks) / 16000 == pytest.approx(20.0, abs=TOLERANCE_S)


def test_reader_is_a_context_manager_and_closes(music_wav: Path) -> None:
    with AudioReader(music_wav) as reader:
        first = next(iter(reader))
        assert first.shape == (1, reader.block_samples)
    with pytest.raises(ValueError, match="closed"):
        list(reader)


# -- channels ----------------------------------------------------------------------------------

SIX_FREQS = (300.0, 500.0, 700.0, 100.0, 900.0, 1100.0)  # FL FR FC LFE BL BR


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".m4a", ".opus", ".webm"])
def test_six_channels_downmix_to_stereo(tmp_path: Path, suffix: str) -> None:
    x = np.stack([S.sine(f, 2.0, 48000, amp=0.1) for f in SIX_FREQS])
    path = S.write_audio(tmp_path / f"six{suffix}", x, 48000)
    reader, blocks = read_blocks(path, sample_rate=22050)
    assert (reader.info.source_channels, reader.info.channels) == (6, 2)
    assert all(b.shape[0] == 2 for b in blocks)
    y = np.concatenate(blocks, axis=1)
    assert y.shape[1] / 22050 == pytest.approx(2.0, abs=TOLERANCE_S)

    def level(ch: int, freq: float) -> float:
        seg = y[ch, 11025 : 11025 + 22050].astype(np.float64)  # 1 s: 1 Hz bins
        return float(np.abs(np.fft.rfft(seg * np.hanning(seg.size)))[round(freq)] * 4 / seg.size)

    # Left: FL + centre + back-left; right: FR + centre + back-right (LFE dropped).
    for ch, present, absent in (
        (0, (300, 700, 900), (500, 1100)),
        (1, (500, 700, 1100), (300, 900)),
    ):
        assert all(level(ch, f) > 0.05 for f in present), (ch, [level(ch, f) for f in present])
        assert all(level(ch, f) < 0.005 for f in absent), (ch, [level(ch, f) for f in absent])


@pytest.mark.parametrize(("channels", "expected"), [(1, 1), (2, 2), (3, 2), (4, 2), (8, 2)])
def test_channel_counts(tmp_path: Path, channels: int, expected: int) -> None:
    x = np.stack([S.sine(220.0 * (k + 1), 1.0, 22050, amp=0.1) for k in range(channels)])
    path = S.write_audio(tmp_path / "c.wav", x, 22050)
    reader, blocks = read_blocks(path, sample_rate=16000)
    assert (reader.info.source_channels, reader.info.channels) == (channels, expected)
    assert all(b.shape[0] == expected for b in blocks)
    assert sum(b.shape[1] for b in blocks) == 16000


@pytest.mark.parametrize("channels", [9, 32, 64])
def test_channel_counts_without_a_standard_layout(tmp_path: Path, channels: int) -> None:
    """FFmpeg cannot downmix these layouts: the reader averages their channels to mono."""
    x = np.stack([S.sine(440.0, 0.5, 22050, amp=0.1)] * channels)
    path = tmp_path / "many.wav"
    path.write_bytes(wav_bytes(pcm16(x.T.reshape(-1)), channels=channels))
    try:
        reader = AudioReader(path)
    except AudioError as exc:
        assert exc.code == "UNSUPPORTED_FORMAT"
        return
    with reader:
        try:
            blocks = list(reader)
        except AudioError as exc:
            raise AssertionError(f"{exc.code} while decoding: {exc}") from exc
    assert all(b.shape[0] == 1 for b in blocks)
    assert sum(b.shape[1] for b in blocks) == 11025
    assert float(np.max(np.abs(np.concatenate(blocks, axis=1)))) == pytest.approx(0.1, abs=0.01)


# -- source rates ------------------------------------------------------------------------------


SOURCE_RATES = [
    (suffix, source_rate)
    for suffix in (".wav", ".flac", ".mp3", ".m4a")
    for source_rate in (8000, 11025, 44100, 48000, 96000)
    if not (suffix == ".mp3" and source_rate > 48000)  # MP3 stops at 48 kHz
    if not (suffix == ".m4a" and source_rate < 16000)  # see test_aac_end_padding_is_trimmed
]


@pytest.mark.parametrize(("suffix", "source_rate"), SOURCE_RATES)
@pytest.mark.parametrize("rate", [22050, 16000])
def test_any_source_rate(tmp_path: Path, source_rate: int, suffix: str, rate: int) -> None:
    path = S.write_audio(tmp_path / f"r{suffix}", S.sine(440.0, 3.0, source_rate), source_rate)
    reader, blocks = read_blocks(path, sample_rate=rate)
    assert reader.info.source_rate == source_rate
    y = np.concatenate(blocks, axis=1)
    assert y.shape[0] == 1
    assert y.shape[1] / rate == pytest.approx(3.0, abs=TOLERANCE_S)
    assert dominant_hz(y[0, rate : 2 * rate], rate) == pytest.approx(440.0, abs=1.5)
    assert float(np.max(np.abs(y[0, rate : 2 * rate]))) == pytest.approx(0.5, abs=0.05)


def test_aac_end_padding_is_trimmed(tmp_path: Path) -> None:
    path = S.write_audio(tmp_path / "low.m4a", S.sine(440.0, 3.0, 8000), 8000)
    reader, blocks = read_blocks(path)
    assert reader.info.declared_seconds == 3.0
    assert sum(b.shape[1] for b in blocks) / 22050 == pytest.approx(3.0, abs=TOLERANCE_S)


@pytest.mark.parametrize("source_rate", [8000, 16000, 24000])
@pytest.mark.parametrize("suffix", [".opus", ".webm"])
def test_opus_encoded_at_its_lower_rates(tmp_path: Path, source_rate: int, suffix: str) -> None:
    path = S.write_audio(tmp_path / f"o{suffix}", S.sine(440.0, 3.0, source_rate), source_rate)
    _, blocks = read_blocks(path)
    y = np.concatenate(blocks, axis=1)
    assert y.shape[1] / 22050 == pytest.approx(3.0, abs=TOLERANCE_S)
    assert dominant_hz(y[0, 22050:44100], 22050) == pytest.approx(440.0, abs=1.5)


# -- memory ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ten_minutes_decode_in_bounded_blocks(tmp_path: Path) -> None:
    path, minutes, src_rate = tmp_path / "long.wav", 10, 22050
    one_second = pcm16(S.sine(440.0, 1.0, src_rate, amp=0.5))
    with wave.open(str(path), "wb") as w:  # written a second at a time: never held whole
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(src_rate)
        for _ in range(minutes * 60):
            w.writeframes(one_second)

    rate, longest, total = 16000, 0, 0
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with AudioReader(path, sample_rate=rate, block_seconds=4.0) as reader:
            for block in reader:
                longest = max(longest, block.shape[1])
                total += block.shape[1]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert longest == reader.block_samples == 64000
    assert total / rate == pytest.approx(minutes * 60, abs=TOLERANCE_S)
    # The whole signal is 38 MB of float32; one block is 256 kB.
    assert peak < 4_000_000, f"peak traced memory {peak / 1e6:.1f} MB"


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 4096, 65536])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_are_unsupported(tmp_path: Path, size: int, seed: int) -> None:
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    assert error_code(path) == "UNSUPPORTED_FORMAT"


@pytest.mark.parametrize(("seed", "size"), [(1, 1 << 18), (1, 1 << 20), (29, 1 << 20)])
def test_large_random_bytes_are_unsupported(tmp_path: Path, seed: int, size: int) -> None:
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    assert error_code(path) == "UNSUPPORTED_FORMAT"


@pytest.mark.parametrize("name", ["image.mp3", "image.wav", "image.png"])
def test_an_image_is_unsupported(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(png_bytes())
    assert error_code(path) == "UNSUPPORTED_FORMAT"


def test_truncated_mp3_is_a_decode_error(tmp_path: Path, music_mp3: Path) -> None:
    data = music_mp3.read_bytes()
    assert b"Xing" in data[:2048] or b"Info" in data[:2048]  # the header declares 20 s
    path = tmp_path / "half.mp3"
    path.write_bytes(data[: len(data) // 2])
    with AudioReader(path) as reader:
        assert reader.info.declared_seconds == pytest.approx(20.0, abs=0.1)
        with pytest.raises(AudioError, match="truncated") as info:
            list(reader)
    assert info.value.code == "DECODE_ERROR"


@pytest.mark.parametrize("suffix", [".flac", ".wav"])
def test_truncated_files_with_declared_length(
    tmp_path: Path, audio_files: dict[str, AudioFile], suffix: str
) -> None:
    data = audio_files[suffix].path.read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(data[: len(data) // 2])
    assert error_code(path) == "DECODE_ERROR"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp3"
    path.touch()
    assert error_code(path) == "EMPTY_AUDIO"


def test_wav_with_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    path.write_bytes(wav_bytes(b""))
    assert error_code(path) == "EMPTY_AUDIO"


def test_wav_claiming_4_gb(tmp_path: Path) -> None:
    path = tmp_path / "liar.wav"
    one_second = pcm16(S.sine(440.0, 1.0, 22050))
    path.write_bytes(wav_bytes(one_second, declared=0xFFFF_FFF0))  # 27 h at 44100 B/s
    assert error_code(path, max_duration_s=DEFAULT_MAX_S) == "TOO_LONG"
    with AudioReader(path, max_duration_s=None) as reader:
        assert reader.info.declared_seconds == pytest.approx(0xFFFF_FFF0 / 44100)
        with pytest.raises(AudioError, match="truncated") as info:
            list(reader)
        assert info.value.code == "DECODE_ERROR"
        assert reader.decoded_seconds == pytest.approx(1.0, abs=TOLERANCE_S)


@pytest.mark.parametrize("declared", [0, 0xFFFF_FFFF])
def test_wav_of_unknown_length_decodes(tmp_path: Path, declared: int) -> None:
    """Streaming writers put 0 or 0xFFFFFFFF in the data size: length unknown, not an error."""
    path = tmp_path / "stream.wav"
    path.write_bytes(wav_bytes(pcm16(S.sine(440.0, 3.0, 22050)), declared=declared))
    _, blocks = read_blocks(path, max_duration_s=DEFAULT_MAX_S)
    assert sum(b.shape[1] for b in blocks) == 3 * 22050


@pytest.mark.parametrize(
    "header",
    [
        {"channels": 0},
        {"channels": 65},
        {"rate": 0},
        {"rate": 100},
        {"rate": 768_001},
        {"rate": 10_000_000},
        {"rate": 0xFFFF_FFFF},
    ],
    ids=lambda h: "-".join(f"{k}={v}" for k, v in h.items()),
)
def test_wav_with_impossible_header(tmp_path: Path, header: dict[str, int]) -> None:
    path = tmp_path / "bad.wav"
    channels = max(1, header.get("channels", 1))
    data = pcm16(np.tile(S.sine(440.0, 1.0, 22050), channels))
    path.write_bytes(wav_bytes(data, **header))
    assert error_code(path) == "UNSUPPORTED_FORMAT"


def test_wav_with_a_codec_ffmpeg_cannot_decode(tmp_path: Path) -> None:
    path = tmp_path / "tag.wav"
    wav = bytearray(wav_bytes(pcm16(S.sine(440.0, 1.0, 22050))))
    wav[20:22] = struct.pack("<H", 0x7777)  # the format tag: no such codec
    path.write_bytes(bytes(wav))
    assert error_code(path) == "UNSUPPORTED_FORMAT"


def test_missing_path(tmp_path: Path) -> None:
    assert error_code(tmp_path / "nope.mp3") == "NOT_FOUND"


def test_directory_is_not_found(tmp_path: Path) -> None:
    assert error_code(tmp_path) == "NOT_FOUND"


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".flac", ".opus", ".m4a", ".webm"])
def test_longer_than_max_duration(tmp_path: Path, suffix: str) -> None:
    path = S.write_audio(tmp_path / f"three{suffix}", S.sine(440.0, 3.0, 48000), 48000)
    assert error_code(path, max_duration_s=2.0) == "TOO_LONG"
    _, blocks = read_blocks(path, max_duration_s=3.5)
    assert sum(b.shape[1] for b in blocks) / 22050 == pytest.approx(3.0, abs=TOLERANCE_S)


def test_longer_than_declared_is_caught_while_decoding(tmp_path: Path) -> None:
    """An mp3 whose Xing header under-declares its length is stopped once decoding passes max."""
    path = S.write_audio(tmp_path / "long.mp3", S.sine(440.0, 6.0, 44100), 44100)
    data = bytearray(path.read_bytes())
    tag = max(data.find(b"Xing"), data.find(b"Info"))
    flags, frames = struct.unpack(">II", data[tag + 4 : tag + 12])
    assert flags & 1  # the frame count is present
    data[tag + 8 : tag + 12] = struct.pack(">I", frames // 6)  # claim 1 s
    path.write_bytes(bytes(data))
    with AudioReader(path, max_duration_s=2.0, block_seconds=0.5) as reader:
        assert reader.info.declared_seconds == pytest.approx(1.0, abs=0.1)
        with pytest.raises(AudioError) as info:
            for _ in reader:
                pass
    assert info.value.code == "TOO_LONG"
    assert 2.0 < reader.decoded_seconds <= 2.5 + TOLERANCE_S
