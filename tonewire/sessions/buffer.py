"""The sample buffer of one live session: PCM16 in, due analysis windows out.

Per frame the work is O(frame) and tiny: the bytes are appended to a ``bytearray`` holding
what the next window needs (one memcpy, no numpy call, no base64, no JSON); a frame that
completes no window returns at once. A due window is cut as PCM16 bytes; the conversion to
float happens where the samples are analysed (a worker process), or on first use of
:attr:`DueWindow.samples`. Windows are cut by the session's sample clock, so their timestamps
come from samples counted, never from arrival.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

import numpy as np

_SCALE: Final = np.float32(32768.0)
_PCM16: Final = np.dtype("<i2")


class DueWindow:
    """One analysis window of a session, from ``start_sample`` (inclusive) to ``end_sample``.

    Made from PCM16 bytes (``pcm``) by the buffer, or from float samples (``samples``), as a
    finalised and padded tail is."""

    __slots__ = ("_pcm", "_samples", "closed_at", "end_sample", "start_sample")

    def __init__(self, *, start_sample: int, end_sample: int,
                 samples: np.ndarray | None = None, closed_at: float = 0.0,
                 pcm: bytes | None = None) -> None:
        if (samples is None) == (pcm is None):
            raise ValueError("a window is made of either float samples or PCM16 bytes")
        self.start_sample = start_sample
        self.end_sample = end_sample
        self.closed_at = closed_at
        """``time.monotonic()`` when its last sample arrived: for latency metrics only, never
        for timestamps."""
        self._pcm = pcm
        self._samples = samples

    @property
    def samples(self) -> np.ndarray:
        """float32 in [-1, 1) ``[shape=(window,)]`` (shorter for a finalised partial window)."""
        if self._samples is None:
            assert self._pcm is not None
            self._samples = np.frombuffer(self._pcm, dtype=_PCM16).astype(np.float32) / _SCALE
        return self._samples

    @property
    def rows(self) -> np.ndarray:
        """What to analyse: the PCM16 samples as int16 ``[shape=(window,)]`` (half the bytes
        to ship to a worker; ``int16 / 32768`` there equals :attr:`samples`), or the float
        samples of a window made from floats."""
        if self._pcm is not None:
            return np.frombuffer(self._pcm, dtype=_PCM16)
        return self.samples

    def __repr__(self) -> str:
        return f"DueWindow({self.start_sample}..{self.end_sample})"


_NONE: Final[tuple[DueWindow, ...]] = ()


class SampleBuffer:
    def __init__(self, *, window: int, hop: int, start_sample: int = 0) -> None:
        if hop < 1 or window < hop:
            raise ValueError("need window >= hop >= 1")
        self.window = window
        self.hop = hop
        self.total = start_sample  # samples received over the session's life
        self.next_end = start_sample + window
        self._buf = bytearray()  # PCM16 of samples [total - len(_buf) // 2, total)
        self._keep = 2 * window  # bytes a window needs

    def push(self, pcm: bytes | bytearray | memoryview) -> Sequence[DueWindow]:
        """Add little-endian PCM16 bytes (even length); return the windows now complete."""
        buf = self._buf
        buf += pcm
        self.total += len(pcm) // 2
        if self.total < self.next_end:
            return _NONE
        due = []
        while self.total >= self.next_end:
            due.append(self._cut(self.next_end - self.window, self.next_end))
            self.next_end += self.hop
        # Keep what the next window needs (deleting from the front of a bytearray is cheap).
        excess = len(buf) - self._keep
        if excess > 0:
            del buf[:excess]
        return due

    def flush(self, *, min_samples: int = 1) -> DueWindow | None:
        """The partial window since the last one (``finalize``), or None if there is none
        or it is shorter than ``min_samples`` (it then stays for the next window)."""
        last_end = self.next_end - self.hop
        start = max(last_end, self.total - self.window) if last_end < self.total else None
        if start is None or self.total - start < max(min_samples, 1):
            return None
        win = self._cut(start, self.total)
        self.next_end = self.total + self.window  # the next full window starts afresh
        return win

    def _cut(self, start: int, end: int) -> DueWindow:
        first = self.total - len(self._buf) // 2  # the sample at _buf[0]
        lo, hi = max(start - first, 0), end - first
        return DueWindow(start_sample=start, end_sample=end,
                         pcm=bytes(self._buf[2 * lo : 2 * hi]), closed_at=time.monotonic())
