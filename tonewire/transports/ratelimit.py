"""Per-client rate limits: a token bucket per key (a client's IP address).

A bucket holds ``per_minute`` tokens and refills at ``per_minute / 60`` per second, so a
client may make a short burst of ``per_minute`` requests and then one every ``60 / per_minute``
seconds, never more than ``2 x per_minute`` in any minute. The table of buckets is bounded:
full buckets carry no information and are dropped first, then the least recently used.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_minute: int, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 0 or max_keys < 1:
            raise ValueError("need per_minute >= 0 and max_keys >= 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: tokens, t

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def acquire(self, key: str) -> float | None:
        """Take one token for ``key``: ``None`` if allowed, else seconds until one is free."""
        if not self.enabled:
            return None
        now = self.clock()
        tokens, then = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._trim(now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _trim(self, now: float) -> None:
        if len(self._buckets) <= self.max_keys:
            return
        refill_s = self.capacity / self.rate
        for key in [k for k, (tokens, t) in self._buckets.items()
                    if tokens + (now - t) * self.rate >= self.capacity or now - t >= refill_s]:
            del self._buckets[key]
        keep = self.max_keys * 9 // 10  # leave headroom: trimming is O(n), do it rarely
        while len(self._buckets) > keep:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` takes whole seconds; round up so a client that obeys it succeeds."""
    return str(max(1, math.ceil(seconds)))
