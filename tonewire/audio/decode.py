"""Streaming decode of anything FFmpeg reads into float32 blocks at the analysis rate.

Memory stays bounded whatever the duration: packets are decoded, resampled and handed out in
fixed-size blocks; nothing holds the whole file. Library errors become :mod:`tonewire.errors`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import av.error
import numpy as np

from tonewire.audio.riff import declared_wav_seconds
from tonewire.errors import DecodeError, EmptyAudio, SourceNotFound, TooLong, UnsupportedFormat

log = logging.getLogger(__name__)

# A stream outside these is a corrupt header, not audio (FFmpeg would try to allocate for it).
_MIN_SOURCE_RATE, _MAX_SOURCE_RATE = 1000, 768_000
_MAX_CHANNELS = 64
# Isolated corrupt packets are skipped (FFmpeg resynchronises); more than this is a broken file.
_MAX_BAD_PACKETS = 8
# Decoded audio this much shorter than the container declares means the file is truncated.
_TRUNCATED_FRACTION, _TRUNCATED_SLACK_S = 0.9, 1.0


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What the container says, before decoding."""

    path: str
    format: str
    codec: str
    source_rate: int
    source_channels: int
    channels: int
    """Channels of the decoded blocks: 1 for mono sources and for layouts FFmpeg cannot
    downmix (their channels are averaged), else 2 (FFmpeg's stereo downmix)."""
    declared_seconds: float | None
    title: str | None


