"""Append-only numpy storage with amortised growth: appends cost O(rows added), reads are
views. A track's per-segment rows and per-frame onsets grow for hours, so neither appending
nor reading may copy everything each time."""

from __future__ import annotations

import numpy as np


class Growable:
    """An array along axis 0 whose capacity doubles when full."""

    def __init__(self, *, dtype: type | np.dtype = np.float64,
                 tail_shape: tuple[int, ...] = ()) -> None:
        self._buf = np.zeros((16, *tail_shape), dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def extend(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=self._buf.dtype)
        need = self._n + len(values)
        if need > len(self._buf):
            grown = np.zeros((max(need, 2 * len(self._buf)), *self._buf.shape[1:]),
                             dtype=self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = values
        self._n = need

    def view(self) -> np.ndarray:
        """The rows so far; valid until the next ``extend``."""
        return self._buf[: self._n]


class Columns:
    """Named columns of equal length, appended in runs of rows."""

    def __init__(self) -> None:
        self._cols: dict[str, Growable] = {}
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def append(self, **columns: np.ndarray) -> None:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError("all columns of a run must have the same number of rows")
        if self._cols and set(columns) != set(self._cols):
            raise ValueError("every run must carry the same columns")
        for name, values in columns.items():
            arr = np.asarray(values)
            col = self._cols.get(name)
            if col is None:
                col = self._cols[name] = Growable(dtype=arr.dtype, tail_shape=arr.shape[1:])
            col.extend(arr)
        self._rows += lengths.pop()

    def get(self, name: str) -> np.ndarray:
        return self._cols[name].view()
