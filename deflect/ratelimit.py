"""In-process rate limiting: one token bucket per key (a client address or a session).

Pure logic with an injectable clock, so the web layer (deflect/web/limits.py) stays thin and
the arithmetic is unit-tested without sleeping. A limit of N per minute is a bucket of N
tokens refilled at N/60 per second: a burst of up to N requests (an as-you-type search is one
request every few hundred ms), then N per minute on average.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """Whether one request may go ahead, and if not, how long until it would."""

    allowed: bool
    retry_after: float = 0.0

    @property
    def retry_after_seconds(self) -> int:
        """Retry-After as HTTP wants it: whole seconds, at least 1 when refused."""
        return 0 if self.allowed else max(1, math.ceil(self.retry_after - 1e-9))


class RateLimiter:
    """Token buckets keyed by any string; thread-safe, bounded memory.

    A key not seen for a while is indistinguishable from a full bucket, so when more than
    `max_keys` keys are tracked the least recently used ones are forgotten: a flood of new
    sessions costs memory up to that bound and nothing more.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        if per_minute <= 0:
            raise ValueError("per_minute must be positive (0 means no limiter at all)")
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def hit(self, key: str) -> Decision:
        """Take one token for `key` if there is one; refused requests take nothing."""
        with self._lock:
            now = self._clock()
            tokens = self._refilled(self._buckets.pop(key, None), now)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                decision = Decision(True)
            else:
                self._buckets[key] = (tokens, now)
                decision = Decision(False, (1.0 - tokens) / self.rate)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return decision

    def peek(self, key: str) -> Decision:
        """What `hit` would decide for `key` now, taking nothing."""
        with self._lock:
            tokens = self._refilled(self._buckets.get(key), self._clock())
            return Decision(True) if tokens >= 1.0 else Decision(False, (1.0 - tokens) / self.rate)

    def _refilled(self, bucket: tuple[float, float] | None, now: float) -> float:
        """The tokens of a bucket (tokens, at) by `now`; a key not tracked has a full bucket."""
        if bucket is None:
            return self.capacity
        tokens, at = bucket
        return min(self.capacity, tokens + max(0.0, now - at) * self.rate)

    def __len__(self) -> int:
        return len(self._buckets)
