"""The garbage-collection policy: survivors of full collections are frozen; the periodic
complete collection still finds cyclic garbage that runs through frozen objects."""

from __future__ import annotations

import asyncio
import gc
import weakref

from tonewire.gc_policy import LongLivedFreezer


class Node:
    def __init__(self) -> None:
        self.ref: object = None


def _in_collected_generations(obj: object) -> bool:
    return any(o is obj for g in range(3) for o in gc.get_objects(generation=g))


async def test_survivors_of_a_full_collection_are_frozen_and_the_callback_goes_on_close(
) -> None:
    freezer = LongLivedFreezer(full_every_s=0)
    freezer.start()
    try:
        survivor = Node()
        assert _in_collected_generations(survivor)
        gc.collect()  # a full collection: the callback freezes what survived it
        assert not _in_collected_generations(survivor)
        assert gc.get_freeze_count() > 0
    finally:
        await freezer.close()
    assert gc.get_freeze_count() == 0
    assert freezer._after_collection not in gc.callbacks
    gc.collect()
    assert _in_collected_generations(survivor)  # unfrozen, and nothing freezes it again


async def test_the_complete_collection_frees_cycles_through_frozen_objects() -> None:
    freezer = LongLivedFreezer(full_every_s=0)
    freezer.start()
    try:
        holder = Node()
        gc.collect()  # holder is frozen now
        cycle = Node()
        cycle.ref, holder.ref = holder, cycle
        alive = weakref.ref(cycle)
        del holder, cycle
        gc.collect()
        assert alive() is not None  # a cycle through a frozen object: out of reach...
        assert freezer.full_collection() > 0
        assert alive() is None  # ...until the complete collection
    finally:
        await freezer.close()


async def test_the_complete_collection_runs_on_its_interval() -> None:
    freezer = LongLivedFreezer(full_every_s=0.05)
    freezer.start()
    try:
        holder = Node()
        gc.collect()
        cycle = Node()
        cycle.ref, holder.ref = holder, cycle
        alive = weakref.ref(cycle)
        del holder, cycle
        for _ in range(200):  # bounded: 10 s
            if alive() is None:
                break
            await asyncio.sleep(0.05)
        assert alive() is None
    finally:
        await freezer.close()
