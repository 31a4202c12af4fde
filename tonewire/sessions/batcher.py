"""Batch due windows from every live session into one vectorised call off the event loop.

Windows submitted in the same turn of the event loop are grouped by (rate, length) and run
as one array through the speech analysis in a worker process; each submitter awaits its own
row. With hundreds of sessions this turns hundreds of small numpy calls into a few large ones
and keeps DSP out of the loop.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits


@dataclass
class _Pending:
    samples: np.ndarray
    vad_state: Any
    future: asyncio.Future[tuple[Any, Any]]


BatchFn = Callable[[np.ndarray, int, list[Any]], list[tuple[Any, Any]]]
"""``fn(X [shape=(n, len)], sr, vad_states) -> [(features, new_vad_state), ...]``."""


def _exit_with_parent(parent: int) -> None:
    # A pool worker waits on a pipe whose both ends it holds, so it never sees EOF when the
    # server is killed (-9): watch the parent instead, and leave with it.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _init_worker(warm_module: str | None) -> None:
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="parent-watch").start()
    threadpool_limits(limits=1)  # numpy is already imported here: limit its pools directly
    if warm_module:  # pay the imports at start, not in the first live window
        importlib.import_module(warm_module)


def _noop() -> None:
    return None


class WindowBatcher:
    def __init__(self, fn: BatchFn, *, workers: int, max_batch: int = 256,
                 executor: Executor | None = None, warm_module: str | None = None) -> None:
        self.fn = fn
        self.warm_module = warm_module
        self.max_batch = max_batch
        self._executor = executor
        self._workers = workers
        self._pending: dict[tuple[int, int], list[_Pending]] = defaultdict(list)
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self._executor is None:
            import multiprocessing as mp

            self._executor = ProcessPoolExecutor(self._workers, mp_context=mp.get_context(
                "spawn"), initializer=_init_worker, initargs=(self.warm_module,))
            for _ in range(self._workers):  # start every worker now
                self._executor.submit(_noop)

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def analyze(self, samples: np.ndarray, *, sr: int, vad_state: Any
                      ) -> tuple[Any, Any]:
        """Analyse one window; returns ``(features, new_vad_state)``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[Any, Any]] = loop.create_future()
        self._pending[(sr, samples.size)].append(_Pending(samples, vad_state, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        groups, self._pending = self._pending, defaultdict(list)
        for (sr, _n), items in groups.items():
            for i in range(0, len(items), self.max_batch):
                task = asyncio.create_task(self._run(sr, items[i : i + self.max_batch]))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _run(self, sr: int, items: list[_Pending]) -> None:
        if self._executor is None:
            raise RuntimeError("batcher not started")
        batch = np.stack([it.samples for it in items])
        states = [it.vad_state for it in items]
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self.fn, batch, sr, states)
        except Exception as exc:  # surface to every waiting session, never crash the loop
            for it in items:
                if not it.future.done():
                    it.future.set_exception(exc)
            return
        for it, res in zip(items, results, strict=True):
            if not it.future.done():
                it.future.set_result(res)
