"""De-duplication of re-sent deliveries: the platform sends a task document again when it
did not read a 200 with JSON, and both of its senders (the task handler and the calls cron)
may report the same task."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

WINDOW = 3600.0  # a repeat within an hour is the same delivery
CAPACITY = 100_000  # keys held at most (16-byte digests: a few MiB), oldest dropped first


class Deduplicator:
    def __init__(self, window: float = WINDOW, capacity: int = CAPACITY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._seen)

    def first(self, key: bytes) -> bool:
        """True the first time ``key`` is offered within the window (and remember it); a
        repeat does not extend the window."""
        now = self._clock()
        seen = self._seen
        while seen and (now - next(iter(seen.values())) > self._window
                        or len(seen) >= self._capacity):
            seen.popitem(last=False)
        if key in seen:
            return False
        seen[key] = now
        return True
