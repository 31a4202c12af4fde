"""Keep freed memory in each process's heap for reuse, instead of handing it back at once.

glibc serves allocations over 128 KiB (a threshold it raises as such blocks are freed, up to
32 MiB) straight from the kernel with ``mmap``, and gives the top of the heap back once more
than twice that threshold lies free there. numpy's large temporaries are exactly such blocks:
a batch of live windows allocates and frees about 8 MiB of them per call, and a job's segment
a few MiB, so every call faulted in thousands of fresh, kernel-zeroed pages and returned them
after. On the benchmark machine (a Firecracker VM, where a page fault is dear) that was half the
cost of speech analysis: 1.1 ms per one-second window in batches of 16, 0.6 ms with the freed
memory kept (bench/README.md).

:func:`retain_freed_memory` sets both thresholds explicitly (``mallopt``), which also turns
glibc's adaptation of them off: blocks up to ``min(limit, 32 MiB)`` come from the heap, and up
to ``limit`` bytes of free memory stay at its top. The price is that much resident memory per
process that the kernel could otherwise reclaim. Elsewhere than glibc it does nothing.
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
"""glibc refuses a larger ``M_MMAP_THRESHOLD`` on 64-bit systems (half its arena size)."""


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
