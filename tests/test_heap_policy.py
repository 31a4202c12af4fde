"""The heap policy: with freed memory kept for reuse, repeated speech analysis stops faulting
in fresh pages, in a process of its own and in a live analysis worker.

Page-fault counts, not times: they do not depend on how busy the machine is. Without the
policy, glibc 2.36 faults in about 3800 pages (15 MiB) per call of 16 one-second windows; the
tests check only the policy's side, which is what tonewire controls.
"""

from __future__ import annotations

import asyncio
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tonewire.heap_policy import retain_freed_memory
from tonewire.sessions.batcher import WindowBatcher

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                reason="the policy acts on glibc's allocator only")

SR = 16000
ROWS = 16  # a batch size at which glibc's own adaptive thresholds keep faulting
SETTLED = 100
"""Most faults a call may take once the heap has grown: a few stray pages (a lazily grown
buffer, the kernel's bookkeeping; 38 seen once in the third call), against ~3800 per call
without the policy."""


def analysis_faults(calls: int) -> list[int]:
    """Minor page faults of each of ``calls`` speech analyses of the same batch."""
    from tonewire.analysis.speech import analyze_windows
    from tonewire.analysis.vad import EnergyVad

    x = (0.1 * np.random.default_rng(0).standard_normal((ROWS, SR))).astype(np.float32)
    vads = [EnergyVad() for _ in range(ROWS)]
    out = []
    for _ in range(calls):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        analyze_windows(x, sr=SR, vads=vads)
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return out


def fault_probe(x: np.ndarray, sr: int, keys: list[str], specs: list[str],
                spans: list[Any]) -> list[Any]:
    """Worker side: the page faults of analysing a batch, for every row."""
    return [analysis_faults(6)] * len(keys)


def speech_batch_faults(x: np.ndarray, sr: int, keys: list[str], specs: list[str],
                        spans: list[Any]) -> list[Any]:
    """Worker side: the live analysis of a batch, answering each row with its page faults."""
    from tonewire.sessions.builtin import speech_batch

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    speech_batch(x, sr, keys, specs, spans)
    return [resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before] * len(keys)


def test_no_limit_leaves_the_allocator_alone() -> None:
    assert retain_freed_memory(0) is False


def test_kept_memory_stops_repeated_page_faults() -> None:
    # A fresh process: this one's heap already holds whatever earlier tests freed.
    code = ("import sys; from tests.test_heap_policy import analysis_faults, "
            "retain_freed_memory; assert retain_freed_memory(64 << 20); "
            "print(analysis_faults(8))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120, cwd=Path(__file__).parents[1])
    faults = [int(v) for v in done.stdout.strip()[1:-1].split(",")]
    # The first calls grow the heap; from the fourth on, everything is reused.
    assert max(faults[3:]) <= SETTLED, faults


async def test_live_workers_keep_freed_memory() -> None:
    batcher = WindowBatcher(fault_probe, workers=1, gather_s=0.0,
                            heap_retain_bytes=64 << 20)
    batcher.start()
    try:
        faults = await batcher.analyze(np.zeros(4, dtype=np.int16), sr=SR, key="k",
                                       spec="energy")
    finally:
        await batcher.close()
    assert max(faults[3:]) <= SETTLED, faults


async def test_a_warmed_up_live_worker_runs_its_largest_batch_without_faulting() -> None:
    from tonewire.sessions.builtin import session_spec, warm_up_speech
    from tonewire.sessions.model import SessionOptions

    rows = 48  # without the warm-up, its first batch faults in ~15000 pages (first calls)
    batcher = WindowBatcher(speech_batch_faults, workers=1, gather_s=5.0, max_batch=rows,
                            heap_retain_bytes=64 << 20, warm_up=warm_up_speech)
    batcher.start()
    spec = session_spec(SessionOptions())
    pcm = (3000 * np.random.default_rng(1).standard_normal((rows, SR))).astype(np.int16)
    try:
        faults = await asyncio.gather(*(  # the last window fills the batch: it leaves at once
            batcher.analyze(pcm[i], sr=SR, key=f"s{i}", spec=spec, span=(0, SR))
            for i in range(rows)))
    finally:
        await batcher.close()
    assert max(faults) <= SETTLED, faults[0]
