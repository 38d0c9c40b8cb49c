"""Change-driven polling: which due space needs a request, and which are confirmed for free.

An organization's org-wide figures aggregate its spaces, so while they have not changed since
a space's last successful poll, neither has the space: it is confirmed without a request until
``idle_interval`` has passed since that poll. When the org-wide figures change, every space
of the org not polled since is due at once, the active ones first (those whose last poll
showed a change), the longest unpolled of them first. The poller asks; this module decides.

When the budget cannot pay for polling every space at every change (``accounting``), the
quiet spaces wait for the active ones' answers: a ledger adds each org-wide change of the
counts and subtracts each space's; when the active spaces bring it to zero or below (calls
they made after the org-wide answer belong to the next change, which the ledger carries),
the quiet ones are confirmed instead of polled. The follow-up
requests each org-wide poll calls for are measured (``demand``), so that the budget's stretch
can pay for them too.

Trade-off (README): a change that leaves the org-wide figures exactly equal (one space up, one
down by the same amount) is seen within ``idle_interval``; so is a change in a space the
org-wide figures do not cover; under accounting, a quiet space's change is seen a poll or
two late when the active spaces made at least as many calls between the org-wide answer and
theirs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exporter.analytics import Analytics
from exporter.client import ApiError
from exporter.gate import Priority
from exporter.targets import ORG_WIDE, Target, TargetKey

Counts = dict[str, int]
DEMAND_WEIGHT = 0.5  # how fast a fall of the follow-ups per org-wide poll is believed
DEMAND_SHIFT = 0.1  # a relative change of demand that is worth stretching intervals again
REFRESH_MARGIN = 0.05  # of an interval: the idle refresh is sent this much before it is late


@dataclass
class _Org:
    figures: Analytics | None = None  # the last org-wide snapshot
    healthy: bool = False  # the last org-wide poll succeeded: its figures can be trusted
    changed_at: float = -math.inf  # monotonic time the figures last changed
    spaces: set[TargetKey] = field(default_factory=set)
    # the ledger: org-wide changes less the spaces' changes answered since (None: unknown)
    unexplained: Counts | None = None
    held: list[TargetKey] = field(default_factory=list)  # quiet spaces waiting for the accounting
    released: int = 0  # follow-up polls called for since the last org-wide poll
    demand: float = 0.0  # follow-up polls per org-wide poll, smoothed
    applied: float = 0.0  # the demand the current stretch was computed with
    measured_at: float = -math.inf  # the last org-wide answer folded into the demand


@dataclass
class _Space:
    polled_at: float  # monotonic time of the last successful request
    changed_at: float = -math.inf  # when its own figures last changed (activity order)
    figures: Analytics | None = None
    explained_at: float = -math.inf  # when the accounting last confirmed it without a request


def counts(analytics: Analytics) -> Counts:
    """The figures that add up from spaces to their org (averages and ratios do not)."""
    result: Counts = {}
    for name in ("total_calls", "completed_calls", "failed_calls", "total_tasks"):
        if (value := getattr(analytics, name)) is not None:
            result[name] = value
    result.update((f"status:{name}", value) for name, value in analytics.task_status)
    result.update((f"outcome:{name}", value) for name, value in analytics.call_outcomes)
    return result


def _plus(one: Counts, other: Counts) -> Counts:
    return {k: one.get(k, 0) + other.get(k, 0) for k in one.keys() | other.keys()
            if one.get(k, 0) + other.get(k, 0)}


def _minus(after: Counts, before: Counts) -> Counts:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after.keys() | before.keys()
            if after.get(k, 0) != before.get(k, 0)}


class Freshness:
    def __init__(self, enabled: bool = True, idle_interval: float = 600.0) -> None:
        self.enabled = enabled
        self.idle_interval = idle_interval
        self.demand_version = 0  # bumped when some org's follow-up demand shifted
        self._idle_factor: dict[str, float] = {}  # per org: the budget's stretch of idle
        self._intervals: dict[str, float] = {}  # per org: effective interval (stretched)
        self._accounting: frozenset[str] = frozenset()  # orgs whose budget cannot poll all
        self._orgs: dict[str, _Org] = {}
        self._spaces: dict[TargetKey, _Space] = {}

    def configure(self, enabled: bool, idle_interval: float, targets: Iterable[Target],
                  idle_factors: dict[str, float] | None = None,
                  accounting: Iterable[str] = (),
                  intervals: Mapping[str, float] | None = None) -> None:
        """Adopt a target list and the effective per-org intervals: orgs whose org-wide
        target this exporter polls drive their spaces; state of surviving targets is kept."""
        self.enabled, self.idle_interval = enabled, idle_interval
        self._idle_factor = dict(idle_factors or {})
        self._intervals = dict(intervals or {})
        self._accounting = frozenset(accounting)
        ordered = list(targets)
        driving = {t.org for t in ordered if t.space == ORG_WIDE}
        orgs = {org: self._orgs.get(org) or _Org() for org in driving}
        for org in orgs.values():
            org.spaces = set()
        for target in ordered:
            if target.space != ORG_WIDE and target.org in orgs:
                orgs[target.org].spaces.add(target.key)
        self._orgs = orgs
        keys = {t.key for t in ordered}
        self._spaces = {k: v for k, v in self._spaces.items() if k in keys}

    def idle(self, org: str) -> float:
        return self.idle_interval * self._idle_factor.get(org, 1.0)

    def refresh_at(self, target: Target) -> float | None:
        """When a space confirmed by its org gets its idle refresh: as late as the promise
        that its figures are never older than idle_interval plus one interval allows (less
        a margin for the request itself), not at the first slot after idle_interval, which
        would spend on average half an interval's worth of requests more."""
        space = self._spaces.get(target.key)
        if not self.enabled or target.space == ORG_WIDE or space is None:
            return None
        interval = self._intervals.get(target.org, target.interval)
        return space.polled_at + self.idle(target.org) + interval * (1 - REFRESH_MARGIN)

    def demand(self) -> dict[str, float]:
        """Per org: the follow-up polls each org-wide poll calls for, as last measured; taken
        as the figures the current stretch is computed with."""
        for org in self._orgs.values():
            org.applied = org.demand
        return {handle: org.demand for handle, org in self._orgs.items() if self.enabled}

    def priority(self, target: Target, now: float) -> Priority | None:
        """The budget priority of a due target's request, or None when the space is confirmed
        by its unchanged org-wide figures (no request)."""
        if not self.enabled or target.space == ORG_WIDE:
            return Priority.FIRST
        org = self._orgs.get(target.org)
        space = self._spaces.get(target.key)
        if org is None or not org.healthy or org.figures is None or space is None:
            return Priority.FIRST  # nothing to compare with: poll as before
        if self._pending(org, target.key):
            return Priority.CHANGED
        refresh = self.refresh_at(target)
        return Priority.IDLE if refresh is not None and now >= refresh else None

    def needs_request(self, target: Target, now: float) -> bool:
        return self.priority(target, now) is not None

    def observe(self, target: Target, outcome: Analytics | ApiError,
                now: float) -> list[TargetKey]:
        """Take a poll's outcome; returns the spaces to poll now (the org-wide figures
        changed, or the accounting could not explain the change), the active ones first."""
        org = self._orgs.get(target.org)
        if target.space != ORG_WIDE:
            return self._observe_space(org, target.key, outcome, now)
        if org is None:
            return []
        org.healthy = not isinstance(outcome, ApiError)
        if isinstance(outcome, ApiError):
            return []  # a failure (data: null included): nothing to compare
        self._measure(org, now, self._intervals.get(target.org, target.interval))
        before, org.figures = org.figures, outcome
        if before is None or outcome == before:
            return []
        org.changed_at = now
        if not self.enabled:
            return []
        due = sorted((k for k in org.spaces if k not in self._spaces
                      or self._spaces[k].polled_at < now), key=self._urgency)
        delta = _minus(counts(outcome), counts(before))
        org.held = []
        if target.org not in self._accounting or any(v < 0 for v in delta.values()):
            org.unexplained = None  # no accounting, or counts went down: start again
            return self._release(org, due)
        # the ledger runs on: what active spaces answered after the previous org-wide
        # answer (a call made meanwhile) is already subtracted, and is in this change
        org.unexplained = _plus(org.unexplained, delta) if org.unexplained is not None \
            else delta
        active = [k for k in due if self._active(k)]
        if delta and active and len(active) < len(due):
            org.held = [k for k in due if not self._active(k)]
            due = active
        return self._release(org, due)

    def _measure(self, org: _Org, now: float, interval: float) -> None:
        """Fold the follow-ups called for since the previous org-wide answer into the demand,
        per interval (an org-wide poll the budget skipped must not double it): a rise is
        taken at once (a calling window opens: the budget must pay for it now, or it is
        overdrawn for a minute), a fall smoothed over a couple of polls."""
        elapsed = now - org.measured_at
        polls = max(1, round(elapsed / interval)) if org.released and math.isfinite(elapsed) \
            else 1
        sample = org.released / polls
        org.demand = max(sample, org.demand + DEMAND_WEIGHT * (sample - org.demand))
        org.released, org.measured_at = 0, now
        if abs(org.demand - org.applied) > max(0.5, DEMAND_SHIFT * org.applied):
            self.demand_version += 1

    def _release(self, org: _Org, keys: list[TargetKey]) -> list[TargetKey]:
        org.released += len(keys)
        return keys

    def _active(self, key: TargetKey) -> bool:
        """Whether a space's last poll showed a change (or it has no figures to compare)."""
        space = self._spaces.get(key)
        return space is None or space.figures is None or space.changed_at == space.polled_at

    def _urgency(self, key: TargetKey) -> tuple[bool, float]:
        """Spaces whose last poll showed a change (the active ones) first, the longest
        unpolled of them first: under a tight budget every active space gets its turn."""
        space = self._spaces.get(key)
        if space is None:
            return (False, -math.inf)
        return (not self._active(key), space.polled_at)

    def _observe_space(self, org: _Org | None, key: TargetKey,
                       outcome: Analytics | ApiError,
                       now: float) -> list[TargetKey]:
        space = self._spaces.get(key)
        before = space.figures if space is not None else None
        if isinstance(outcome, ApiError):
            self._spaces.pop(key, None)  # failing: polled as before until it answers again
        elif space is None:
            self._spaces[key] = space = _Space(now)
        else:
            if isinstance(outcome, Analytics) and outcome != space.figures:
                space.changed_at = now
            space.polled_at = now
        if space is not None and isinstance(outcome, Analytics):
            space.figures = outcome
        if org is None or org.unexplained is None:
            return []
        if isinstance(outcome, Analytics) and before is not None:
            org.unexplained = _minus(org.unexplained, _minus(counts(outcome), counts(before)))
        else:
            org.unexplained = None  # an answer that cannot be reconciled: the ledger breaks
        if not org.held or key in org.held:
            return []
        if org.unexplained is not None:
            if all(value <= 0 for value in org.unexplained.values()):
                # the active spaces explain the whole change; more than all of it when they
                # made calls after the org-wide answer, and those are in the next change
                for quiet_key in org.held:
                    if (quiet := self._spaces.get(quiet_key)) is not None:
                        quiet.explained_at = now
                org.held = []
                return []
            if all(value > 0 for value in org.unexplained.values()) and any(
                    self._pending(org, k) for k in org.spaces if k not in org.held):
                return []  # more of the change may be in active spaces still to answer
        held, org.held = org.held, []
        return self._release(org, held)  # cannot be explained: poll the quiet ones too

    def _pending(self, org: _Org, key: TargetKey) -> bool:
        """Whether a space has been neither polled nor explained since its org changed."""
        space = self._spaces.get(key)
        return space is None or org.changed_at > max(space.polled_at, space.explained_at)
