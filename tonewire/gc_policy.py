"""Garbage collection for a server holding thousands of long-lived connections.

Every open connection keeps a chain of suspended coroutines alive (uvicorn's protocol, each
ASGI middleware, the route): about 140 objects the cyclic collector tracks, 200 000 at 500
live sessions (an ingest socket and a subscriber each). They never become garbage while the
connection lasts, but CPython 3.11 traverses all of them in every full (generation 2)
collection, and full collections keep coming as other objects trickle into the oldest
generation: measured at 500 streams, pauses of 70-140 ms of the event loop every few
seconds, which was most of the window-to-event p99 (bench/README.md).

So what survives a full collection is frozen (``gc.freeze``: kept out of later collections,
still freed by reference counting as usual). The one cost is cyclic garbage that includes a
frozen object: it cannot be found until the objects are unfrozen, so every
``full_every_s`` (``TONEWIRE_GC_FULL_INTERVAL_S``) one complete collection runs over
everything and freezes the survivors again: one long pause per interval instead of one every
few seconds, and such garbage lives at most that long.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


class LongLivedFreezer:
    """Freeze the survivors of each full collection; every ``full_every_s``, collect
    everything (unfrozen) once."""

    def __init__(self, *, full_every_s: float) -> None:
        self.full_every_s = full_every_s
        self._task: asyncio.Task[None] | None = None
        self._installed = False

    def start(self) -> None:
        """Collect and freeze what is alive now (the app as started), then keep freezing."""
        self.full_collection()
        if not self._installed:
            gc.callbacks.append(self._after_collection)
            self._installed = True
        if self.full_every_s > 0:
            self._task = asyncio.create_task(self._collect_forever(), name="gc-full")

    async def close(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._after_collection)
            self._installed = False
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        gc.unfreeze()  # an app stopped inside a longer-lived process leaves nothing frozen

    def full_collection(self) -> int:
        """Unfreeze, collect every generation, freeze the survivors; returns what was freed."""
        started = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()  # (the callback may already have: freezing twice is harmless)
        log.debug("full collection: %d objects freed, %d frozen, %.1f ms", freed,
                  gc.get_freeze_count(), (time.perf_counter() - started) * 1e3)
        return freed

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector, after it finished: only move lists, allocate nothing.
        if phase == "stop" and info.get("generation") == 2:
            gc.freeze()

    async def _collect_forever(self) -> None:
        while True:
            await asyncio.sleep(self.full_every_s)
            self.full_collection()
