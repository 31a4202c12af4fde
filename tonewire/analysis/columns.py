"""Append-only table of named numpy columns: rows arrive in runs, reads see one array each."""

from __future__ import annotations

import numpy as np


class Columns:
    """Each ``append`` adds a run of rows to every column; ``get`` concatenates lazily, once."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {}
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def append(self, **columns: np.ndarray) -> None:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError("all columns of a run must have the same number of rows")
        if self._parts and set(columns) != set(self._parts):
            raise ValueError("every run must carry the same columns")
        for name, values in columns.items():
            self._parts.setdefault(name, []).append(np.asarray(values))
        self._rows += lengths.pop()

    def get(self, name: str) -> np.ndarray:
        parts = self._parts[name]
        if len(parts) > 1:
            parts[:] = [np.concatenate(parts)]
        return parts[0]
