"""``rate_limit``: a token bucket with golang.org/x/time/rate's semantics, as the toolkit uses
it: one token every ``interval``, at most ``burst`` saved; a burst of 0 admits nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

from exporter.webconfig.schema import RateLimit


class RateLimiter:
    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed, self._last = now - self._last, now
        self._tokens = min(float(self._limit.burst),
                           self._tokens + elapsed / self._limit.interval)

    def allow(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def refund(self) -> None:
        """Give back a token taken by ``allow()`` (never above the burst)."""
        self._tokens = min(float(self._limit.burst), self._tokens + 1)
