"""How much the exporter may ask of the API: request budgets, rate-limit pauses, auth back-off.

A budget belongs to a token source and is shared by every target using it; it is kept across
token rotation and reload (token sources compare by kind and reference, not by content).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from exporter.client import ApiError, ApiResponse
from exporter.config import TokenSource
from exporter.reasons import Reason

log = logging.getLogger("unpod_exporter.budget")
MAX_PAUSE = 3600.0
DEFAULT_RATE_LIMIT_PAUSE = 60.0


class _Window:
    """Tokens that come back ``span`` seconds after they were spent (a sliding window)."""

    def __init__(self, limit: float, span: float) -> None:
        self.limit = limit
        self.span = span
        self._spent: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self._spent and self._spent[0] <= now - self.span:
            self._spent.popleft()
        # A shard's share can be fractional: round down, but never below one a window.
        if len(self._spent) < max(1, math.floor(self.limit)):
            return 0.0
        return self._spent[0] + self.span - now

    def spend(self, now: float) -> None:
        self._spent.append(now)


class RequestBudget:
    """The requests one token source may make: a per-minute (and optional per-day) cap, plus
    pauses the API asked for (429 Retry-After, an exhausted X-RateLimit-Remaining)."""

    def __init__(self, per_minute: float, per_day: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._windows: list[_Window] = []
        self.configure(per_minute, per_day)
        self.paused_until = 0.0
        self._pace = 0.0  # minimum spacing while the API says we are close to its limit
        self._pace_until = 0.0
        self._last = float("-inf")

    def configure(self, per_minute: float, per_day: float | None) -> None:
        old = {w.span: w for w in self._windows}
        windows = []
        for limit, span in ((per_minute, 60.0), (per_day or 0, 86400.0)):
            if limit > 0:
                window = old.get(span) or _Window(limit, span)
                window.limit = limit
                windows.append(window)
        self._windows = windows

    def wait(self) -> float:
        """Seconds until the next request may be sent (0: now)."""
        now = self.clock()
        delay = max(0.0, self.paused_until - now)
        if now < self._pace_until:
            delay = max(delay, self._last + self._pace - now)
        for window in self._windows:
            delay = max(delay, window.wait(now))
        return delay

    def spend(self) -> None:
        now = self.clock()
        self._last = now
        for window in self._windows:
            window.spend(now)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self.clock() + min(seconds, MAX_PAUSE))

    def observe(self, response: ApiResponse[object]) -> None:
        """Take what an answer says of the API's limit: a 429 pauses (for its Retry-After,
        else the limit's reset, else a minute); the rate-limit headers pace or pause."""
        outcome = response.outcome
        if isinstance(outcome, ApiError) and outcome.reason == Reason.RATE_LIMITED:
            self.pause(response.retry_after or response.ratelimit_reset
                       or DEFAULT_RATE_LIMIT_PAUSE)
        if response.retry_after is not None:
            return  # the API said exactly how long to wait
        self.observe_limit(response.ratelimit_remaining, response.ratelimit_limit,
                           response.ratelimit_reset)

    def observe_limit(self, remaining: int | None, limit: int | None,
                      reset: float | None) -> None:
        """Slow down ahead of the API's own limit: spread what remains until it resets."""
        if remaining is None:
            return
        reset_in = min(reset if reset is not None else DEFAULT_RATE_LIMIT_PAUSE, MAX_PAUSE)
        if remaining <= 0:
            self.pause(reset_in)
            return
        low = max(1, int(0.05 * limit)) if limit else 1
        if remaining <= low:
            self._pace = reset_in / remaining
            self._pace_until = self.clock() + reset_in


@dataclass(frozen=True)
class _Backoff:
    failures: int  # in a row
    until: float  # on the budget's clock
    error: ApiError  # the answer that started it


class AuthBackoff:
    """401/403 back-off per (org, token source): 2, 4, 8, ... intervals, up to an hour."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._state: dict[tuple[str, TokenSource], _Backoff] = {}

    def blocked(self, org: str, token: TokenSource) -> ApiError | None:
        """The error that started a back-off still running for this org and token, if any."""
        state = self._state.get((org, token))
        if state is None or self.clock() >= state.until:
            return None
        return state.error

    def failed(self, org: str, token: TokenSource, error: ApiError, interval: float) -> float:
        previous = self._state.get((org, token))
        if previous is not None and self.clock() < previous.until:
            return previous.until - self.clock()  # polls already in flight: one per round
        failures = (previous.failures if previous else 0) + 1
        delay = min(MAX_PAUSE, interval * 2.0**failures)
        self._state[(org, token)] = _Backoff(failures, self.clock() + delay, error)
        return delay

    def reset(self, org: str | None = None, token: TokenSource | None = None) -> None:
        if org is None and token is None:
            self._state.clear()
            return
        for key in [k for k in self._state if (org is None or k[0] == org)
                    and (token is None or k[1] == token)]:
            del self._state[key]
