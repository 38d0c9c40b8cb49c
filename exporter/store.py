"""The latest immutable state of every target, plus the exporter's own counters.

Poll results flow in through ``record``; the collector reads ``states()``. Each update replaces
a frozen ``TargetState`` as a whole, so a scrape never sees half of one poll.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from exporter.analytics import Analytics
from exporter.backlog.snapshot import BacklogState
from exporter.client import ApiError
from exporter.reasons import ErrorCounts
from exporter.targets import Target, TargetKey

_NO_ERRORS = ErrorCounts()


@dataclass(frozen=True, slots=True)
class TargetState:
    target: Target
    analytics: Analytics | None = None
    last_success: float | None = None  # Unix time
    progress_timestamp: float | None = None  # Unix time finished tasks last grew
    attempted: bool = False
    up: bool = False
    poll_duration: float | None = None
    errors: ErrorCounts = _NO_ERRORS  # failed polls by reason
    last_error: ApiError | None = None
    last_polled: float | None = None  # Unix time of the last successful request (last_success
    # also moves when change-driven polling confirms the target without one)
    backlog: BacklogState | None = None  # the backlog scan's, for the spaces it scans

    @property
    def shape(self) -> str:
        """The analytics shape of the last successful answer: published, platform or none."""
        if self.analytics is None:
            return "none"
        return self.analytics.shape


@dataclass(frozen=True)
class Transition:
    """What one recorded poll changed, for the poller's state-change log lines."""

    before: TargetState
    after: TargetState


def _progress(previous: TargetState, analytics: Analytics, now: float) -> float | None:
    """When finished tasks last grew; absent while no answer has told of finished tasks (a
    space without runs has no progress to date)."""
    if analytics.finished_tasks is None:
        return previous.progress_timestamp
    if previous.analytics is None or previous.progress_timestamp is None:
        return now
    finished, before = analytics.finished_tasks, previous.analytics.finished_tasks
    if finished is not None and before is not None and finished > before:
        return now
    return previous.progress_timestamp


class SnapshotStore:
    def __init__(self, max_staleness: float, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.max_staleness = max_staleness
        self._states: dict[TargetKey, TargetState] = {}
        self.api_requests: Counter[tuple[str, str, str]] = Counter()  # org, endpoint, outcome
        self.polls_skipped: Counter[str] = Counter()  # per org: requests change-driven saved
        self.ratelimit_remaining: dict[str, int] = {}
        self.poll_intervals: dict[str, float] = {}
        self.reload_successful = True
        self.reload_success_time = clock()
        self.listeners: list[Callable[[TargetKey], None]] = []  # told of each change
        self.generation = 0
        self.discovery_success: dict[str, bool] = {}
        self.discovery_success_time: dict[str, float] = {}
        self.backlog_stale_after = math.inf  # seconds after its last success a backlog goes
        # (backlog.interval as stretched + poll.max_staleness; set by the scan)

    # --- targets ---------------------------------------------------------------------------

    def set_targets(self, targets: Iterable[Target]) -> None:
        """Keep the state of every surviving identity; forget removed targets at once."""
        fresh: dict[TargetKey, TargetState] = {}
        for target in targets:
            old = self._states.get(target.key)
            fresh[target.key] = TargetState(target) if old is None else replace(old, target=target)
        self._states = fresh
        self.generation += 1  # the cached exposition reassembles at once after a reload
        orgs = {key[0] for key in fresh}
        for table in (self.ratelimit_remaining, self.poll_intervals, self.polls_skipped):
            for org in set(table) - orgs:
                del table[org]
        orgs.add("")  # requests that name no org: organization discovery
        for key in [k for k in self.api_requests if k[0] not in orgs]:
            del self.api_requests[key]

    def states(self) -> list[TargetState]:
        return list(self._states.values())

    def get(self, key: TargetKey) -> TargetState | None:
        return self._states.get(key)


    # --- results ---------------------------------------------------------------------------

    def count_request(self, org: str, outcome: object, ratelimit_remaining: int | None,
                      endpoint: str = "analytics") -> None:
        """Count one request to the API by endpoint (``analytics``, ``organizations``,
        ``spaces``, ``runs``, ``tasks``) and outcome."""
        reason = outcome.reason if isinstance(outcome, ApiError) else "ok"
        self.api_requests[(org, endpoint, reason)] += 1
        if ratelimit_remaining is not None and org in self.poll_intervals:
            self.ratelimit_remaining[org] = ratelimit_remaining

    def record(self, target: Target, outcome: Analytics | ApiError,
               duration: float) -> Transition | None:
        """Store a poll's final outcome; None when the target was removed meanwhile.
        A failure (``data: null`` included) keeps the previous figures, until they are
        stale, and the progress clock as they were: zeros would read as a collapse and move
        every delta() on the dashboards."""
        before = self._states.get(target.key)
        if before is None:
            return None
        now = self.clock()
        if isinstance(outcome, ApiError):
            after = replace(before, attempted=True, up=False, poll_duration=duration,
                            errors=before.errors.added(outcome.reason), last_error=outcome)
        else:
            after = replace(before, attempted=True, up=True, poll_duration=duration,
                            analytics=outcome, last_success=now, last_polled=now,
                            progress_timestamp=_progress(before, outcome, now))
        self._states[target.key] = after
        self._changed(target.key)
        return Transition(before, after)

    def set_backlog(self, key: TargetKey, backlog: BacklogState | None) -> None:
        """Replace a space's backlog state (the same one again: re-render, it went stale)."""
        before = self._states.get(key)
        if before is not None:
            self._states[key] = replace(before, backlog=backlog)
            self._changed(key)

    def _changed(self, key: TargetKey) -> None:
        for listener in self.listeners:
            listener(key)

    def confirm(self, target: Target) -> None:
        """Change-driven polling found the target unchanged without a request: it counts as a
        success now (its series stay, its health too); one request saved."""
        before = self._states.get(target.key)
        if before is None or not before.up:
            return
        self._states[target.key] = replace(before, last_success=self.clock())
        self.polls_skipped[target.org] += 1
        self._changed(target.key)

    def mark_skipped(self, target: Target, error: ApiError) -> None:
        """A poll skipped by back-off counts nothing, but a target never tried still gets its
        first (failed) state, so that readiness and unpod_up do not wait for the back-off."""
        before = self._states.get(target.key)
        if before is not None and not before.attempted:
            self._states[target.key] = replace(before, attempted=True, up=False,
                                               last_error=error)
            self._changed(target.key)

    # --- staleness -------------------------------------------------------------------------

    def stale_after(self, target: Target) -> float:
        interval = self.poll_intervals.get(target.org, target.interval)
        return max(self.max_staleness, 2 * interval)

    def fresh_analytics(self, state: TargetState, now: float) -> Analytics | None:
        """The analytics to export, or None once the last success is too old."""
        if state.analytics is None or state.last_success is None:
            return None
        if now - state.last_success > self.stale_after(state.target):
            return None
        return state.analytics

    def discovery_result(self, kind: str, success: bool) -> bool:
        """Record a discovery outcome; True when a failure is new (worth one log line)."""
        was = self.discovery_success.get(kind)
        self.discovery_success[kind] = success
        if success:
            self.discovery_success_time[kind] = self.clock()
        return not success and was is not False

    def mark_reload(self, successful: bool) -> None:
        self.generation += 1
        self.reload_successful = successful
        if successful:
            self.reload_success_time = self.clock()
