"""The backlog scan's loop: which spaces are due, a few scans at once, their results into the
store, and backlogs withdrawn once their last success is too old.

A slow loop by design: each space is scanned at most every ``interval`` (stretched to what the
analytics polls leave of the budget), its requests go through the request gate at the lowest
priority (``Fetch``), and at most ``SCANS_AT_ONCE`` spaces are scanned at a time, so that a
space with a long backlog never holds the others' connections.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from exporter.backlog.policy import FIRST_ESTIMATE, mean_requests, scan_interval, stale_after
from exporter.backlog.scan import Fetch, ScanResult, ScanSettings, scan_space
from exporter.backlog.snapshot import BacklogState, failed, succeeded, visible
from exporter.config import TokenSource
from exporter.store import SnapshotStore
from exporter.targets import Target, TargetKey

log = logging.getLogger("unpod_exporter.backlog")
Key = TargetKey  # one target-key type (exporter.targets)
SCANS_AT_ONCE = 2
WATCH_GRAIN = 1.0  # seconds between two looks at staleness while nothing is due


@dataclass(frozen=True)
class ScanPlan:
    """The ``backlog:`` settings the loop runs with."""

    interval: float
    page_size: int
    max_requests: int
    max_staleness: float


# What the analytics polls leave of a token's budget: per minute and per day, None for no cap.
Spare = tuple[float | None, float | None]
NO_CAP: Spare = (None, None)


class BacklogScanner:
    def __init__(self, store: SnapshotStore, fetch_for: Callable[[Target, float], Fetch],
                 is_secret: Callable[[str], bool], *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """``fetch_for(target, deadline)``: requests for a space's scan, through the gate,
        each waiting for budget until ``deadline`` (on the ``monotonic`` clock)."""
        self._store = store
        self._fetch_for = fetch_for
        self._is_secret = is_secret
        self._clock = clock
        self._monotonic = monotonic
        self._plan = ScanPlan(600.0, 50, 20, 300.0)
        self._spaces: dict[Key, Target] = {}
        self._due: dict[Key, float] = {}
        # The loop wakes for every scan that ends (many a second with thousands of spaces):
        # it looks at the earliest due times and the oldest successes, never at every space.
        # Entries no longer current (a space rescheduled, removed, scanned again) are dropped
        # when they come up.
        self._due_heap: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()  # equal due times in the order they were set
        self._inflight: dict[Key, asyncio.Task[None]] = {}
        self._shown: set[Key] = set()  # spaces whose backlog figures are on /metrics
        # (last success, space) of shown spaces, one entry each: a space scanned again since
        # is pushed back with its newer success when its entry comes up
        self._successes: list[tuple[float, Key]] = []
        self._queued: dict[Key, float] = {}  # the time of each space's entry in _successes
        self._counts: Counter[TokenSource] = Counter()  # spaces per token source
        self._spares: Mapping[TokenSource, Spare] = {}
        self._intervals: dict[TokenSource, float] = {}  # effective, per token source
        self._per_scan: float | None = None
        self._wake = asyncio.Event()

    # --- configuration ---------------------------------------------------------------------

    def configure(self, plan: ScanPlan, spaces: Iterable[Target],
                  spares: Mapping[TokenSource, Spare] | None = None) -> None:
        """Adopt the settings, the spaces to scan and what each token's budget has to spare.
        New spaces get their first scan spread over the interval (no burst at start or after
        a discovery); the others keep their next time; a space no longer scanned loses its
        backlog series at once."""
        self._plan = plan
        fresh = {target.key: target for target in spaces}
        for key in set(self._spaces) - set(fresh):
            self._due.pop(key, None)
            self._shown.discard(key)
            self._queued.pop(key, None)
            self._store.set_backlog(key, None)
        self._spaces = fresh
        self._counts = Counter(target.token for target in fresh.values())
        self.set_spares(self._spares if spares is None else spares)
        now = self._monotonic()
        for rank, (key, target) in enumerate(fresh.items()):
            if key not in self._due:
                self._set_due(key, now + self.interval_for(target) * rank / len(fresh))
        self._wake.set()

    def _set_due(self, key: Key, due: float) -> None:
        self._due[key] = due
        heapq.heappush(self._due_heap, (due, next(self._seq), key))

    def set_spares(self, spares: Mapping[TokenSource, Spare]) -> None:
        self._spares = spares
        self._restretch()

    def interval_for(self, target: Target) -> float:
        """The space's effective scan interval (its token's, budget applied)."""
        return self._intervals.get(target.token, self._plan.interval)

    def _restretch(self) -> None:
        per_scan = self._per_scan if self._per_scan is not None else FIRST_ESTIMATE
        intervals = {token: scan_interval(self._plan.interval, count, per_scan,
                                          *self._spares.get(token, NO_CAP))
                     for token, count in self._counts.items()}
        if intervals != self._intervals:
            log.debug("backlog intervals", extra={"fields": {
                "longest": f"{max(intervals.values(), default=self._plan.interval):.0f}s",
                "requests_per_scan": f"{per_scan:.1f}"}})
        self._intervals = intervals
        longest = max(intervals.values(), default=self._plan.interval)
        self._store.backlog_stale_after = stale_after(longest, self._plan.max_staleness)

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = self._monotonic()
            self._withdraw_stale()
            while len(self._inflight) < SCANS_AT_ONCE and (
                    (first := self._first_waiting()) is not None and first[0] <= now):
                self._start(self._spaces[first[2]], now)
            self._wake.clear()
            first = self._first_waiting() if len(self._inflight) < SCANS_AT_ONCE else None
            wake_at = now + WATCH_GRAIN if first is None else min(now + WATCH_GRAIN, first[0])
            timer = loop.call_later(max(0.0, wake_at - now), self._wake.set)
            await self._wake.wait()
            timer.cancel()

    def _current_top(self) -> tuple[float, int, Key] | None:
        """The earliest entry of the due heap that is still a space's due time."""
        heap = self._due_heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _first_waiting(self) -> tuple[float, int, Key] | None:
        """The entry of the space not in flight that is due earliest."""
        aside = []  # spaces in flight still at the top (at most SCANS_AT_ONCE of them)
        while (top := self._current_top()) is not None and top[2] in self._inflight:
            aside.append(heapq.heappop(self._due_heap))
        for entry in aside:
            heapq.heappush(self._due_heap, entry)
        return top

    def _start(self, target: Target, now: float) -> None:
        self._set_due(target.key, now + self.interval_for(target))
        task = asyncio.create_task(self._scan(target), name=f"backlog {target.describe()}")
        self._inflight[target.key] = task
        task.add_done_callback(functools.partial(self._forget, target.key))

    def _forget(self, key: Key, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(key, None)
        self._wake.set()

    async def stop(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _withdraw_stale(self) -> None:
        """Withdraw the shown backlogs whose last success is too old: only the oldest
        successes are looked at (a newer one of the same space is further in the heap)."""
        now, stale_after = self._clock(), self._store.backlog_stale_after
        while self._successes and now - self._successes[0][0] > stale_after:
            queued, key = heapq.heappop(self._successes)
            if self._queued.get(key) != queued:
                continue  # no longer shown, or queued again since
            del self._queued[key]
            state = self._store.get(key)
            backlog = state.backlog if state is not None else None
            if backlog is None or visible(backlog, now, stale_after) is None:
                self._shown.discard(key)
                self._store.set_backlog(key, backlog)  # re-rendered without its figures
            elif backlog.last_success is not None:  # scanned again: look again when that ages
                self._queue_success(key, backlog.last_success)

    def _queue_success(self, key: Key, when: float) -> None:
        self._queued[key] = when
        heapq.heappush(self._successes, (when, key))

    # --- one scan --------------------------------------------------------------------------

    async def _scan(self, target: Target) -> None:
        plan = self._plan
        settings = ScanSettings(plan.page_size, plan.max_requests, self._is_secret)
        try:
            assert target.space_token is not None  # only spaces are scanned
            deadline = self._monotonic() + self.interval_for(target)
            result = await scan_space(self._fetch_for(target, deadline), target.space_token,
                                      settings, self._clock())
        except Exception:  # a bug must not stop the loop; it shows in the log instead
            log.exception("backlog scan crashed", extra={"fields": {
                "org": target.org, "space": target.space}})
            return
        self._record(target, result)

    def _record(self, target: Target, result: ScanResult) -> None:
        if result.skipped:
            return  # no budget in time: nothing sent is nothing to tell
        state = self._store.get(target.key)
        if state is None or target.key not in self._spaces:
            return  # removed meanwhile
        before = state.backlog or BacklogState()
        fields: dict[str, object] = {"org": target.org, "space": target.space,
                                     "requests": result.requests}
        if result.snapshot is None:
            assert result.error is not None
            after = failed(before, result.error.reason, result.requests)
            if before.last_error is None:
                log.warning("backlog scan failed", extra={"fields": {
                    **fields, "reason": result.error.reason,
                    "http_status": result.error.http_status}})
        else:
            agent_error = result.agent_error.reason if result.agent_error else None
            now = self._clock()
            after = succeeded(before, result.snapshot, now, result.requests, agent_error)
            if before.last_error is not None:
                log.info("backlog scan recovered", extra={"fields": fields})
            log.debug("backlog scanned", extra={"fields": {
                **fields, "open_runs": result.snapshot.open_runs,
                "complete": result.snapshot.complete,
                "agent_lists": "failed" if result.agent_error else "read"}})
            self._shown.add(target.key)
            if target.key not in self._queued:
                self._queue_success(target.key, now)
        self._store.set_backlog(target.key, after)
        self._per_scan = mean_requests(self._per_scan, result.requests)
        self._restretch()
