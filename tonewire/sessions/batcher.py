"""Batch due windows from every live session into one vectorised call off the event loop.

Windows are grouped by worker and (rate, length) and run as one array through the speech
analysis in a worker process; each submitter awaits its own row. A worker has one batch in
flight: what arrives meanwhile is the next batch. With hundreds of sessions this turns
hundreds of small numpy calls into a few large ones and keeps DSP out of the loop.

A session always goes to the same worker (by a stable hash of its key), so per-session state
that cannot travel between processes (a Silero model's recurrent state, a native handle) lives
in that worker: the batch function receives session keys, not state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import multiprocessing as mp
import os
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from tonewire.worker_process import start_worker_process

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    key: str
    spec: str
    samples: np.ndarray
    span: Any
    sr: int
    future: asyncio.Future[Any]
    queued_at: float
    """``time.perf_counter()`` when queued (uvloop's ``loop.time()`` moves in whole ms)."""


BatchFn = Callable[[np.ndarray, int, list[str], list[str], list[Any]], list[Any]]
"""Worker-side ``fn(X [shape=(n, len)], sr, keys, specs, spans) -> [result per row]``;
``keys`` name the sessions (state kept in the worker), ``specs`` say how to make a new one's
state, ``spans`` are what each caller passed along with its row (its window's position)."""
ForgetFn = Callable[[list[str]], None]


class BatchObserver(Protocol):
    """Told what the batcher does (the server's metrics)."""

    def observe_live_batch(self, windows: int, waited_s: float, worker_s: float) -> None:
        """A batch came back: its windows, how long its oldest waited, its worker round trip."""

    def live_worker_restarted(self) -> None:
        """A worker died and a new one was started."""


WarmUpFn = Callable[[int], None]
"""Worker-side ``warm_up(rows)``, run once as the worker starts, with ``max_batch``."""


def _init_worker(parent: int, fn_module: str | None, heap_retain_bytes: int,
                 warm_up: WarmUpFn | None, max_batch: int) -> None:
    start_worker_process(parent, heap_retain_bytes=heap_retain_bytes)
    threadpool_limits(limits=1)  # numpy is already imported here: limit its pools directly
    if fn_module is not None:
        # Unpickling the batch function on the first window would otherwise import its
        # module (and all it imports) while hundreds of windows wait.
        importlib.import_module(fn_module)
    if warm_up is not None:
        # The first calls' one-time costs, and the heap's growth to the largest batch, paid
        # now: a batch larger than any before faults in fresh pages (10 us each here), which
        # slows it, so more windows wait for the next, larger one (seen at 500 streams).
        try:
            warm_up(max_batch)
        except Exception:  # an optimisation: a worker without it still serves (a raising
            # initializer would break the pool, and every restart would break it again)
            log.exception("live analysis worker warm-up failed; continuing without it")
    # What the imports made lives as long as the worker: out of every collection, or each full
    # one walks scipy's and numpy's objects (a 74 ms stall of every window in the batch).
    gc.collect()
    gc.freeze()


def _noop() -> None:
    return None


_RESTART_DELAY_S: Final = 1.0
_RESTART_DELAY_MAX_S: Final = 60.0

GATHER_S: Final = 0.02
"""How long the oldest waiting window waits for others before its worker takes them all as one
batch (``TONEWIRE_LIVE_GATHER_MS``). Each call to a worker costs the server event-loop CPU
(futures, pickling, wake-ups) and the worker a fixed ~0.7 ms of numpy calls whatever the batch
size (one one-second window alone: 1.4 ms; in a batch of 8: 0.7 ms each), so batches of a few
windows are far cheaper per window than single ones, for at most this much latency."""


class WindowBatcher:
    """Each worker runs one batch at a time. A batch leaves when its oldest window has waited
    ``gather_s`` (or ``max_batch`` windows wait), whether the worker was idle or just finished
    the previous batch: so under load a worker gets a steady batch of about
    ``rate x gather_s`` windows per call (one process round trip, one pickle and one
    vectorised call for all of them), instead of a large batch followed by a string of
    one-window calls for what arrived while it ran."""

    def __init__(self, fn: BatchFn, *, workers: int, forget: ForgetFn | None = None,
                 max_batch: int = 128, warm_up: WarmUpFn | None = None,
                 gather_s: float = GATHER_S, heap_retain_bytes: int = 0,
                 observer: BatchObserver | None = None) -> None:
        self.fn = fn
        self.observer = observer
        self.heap_retain_bytes = heap_retain_bytes
        self.gather_s = gather_s
        self.forget_fn = forget
        self.max_batch = max_batch
        self.warm_up = warm_up
        self.workers = workers
        self._executors: list[ProcessPoolExecutor] = []
        self._queues: list[list[_Pending]] = [[] for _ in range(workers)]
        self._busy = [False] * workers
        self._timers: list[asyncio.Handle | None] = [None] * workers  # the next dispatch
        self._running: set[asyncio.Task[None]] = set()
        self._closing = False
        # Restarts of a worker that keeps dying are spaced out (see _replace).
        self._restarts = [0] * workers
        self._started_at = [0.0] * workers
        self._next_restart = [0.0] * workers

    def start(self) -> None:
        self._executors = [self._new_executor() for _ in range(self.workers)]
        self._started_at = [time.monotonic()] * self.workers

    def _new_executor(self) -> ProcessPoolExecutor:
        ex = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker,
                                 initargs=(os.getpid(), self._fn_module(),
                                           self.heap_retain_bytes, self.warm_up,
                                           self.max_batch))
        ex.submit(_noop)  # start the worker now, not on the first window
        return ex

    def _replace(self, worker: int, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """The worker process died (killed, out of memory, a crash in native code): start a
        new one and return the executor now in place. The sessions' state (voice-activity
        detectors, tone baselines) died with it, so they start afresh. A worker that keeps
        dying is restarted at most once in 1, 2, 4 ... 60 s; until then its windows fail at
        once (the broken pool refuses them) instead of each spawning a process."""
        current = self._executors[worker]
        if self._closing or current is not broken:
            return current  # closing, or replaced already by the batch that found it first
        now = time.monotonic()
        if now < self._next_restart[worker]:
            return broken
        if now - self._started_at[worker] > _RESTART_DELAY_MAX_S:
            self._restarts[worker] = 0  # it had run fine for a while: not a crash loop
        delay = min(_RESTART_DELAY_S * 2 ** self._restarts[worker], _RESTART_DELAY_MAX_S)
        self._restarts[worker] += 1
        self._next_restart[worker] = now + delay
        log.error("live analysis worker %d died; starting a new one (the next restart waits "
                  "at least %.0f s)", worker, delay)
        try:
            fresh = self._new_executor()
        except Exception:  # out of memory or processes: windows fail until the next attempt
            log.exception("could not start live analysis worker %d", worker)
            return broken
        self._executors[worker] = fresh
        self._started_at[worker] = now
        broken.shutdown(wait=False, cancel_futures=True)
        if self.observer is not None:
            try:
                self.observer.live_worker_restarted()
            except Exception:
                log.exception("live batch observer failed")
        return fresh

    def _fn_module(self) -> str | None:
        name = getattr(self.fn, "__module__", None)
        return name if name and name != "__main__" else None

    async def close(self) -> None:
        self._closing = True
        for i, timer in enumerate(self._timers):
            if timer is not None:
                timer.cancel()
                self._timers[i] = None
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        for ex in self._executors:
            ex.shutdown(wait=False, cancel_futures=True)
        self._executors = []

    def worker_of(self, key: str) -> int:
        return zlib.crc32(key.encode()) % max(self.workers, 1)

    async def analyze(self, samples: np.ndarray, *, sr: int, key: str, spec: str,
                      span: Any = None) -> Any:
        """Analyse one window of session ``key``; returns the batch function's row result."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        worker = self.worker_of(key)
        queue = self._queues[worker]
        queue.append(_Pending(key, spec, samples, span, sr, fut, time.perf_counter()))
        if len(queue) >= self.max_batch and not self._busy[worker]:
            self._dispatch(worker)
        else:
            self._schedule(worker)
        return await fut

    def _schedule(self, worker: int) -> None:
        """Dispatch the worker's next batch once its oldest window has waited ``gather_s``
        (at once if it already has; windows closed in one turn of the loop go together)."""
        if self._busy[worker] or self._timers[worker] is not None or not self._queues[worker]:
            return
        loop = asyncio.get_running_loop()
        delay = self._queues[worker][0].queued_at + self.gather_s - time.perf_counter()
        self._timers[worker] = (loop.call_later(delay, self._dispatch, worker) if delay > 0
                                else loop.call_soon(self._dispatch, worker))

    def forget(self, key: str) -> None:
        """Drop a finished session's state in its worker (fire and forget)."""
        if self.forget_fn is not None and self._executors:
            # RuntimeError: the pool is broken (the state died with the worker) or shut down.
            with contextlib.suppress(RuntimeError):
                self._executors[self.worker_of(key)].submit(self.forget_fn, [key])

    def _dispatch(self, worker: int) -> None:
        """Send the worker its next batch: the waiting windows shaped like the oldest one."""
        timer, self._timers[worker] = self._timers[worker], None
        if timer is not None:  # dispatched early (a full batch): that timer would be stale
            timer.cancel()
        queue = [it for it in self._queues[worker] if not it.future.done()]  # not cancelled
        if self._busy[worker] or not queue:
            self._queues[worker] = queue
            return
        first = queue[0]
        shape = (first.sr, first.samples.shape, first.samples.dtype)
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        for it in queue:
            if len(batch) < self.max_batch and (it.sr, it.samples.shape,
                                                it.samples.dtype) == shape:
                batch.append(it)
            else:
                rest.append(it)
        self._queues[worker] = rest
        self._busy[worker] = True
        task = asyncio.create_task(self._run(worker, first.sr, batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, worker: int, sr: int, items: list[_Pending]) -> None:
        try:
            await self._analyse(worker, sr, items)
        finally:
            self._busy[worker] = False
            if not self._closing:
                self._schedule(worker)

    async def _analyse(self, worker: int, sr: int, items: list[_Pending]) -> None:
        """Run a batch and answer every window in it, whatever happens."""
        sent = time.perf_counter()
        try:
            results = await self._call(worker, sr, items)
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} results for {len(items)} windows")
        except asyncio.CancelledError:  # closing: no window waits forever
            for it in items:
                it.future.cancel()
            raise
        except Exception as exc:  # surface to every waiting session, never crash the loop
            for it in items:
                if not it.future.done():
                    it.future.set_exception(exc)
            return
        for it, res in zip(items, results, strict=True):
            if not it.future.done():
                it.future.set_result(res)
        if self.observer is not None:
            try:
                self.observer.observe_live_batch(len(items), sent - items[0].queued_at,
                                                 time.perf_counter() - sent)
            except Exception:
                log.exception("live batch observer failed")

    async def _call(self, worker: int, sr: int, items: list[_Pending]) -> list[Any]:
        if not self._executors:
            raise RuntimeError("batcher not started")
        batch = np.stack([it.samples for it in items])
        keys, specs, spans = ([it.key for it in items], [it.spec for it in items],
                              [it.span for it in items])
        loop = asyncio.get_running_loop()

        def submit(ex: ProcessPoolExecutor) -> asyncio.Future[list[Any]]:
            return loop.run_in_executor(ex, self.fn, batch, sr, keys, specs, spans)
        executor = self._executors[worker]
        try:
            future = submit(executor)
        except BrokenProcessPool:
            # It died between batches: this one never ran, so it may run on a new worker.
            executor = self._replace(worker, executor)
            future = submit(executor)  # refused again while restarts back off
        try:
            results: list[Any] = await future
        except BrokenProcessPool:
            self._replace(worker, executor)
            raise
        return results
