"""Time, as every time-dependent policy sees it: read the monotonic clock, arm a timer.

The gate, the scheduler, the budgets and the back-off take a ``Clock`` instead of calling
``time.monotonic()`` and ``loop.call_later`` themselves, so that a test can drive them on a
``ManualClock`` of its own: ``advance()`` moves time and fires the timers that fall due, in
order, without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds (never goes back; unrelated to the wall clock)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once, ``delay`` seconds from now (at once when not positive)."""


class MonotonicClock:
    """The real clock: ``time.monotonic`` and the running event loop's timers (the loop's
    clock is the same monotonic clock)."""

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)


class _ManualTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _ManualTimer, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _ManualTimer()
        heapq.heappush(self._timers, (self._now + max(0.0, delay), next(self._seq), timer,
                                      callback))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, firing every timer due by then at its own time."""
        end = self._now + seconds
        while self._timers and self._timers[0][0] <= end:
            when, _, timer, callback = heapq.heappop(self._timers)
            self._now = max(self._now, when)
            if not timer.cancelled:
                callback()
        self._now = end

    @property
    def pending(self) -> int:
        """Timers armed and not cancelled (a test checks that nothing is left behind)."""
        return sum(not timer.cancelled for _, _, timer, _ in self._timers)


SYSTEM_CLOCK: Clock = MonotonicClock()
