"""What every analysis process (a job worker, a live worker) does as it starts."""

from __future__ import annotations

import os
import threading
import time

from tonewire.heap_policy import retain_freed_memory


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def start_worker_process(parent: int, *, heap_retain_bytes: int) -> None:
    """Leave with the server, and keep freed memory for reuse (:mod:`tonewire.heap_policy`).

    ``parent`` is the server's pid, taken in the server: by the time a slow start reaches
    here, a dead server's children already report another parent. Watching it is needed
    because a worker blocked in a pipe it holds both ends of (a pool worker), or busy
    importing or analysing, never sees the server die (-9).
    """
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True,
                     name="parent-watch").start()
    # Each batch or block allocates and frees megabytes of numpy temporaries: reuse them.
    retain_freed_memory(heap_retain_bytes)
