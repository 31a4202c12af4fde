"""The sample buffer of one live session: PCM16 in, due analysis windows out.

Per frame the work is O(frame): the bytes are viewed as int16 and copied once into a buffer
that keeps the last window; no base64, no JSON, no per-sample Python. Windows are cut by the
session's sample clock, so their timestamps come from samples counted, never from arrival.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class DueWindow:
    start_sample: int
    end_sample: int
    samples: np.ndarray
    """float32 in [-1, 1) ``[shape=(window,)]`` (shorter for a finalised partial window)."""
    closed_at: float = 0.0
    """``time.monotonic()`` when its last sample arrived: for latency metrics only, never for
    timestamps."""


class SampleBuffer:
    def __init__(self, *, window: int, hop: int, start_sample: int = 0) -> None:
        if hop < 1 or window < hop:
            raise ValueError("need window >= hop >= 1")
        self.window = window
        self.hop = hop
        self.total = start_sample  # samples received over the session's life
        self.next_end = start_sample + window
        self._buf = np.zeros(4 * window, dtype=np.int16)
        self._fill = 0  # valid samples at the start of _buf; _buf[_fill - 1] is sample total-1

    def push(self, pcm: bytes | bytearray | memoryview) -> list[DueWindow]:
        """Add little-endian PCM16 bytes (even length); return the windows now complete."""
        x = np.frombuffer(pcm, dtype="<i2")
        if self._fill + x.size > self._buf.size:
            keep = min(self._fill, self.window)
            self._buf[:keep] = self._buf[self._fill - keep : self._fill]
            self._fill = keep
            if keep + x.size > self._buf.size:
                grown = np.zeros(2 * (keep + x.size), dtype=np.int16)
                grown[:keep] = self._buf[:keep]
                self._buf = grown
        self._buf[self._fill : self._fill + x.size] = x
        self._fill += x.size
        self.total += x.size
        due = []
        while self.total >= self.next_end:
            due.append(self._cut(self.next_end - self.window, self.next_end))
            self.next_end += self.hop
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
        hi = self._fill - (self.total - end)
        lo = hi - (end - start)
        samples = self._buf[max(lo, 0) : hi].astype(np.float32) / np.float32(32768.0)
        return DueWindow(start_sample=start, end_sample=end, samples=samples,
                         closed_at=time.monotonic())