class AudioReader:
    """Open an audio file and iterate over float32 blocks ``[shape=(channels, n)]``.

    Use as a context manager. ``info`` is available after opening; iterating decodes.
    ``decoded_seconds`` and ``bad_packets`` are updated as blocks are produced.

    Raises :class:`~tonewire.errors.AudioError` subclasses: ``NOT_FOUND``, ``EMPTY_AUDIO``,
    ``UNSUPPORTED_FORMAT`` and ``TOO_LONG`` on opening; ``DECODE_ERROR``, ``TOO_LONG`` and
    ``EMPTY_AUDIO`` while iterating.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sample_rate: int = 22050,
        block_seconds: float = 4.0,
        max_duration_s: float | None = None,
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        """What error messages call the file (an upload's own name, not our temp file's)."""
        self.sample_rate = sample_rate
        self.block_samples = max(1, round(block_seconds * sample_rate))
        self.max_duration_s = max_duration_s
        self.decoded_samples = 0
        self.bad_packets = 0
        self.good_packets = 0
        self._own_downmix = False
        self._container: Any = None
        self._stream: Any = None
        self.info = self._open()

    # -- opening ---------------------------------------------------------------------------
    def _open(self) -> AudioInfo:
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise SourceNotFound(f"cannot read {self.path}: {exc.strerror or exc}") from None
        if not self.path.is_file():
            raise SourceNotFound(f"{self.path} is not a file")
        if size == 0:
            raise EmptyAudio(f"{self.name} is empty (0 bytes)")
        with self.path.open("rb") as f:
            wav_seconds = declared_wav_seconds(f)
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError, MemoryError) as exc:
            raise UnsupportedFormat(f"{self.name} is not audio FFmpeg can read") from exc
        self._container = container
        try:
            return self._inspect(container, wav_seconds)
        except BaseException:
            self.close()
            raise

    def _inspect(self, container: Any, wav_seconds: float | None) -> AudioInfo:
        audio = [s for s in container.streams if s.type == "audio"]
        if not audio:
            raise UnsupportedFormat(f"{self.name} has no audio stream")
        stream = audio[0]
        ctx = stream.codec_context
        if ctx is None:  # a stream FFmpeg has no decoder for (an unknown WAV format tag)
            raise UnsupportedFormat(f"{self.name} uses an audio codec we cannot decode")
        rate = int(ctx.sample_rate or 0)
        channels = int(ctx.channels or 0)
        if not _MIN_SOURCE_RATE <= rate <= _MAX_SOURCE_RATE:
            raise UnsupportedFormat(f"{self.name} declares an impossible sample rate ({rate})")
        if not 1 <= channels <= _MAX_CHANNELS:
            raise UnsupportedFormat(f"{self.name} declares {channels} audio channels")
        declared = wav_seconds if wav_seconds is not None else _declared_seconds(container, stream)
        limit = self.max_duration_s
        if limit is not None and declared is not None and declared > limit:
            raise TooLong(f"{self.name} declares {declared:.0f} s; the limit is {limit:.0f} s")
        stream.thread_type = "AUTO"
        self._stream = stream
        standard = not str(stream.layout.name).endswith("channels")
        self._own_downmix = channels > 2 and not standard
        title = container.metadata.get("title") or stream.metadata.get("title")
        return AudioInfo(
            path=str(self.path),
            format=str(container.format.name),
            codec=str(ctx.name),
            source_rate=rate,
            source_channels=channels,
            channels=1 if channels == 1 or self._own_downmix else 2,
            declared_seconds=declared,
            title=str(title) if title else None,
        )

    # -- decoding --------------------------------------------------------------------------
    @property
    def decoded_seconds(self) -> float:
        return self.decoded_samples / self.sample_rate

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._container is None:
            raise ValueError("reader is closed")
        pending: list[np.ndarray] = []
        have = 0
        for chunk in self._resampled():
            pending.append(chunk)
            have += chunk.shape[1]
            if have >= self.block_samples:
                joined = np.concatenate(pending, axis=1)
                n_out = (have // self.block_samples) * self.block_samples
                for start in range(0, n_out, self.block_samples):
                    yield self._count(joined[:, start : start + self.block_samples])
                pending = [joined[:, n_out:]] if n_out < have else []
                have -= n_out
        if have:
            tail = self._trim_encoder_padding(np.concatenate(pending, axis=1))
            if tail.shape[1]:
                yield self._count(tail)
        self._check_complete()

    def _trim_encoder_padding(self, tail: np.ndarray) -> np.ndarray:
        """Cut AAC's end padding (up to one frame) to the exact length MP4 declares.

        MP4 durations are exact sample counts, unlike the estimates other containers give,
        so only that family is trimmed, and only by less than 200 ms.
        """
        declared = self.info.declared_seconds
        if declared is None or not self.info.format.startswith("mov,mp4"):
            return tail
        excess = self.decoded_samples + tail.shape[1] - round(declared * self.sample_rate)
        if 0 < excess <= min(tail.shape[1], round(0.2 * self.sample_rate)):
            return tail[:, : tail.shape[1] - excess]
        return tail

    def _count(self, block: np.ndarray) -> np.ndarray:
        self.decoded_samples += block.shape[1]
        if self.max_duration_s is not None and self.decoded_seconds > self.max_duration_s:
            raise TooLong(f"{self.name} runs past the {self.max_duration_s:.0f} s limit")
        return block

    def _resampled(self) -> Iterator[np.ndarray]:
        channels = self.info.channels
        layout = "mono" if channels == 1 else "stereo"
        # Packed float output: one buffer per frame, no per-plane copies (PyAV stacks planes).
        resampler = av.AudioResampler(format="flt", layout=layout, rate=self.sample_rate)
        try:
            for packet in self._container.demux(self._stream):
                try:
                    frames = packet.decode()
                except (av.error.InvalidDataError, av.error.PatchWelcomeError) as exc:
                    self._bad_packet(exc)
                    continue
                self.good_packets += 1
                for frame in frames:
                    if self._own_downmix:
                        frame = _mono_frame(frame)
                    frame.pts = None  # timestamps are counted from samples, never trusted
                    for out in resampler.resample(frame):
                        yield _planes(out, channels)
            for out in resampler.resample(None):
                yield _planes(out, channels)
        except (av.error.FFmpegError, MemoryError, ValueError) as exc:
            raise DecodeError(f"{self.name} could not be decoded: {exc}") from exc

    def _bad_packet(self, exc: Exception) -> None:
        self.bad_packets += 1
        log.debug("skipping corrupt packet in %s: %s", self.name, exc)
        if self.bad_packets > _MAX_BAD_PACKETS:
            if self.good_packets < self.bad_packets:
                # FFmpeg found frame-like headers in noise, and most of it does not decode.
                raise UnsupportedFormat(f"{self.name} is not audio FFmpeg can read")
            raise DecodeError(f"{self.name} is corrupt ({self.bad_packets} bad packets)")

    def _check_complete(self) -> None:
        if self.decoded_samples == 0:
            raise EmptyAudio(f"{self.name} contains no audio samples")
        declared = self.info.declared_seconds
        got = self.decoded_seconds
        if declared is not None and got < declared * _TRUNCATED_FRACTION - _TRUNCATED_SLACK_S:
            raise DecodeError(
                f"{self.name} is truncated: decoded {got:.1f} s of {declared:.1f} s"
            )

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _planes(frame: Any, channels: int) -> np.ndarray:
    """A packed float frame as ``[shape=(channels, n)]`` (a view of its one buffer: PyAV's
    own ``to_ndarray`` stacks planes, a copy per frame)."""
    data = np.frombuffer(frame.planes[0], dtype=np.float32, count=frame.samples * channels)
    return data.reshape(-1, channels).T


_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9.223372036854776e18}


def _mono_frame(frame: Any) -> Any:
    """Average every channel of a frame with no standard layout into a mono float frame.

    FFmpeg's resampler cannot remix such layouts (and PyAV crashes passing them through), so
    the mix is done here, before resampling.
    """
    fmt = frame.format
    name = str(fmt.name).rstrip("p")
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    planes = data if fmt.is_planar else data.reshape(-1, channels).T
    x = planes.astype(np.float32)
    if name == "u8":
        x -= 128.0
    if name in _INT_SCALE:
        x /= _INT_SCALE[name]
    out = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(x.mean(axis=0, keepdims=True)), format="fltp", layout="mono")
    out.sample_rate = frame.sample_rate
    return out


def _declared_seconds(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000.0
    return None
