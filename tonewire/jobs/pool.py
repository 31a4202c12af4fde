"""A pool of long-lived worker processes that stream results and can be cancelled mid-task.

``concurrent.futures.ProcessPoolExecutor`` can neither stream partial results nor stop a
running task, and both are the point here: each worker has a duplex pipe; ``run`` yields the
worker's messages as they come; ``cancel`` kills the worker (DSP holds no locks worth keeping)
and a fresh one is spawned for the next task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from tonewire.errors import TonewireError
from tonewire.jobs.worker import worker_main

log = logging.getLogger(__name__)


class WorkerLost(TonewireError):
    """The worker process died (killed, crashed or cancelled) before finishing its task."""

    code = "WORKER_LOST"


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    task_id: str | None = None
    cancelled: bool = field(default=False)


class WorkerPool:
    def __init__(self, size: int, *, heap_retain_bytes: int = 0) -> None:
        if size < 1:
            raise ValueError("the pool needs at least one worker")
        self.size = size
        self.heap_retain_bytes = heap_retain_bytes
        self._ctx = mp.get_context("spawn")  # no forked copies of the server's threads
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._busy: dict[str, _Worker] = {}
        self._all: list[_Worker] = []
        self._reader = ThreadPoolExecutor(max_workers=size, thread_name_prefix="tonewire-pipe")
        self._closed = False

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=worker_main,
                                 args=(child, os.getpid(), self.heap_retain_bytes),
                                 daemon=True, name="tonewire-worker")
        proc.start()
        child.close()
        worker = _Worker(process=proc, conn=parent)
        self._all.append(worker)
        return worker

    async def start(self) -> None:
        for _ in range(self.size):
            self._idle.put_nowait(await asyncio.to_thread(self._spawn))

    async def run(self, task_id: str, task: dict[str, Any]
                  ) -> AsyncIterator[list[tuple[Any, ...]]]:
        """Run ``task`` on the next free worker; yield its messages, in order, in lists of
        those that were waiting together (so the caller can store a burst of segments in one
        write), until ``("done",)``.

        Raises :class:`WorkerLost` if the worker dies or the task is cancelled.
        """
        worker = await self._idle.get()
        if not worker.process.is_alive():
            self._discard(worker)
            worker = await asyncio.to_thread(self._spawn)
        worker.task_id, worker.cancelled = task_id, False
        self._busy[task_id] = worker
        loop = asyncio.get_running_loop()
        healthy = False
        try:
            worker.conn.send(task)
            while True:
                try:
                    msgs = await loop.run_in_executor(self._reader, _recv_waiting,
                                                      worker.conn)
                except (EOFError, OSError) as exc:
                    reason = "cancelled" if worker.cancelled else "died"
                    raise WorkerLost(f"worker {reason} during task {task_id}") from exc
                if msgs[-1][0] == "done":
                    healthy = True
                    if len(msgs) > 1:
                        yield msgs[:-1]
                    return
                yield msgs
        finally:
            self._busy.pop(task_id, None)
            worker.task_id = None
            if healthy and not self._closed:
                self._idle.put_nowait(worker)
            else:
                self._kill(worker)
                self._discard(worker)
                if not self._closed:
                    self._idle.put_nowait(await asyncio.to_thread(self._spawn))

    def cancel(self, task_id: str) -> bool:
        """Stop the worker running ``task_id`` now; its ``run`` raises :class:`WorkerLost`."""
        worker = self._busy.get(task_id)
        if worker is None:
            return False
        worker.cancelled = True
        self._kill(worker)
        return True

    def running(self) -> list[str]:
        return list(self._busy)

    @staticmethod
    def _kill(worker: _Worker) -> None:
        # Only the process: its end of the pipe closes, so a blocked reader sees EOF. The
        # parent end is closed in _discard, once no thread reads it.
        if worker.process.is_alive():
            worker.process.kill()

    def _discard(self, worker: _Worker) -> None:
        if worker in self._all:
            self._all.remove(worker)
        worker.process.join(timeout=1)
        worker.conn.close()

    async def close(self) -> None:
        self._closed = True
        for worker in list(self._all):
            if worker.task_id is None and not worker.conn.closed:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
        for worker in list(self._all):
            await asyncio.to_thread(worker.process.join, 2)
            self._kill(worker)
            self._discard(worker)
        self._reader.shutdown(wait=False, cancel_futures=True)


_MAX_BATCH = 64


def _recv_waiting(conn: Connection) -> list[tuple[Any, ...]]:
    """One message (blocking), then whatever else is already waiting, up to ``("done",)``."""
    msgs: list[tuple[Any, ...]] = [conn.recv()]
    while msgs[-1][0] != "done" and len(msgs) < _MAX_BATCH and conn.poll():
        msgs.append(conn.recv())
    return msgs
