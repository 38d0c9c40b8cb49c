"""When each target is due: every target once per interval, spread over it.

A heap of due times; one coroutine sleeps on one timer until the earliest, and hands every
target due by then to ``start`` (which polls it, or confirms it without a request). The first
round makes every target due at once (the gate paces it) so that ``/-/ready`` comes quickly;
after that each target keeps a fixed slot in its interval, its phase spreading the targets
evenly. ``make_due`` puts targets first in line now (an org's figures changed, a webhook
event arrived); the gate still decides when their requests go.

At most ``live_limit()`` polls of one token source exist as tasks at once: the rest of a burst
(the first round: every target due together) wait as entries, not as tasks parked at the
gate. Tens of thousands of parked tasks, each with its coroutine frames, were most of the
first round's peak memory, and the heap fragmentation they left stayed. The limit is per token
source so that one paced or paused budget holds only its own polls back.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from exporter.clock import SYSTEM_CLOCK, Clock
from exporter.config import TokenSource
from exporter.targets import Target, TargetKey

Start = Callable[[Target, float], "asyncio.Task[None] | None"]
DISPATCH_GRAIN = 0.025  # seconds: polls due this close together start on one wake-up


def next_slot(anchor: float, phase: float, interval: float, now: float) -> float:
    """The first slot ``anchor + phase + k*interval`` at least half an interval after now."""
    earliest = now + interval / 2
    k = math.ceil((earliest - anchor - phase) / interval)
    return anchor + phase + k * interval


class Scheduler:
    def __init__(self, *, refresh_at: Callable[[Target], float | None] = lambda _: None,
                 live_limit: Callable[[], int] = lambda: 1 << 62,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        """``refresh_at(target)``: an extra due time between two slots, if any;
        ``live_limit()``: how many polls of one token source may be in flight at once."""
        self.clock = clock
        self._refresh_at = refresh_at
        self._live_limit = live_limit
        self._inflight: dict[TargetKey, asyncio.Task[None]] = {}
        self._live: Counter[TokenSource] = Counter()
        # due entries popped while their token source had no room: (urgent first, due, key)
        self._held: dict[TokenSource, list[tuple[int, float, TargetKey]]] = {}
        self._urgent: set[TargetKey] = set()  # made due: first in line among the held
        self._targets: dict[TargetKey, Target] = {}
        self._intervals: dict[str, float] = {}  # per org: effective interval
        self._phases: dict[TargetKey, float] = {}
        self._due: dict[TargetKey, float] = {}
        self._heap: list[tuple[float, TargetKey]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._anchor = clock.now()

    # --- configuration ---------------------------------------------------------------------

    def set_targets(self, targets: Iterable[Target], intervals: Mapping[str, float]) -> None:
        """Adopt a target list and effective per-org intervals: new targets are due now,
        surviving ones keep their slot."""
        old = {key: self.interval(t) for key, t in self._targets.items()}
        self._targets = {t.key: t for t in targets}
        for key in set(self._due) - set(self._targets):
            del self._due[key]
        self._adopt(intervals, old)

    def set_intervals(self, intervals: Mapping[str, float]) -> None:
        """Adopt effective per-org intervals (a budget's new plan): a target whose interval
        changed is next due one new interval after its last slot (not half an interval after
        now, which would delay every poll of a plan that follows demand closely)."""
        self._adopt(intervals, {key: self.interval(t) for key, t in self._targets.items()})

    def _adopt(self, intervals: Mapping[str, float], old: Mapping[TargetKey, float]) -> None:
        now = self.clock.now()
        self._intervals = {t.org: intervals.get(t.org, t.interval)
                           for t in self._targets.values()}
        count = max(1, len(self._targets))
        self._phases = {key: self.interval(t) * i / count
                        for i, (key, t) in enumerate(self._targets.items())}
        for key, target in self._targets.items():
            interval = self.interval(target)
            if key not in self._due:
                self._schedule(key, now)
            elif (before := old.get(key)) != interval:
                last = self._due[key] - before if before is not None else now
                self._schedule(key, max(now, last + interval))
        self._wake.set()

    def target(self, key: TargetKey | tuple[str, str]) -> Target | None:
        return self._targets.get(TargetKey(*key))

    @property
    def targets(self) -> tuple[Target, ...]:
        return tuple(self._targets.values())

    def interval(self, target: Target) -> float:
        return self._intervals.get(target.org, target.interval)

    def make_due(self, keys: Iterable[TargetKey]) -> None:
        """Make these targets due now, in this order; those in flight keep their schedule."""
        now = self.clock.now()
        scheduled = False
        for rank, key in enumerate(keys):
            if key in self._targets and key not in self._inflight:
                self._schedule(key, now + rank * 1e-6)
                self._urgent.add(key)
                scheduled = True
        if scheduled:
            self._wake.set()

    def _schedule(self, key: TargetKey, due: float) -> None:
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))

    # --- the loop --------------------------------------------------------------------------

    def busy(self, key: TargetKey) -> bool:
        """Whether a poll of this target is in flight."""
        return key in self._inflight

    def dispatch(self, start: Start) -> float | None:
        """Start every target due within the grain (as far as each token source has room);
        returns when the next one is due."""
        # Polls due within the next few milliseconds start together: one wake-up serves
        # several of them, and the spread over the interval stays even at that grain.
        now = self.clock.now() + DISPATCH_GRAIN
        limit = max(1, self._live_limit())
        for token in list(self._held):
            self._release(token, limit, start, now)
        while self._heap and self._heap[0][0] <= now:
            due, key = heapq.heappop(self._heap)
            target = self._targets.get(key)
            if target is None or self._due.get(key) != due:
                continue  # removed, or rescheduled since this entry was pushed
            if self._live[target.token] >= limit:
                heapq.heappush(self._held.setdefault(target.token, []),
                               (key not in self._urgent, due, key))
                continue  # started when a poll of its token source ends
            self._start(target, due, start, now)
        return self._heap[0][0] if self._heap else None

    def _release(self, token: TokenSource, limit: int, start: Start, now: float) -> None:
        """Start held entries of a token source while it has room."""
        held = self._held[token]
        while held and self._live[token] < limit:
            _, due, key = heapq.heappop(held)
            target = self._targets.get(key)
            if target is not None and self._due.get(key) == due:
                self._start(target, due, start, now)
        if not held:
            del self._held[token]

    def _start(self, target: Target, due: float, start: Start, now: float) -> None:
        key = target.key
        self._urgent.discard(key)
        if key not in self._inflight and (task := start(target, now)) is not None:
            self._inflight[key] = task
            self._live[target.token] += 1
            task.add_done_callback(functools.partial(self._forget, key, target.token))
        due = next_slot(self._anchor, self._phases[key], self.interval(target), now)
        refresh = self._refresh_at(target)  # an idle refresh between slots
        self._schedule(key, refresh if refresh is not None and now < refresh < due else due)

    def _forget(self, key: TargetKey, token: TokenSource, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(key, None)
        self._live[token] -= 1
        if self._live[token] <= 0:
            del self._live[token]
        if token in self._held:
            self._wake.set()  # room for a held poll of this token source

    async def run(self, start: Start) -> None:
        """Hand due targets to ``start(target, now)`` until stopped (``now``: the time up to
        which due targets start together); the task it returns, if any, is the target's poll
        in flight: the target is not started again, nor made due, until it ends."""
        while not self._stopping:
            next_due = self.dispatch(start)
            self._wake.clear()
            timer = (self.clock.call_later(next_due - self.clock.now(), self._wake.set)
                     if next_due is not None else None)
            await self._wake.wait()
            if timer is not None:
                timer.cancel()

    async def stop(self, grace: float) -> None:
        """Start nothing more (``run`` returns); let polls in flight finish for ``grace``
        seconds, cancel the rest."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._inflight.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
