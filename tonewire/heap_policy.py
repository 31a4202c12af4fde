"""Keep freed memory in an analysis process's heap for reuse, instead of handing it back at once.

glibc serves allocations over its mmap threshold (128 KiB at first, raised to the size of each
such block freed, up to 32 MiB) straight from the kernel with ``mmap``, and gives the top of the
heap back once more free memory lies there than its trim threshold (which follows at twice the
mmap threshold). numpy's large temporaries are exactly such blocks: a batch of live windows
allocates and frees about 8-15 MiB of them per call, and a job's block a few MiB, so every call
faulted in thousands of fresh, kernel-zeroed pages and returned them after. On the benchmark
machine (a Firecracker VM, where a page fault is dear) that was half the cost of speech
analysis: 1.1 ms per one-second window in batches of 16, 0.6 ms with the freed memory kept, and
a fifth of a file job (bench/README.md).

:func:`retain_freed_memory` sets both thresholds explicitly (``mallopt``), which also turns
glibc's adaptation of them off: blocks up to ``min(limit, 32 MiB)`` come from the heap, and
free memory at its top is given back only past ``limit`` (then nearly all of it). It overrides
``MALLOC_*_THRESHOLD_`` / ``GLIBC_TUNABLES`` settings for these two. The costs: up to ``limit``
of resident memory per heap (the main one and each thread's arena) that the kernel could
otherwise reclaim, and blocks of that size mixed with long-lived ones may pin memory below
them. So only the analysis processes use it, whose allocations are those temporaries; the
server, which mixes pickled batches with thousands of connections' objects, keeps glibc's
defaults. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import platform
from typing import Final

DEFAULT_RETAIN_MB: Final = 64
"""``TONEWIRE_HEAP_RETAIN_MB``'s default."""

_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_MMAP_THRESHOLD_MAX: Final = 32 * 1024 * 1024
"""glibc's own ceiling for the adaptive threshold on 64-bit systems (older versions also refused
larger values)."""


def retain_freed_memory(limit_bytes: int) -> bool:
    """Let this process keep up to ``limit_bytes`` of freed memory for reuse (glibc only).

    Returns whether the policy is in force: ``False`` for ``limit_bytes <= 0`` (glibc's own
    defaults stay) or another C library.
    """
    if limit_bytes <= 0 or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    limit = min(limit_bytes, 2**31 - 1)  # mallopt takes an int
    return bool(mallopt(_M_MMAP_THRESHOLD, min(limit, _MMAP_THRESHOLD_MAX))
                and mallopt(_M_TRIM_THRESHOLD, limit))
