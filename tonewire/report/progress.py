"""A one-line progress bar for terminals (stderr), silent when not a TTY."""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    def __init__(self, *, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.label = label
        self.width = width
        self._last = -1

    def update(self, fraction: float | None, seconds: float) -> None:
        if not self.enabled:
            return
        if fraction is None:
            text = f"\r{self.label}  {seconds:7.1f} s decoded"
        else:
            pct = int(fraction * 100)
            if pct == self._last:
                return
            self._last = pct
            filled = int(fraction * self.width)
            bar = "█" * filled + "░" * (self.width - filled)
            text = f"\r{self.label}  {bar} {pct:3d}%"
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
