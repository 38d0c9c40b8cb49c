"""How much the exporter may ask of the API: request budgets, rate-limit pauses, auth back-off.

A budget belongs to a token source and is shared by every target using it; it is kept across
token rotation and reload (token sources compare by kind and reference, not by content).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from exporter.client import ApiError, ApiResponse
from exporter.config import TokenSource
from exporter.reasons import Reason
from exporter.targets import ORG_WIDE, Target

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
class Stretch:
    """The effective interval of every org once a token's demand meets its cap, and (with
    change-driven polling) the factor on the idle interval of the spaces it drives, and
    whether the cap is below what plain polling would ask (``accounting``: the budget does
    not permit polling every space at every change)."""

    factor: float
    demand_per_minute: float
    intervals: dict[str, float]
    idle_factor: float = 1.0
    accounting: bool = False


IDLE_SHARE = 0.1  # of a cap kept for the idle refreshes when org-wide polls want it all


def _cap_per_minute(per_minute: float, per_day: float | None) -> float:
    caps = [per_minute] if per_minute > 0 else []
    if per_day:
        caps.append(per_day / 1440)
    return min(caps, default=math.inf)


def stretch_intervals(targets: Iterable[Target], per_minute: float, per_day: float | None,
                      extra_per_minute: Mapping[TokenSource, float] | None = None,
                      idle_interval: float | None = None,
                      followups: Mapping[str, float] | None = None,
                      ) -> dict[TokenSource, Stretch]:
    """One factor per token source stretches all its intervals so demand fits the cap.

    With change-driven polling (``idle_interval``), the spaces of an org whose org-wide
    target is polled cost one request per idle interval, plus the follow-ups its changes
    call for (``followups``: per org, polls per org-wide poll, as measured). The org-wide
    targets and their follow-ups (and spaces without an org-wide target) come first: they
    keep their interval whenever the cap allows it, less a tenth kept for the idle
    refreshes, and the spaces' idle interval takes the rest of the stretch. Detecting a
    change is worth little if the budget cannot then fetch what changed: that is why the
    follow-ups are paid for before org-wide polls are made more often."""
    by_token: dict[TokenSource, list[Target]] = {}
    for target in targets:
        by_token.setdefault(target.token, []).append(target)
    cap = _cap_per_minute(per_minute, per_day)
    result: dict[TokenSource, Stretch] = {}
    for token, members in by_token.items():
        extra = (extra_per_minute or {}).get(token, 0)
        driving = {t.org for t in members if t.space == ORG_WIDE} if idle_interval else set()
        driven = [t for t in members if t.space != ORG_WIDE and t.org in driving]
        first = [t for t in members if t.space == ORG_WIDE or t.org not in driving]
        plain = sum(60.0 / t.interval for t in members) + extra
        demand_first = sum(60.0 / t.interval * (1 + (followups or {}).get(t.org, 0.0)
                                                if t.space == ORG_WIDE else 1)
                           for t in first) + extra
        demand_idle = len(driven) * 60.0 / idle_interval if idle_interval else 0.0
        reserve = min(demand_idle, IDLE_SHARE * cap)
        factor = max(1.0, demand_first / (cap - reserve))
        left = cap - demand_first / factor
        idle_factor = max(1.0, demand_idle / left) if left > 1e-9 else max(
            factor, (demand_first + demand_idle) / cap)
        intervals = {t.org: t.interval * factor for t in members}
        result[token] = Stretch(factor, demand_first + demand_idle, intervals,
                                idle_factor if driven else 1.0,
                                accounting=bool(driven) and plain > cap)
    return result


def spare(stretch: Stretch, per_minute: float,
          per_day: float | None) -> tuple[float, float | None] | None:
    """What a token's scheduled polls (and discovery) leave of its caps, per minute and per
    day, for on-demand requests (``/probe``); None when nothing is left. A per-minute figure
    of 0 means no cap, as for RequestBudget."""
    minute = per_minute - stretch.demand_per_minute if per_minute > 0 else 0.0
    day = per_day - stretch.demand_per_minute * 1440 if per_day else None
    if (per_minute > 0 and minute < 1) or (day is not None and day < 1):
        return None
    return minute, day


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
