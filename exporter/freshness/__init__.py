"""Change-driven polling: which due space needs a request, and which are confirmed for free.

Three parts, each with one job: change detection (here), the ledger (``ledger.py``) and the
demand meter (``demand.py``).

An organization's org-wide figures aggregate its spaces, so while they have not changed since
a space's last successful poll, neither has the space: it is confirmed without a request until
``idle_interval`` has passed since that poll. When the org-wide figures change, every space
of the org not polled since is due at once, the active ones first (those whose last poll
showed a change), the longest unpolled of them first. The poller asks; this module decides.

When the budget cannot pay for polling every space at every change (``accounting``), the
quiet spaces wait for the active ones' answers, as the ledger decides. The follow-up requests
each org-wide poll calls for are measured (the demand meter), so that the budget's plan can
pay for them too.

Trade-off (docs): a change that leaves the org-wide figures exactly equal (one space up, one
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
from exporter.freshness.demand import DemandMeter
from exporter.freshness.ledger import Ledger, counts, minus
from exporter.gate import Priority
from exporter.targets import ORG_WIDE, Target, TargetKey

REFRESH_MARGIN = 0.05  # of an interval: the idle refresh is sent this much before it is late


@dataclass(slots=True)
class _Org:
    figures: Analytics | None = None  # the last org-wide snapshot
    healthy: bool = False  # the last org-wide poll succeeded: its figures can be trusted
    changed_at: float = -math.inf  # monotonic time the figures last changed
    spaces: set[TargetKey] = field(default_factory=set)
    ledger: Ledger = field(default_factory=Ledger)


@dataclass(slots=True)
class _Space:
    polled_at: float  # monotonic time of the last successful request
    changed_at: float = -math.inf  # when its own figures last changed (activity order)
    figures: Analytics | None = None
    explained_at: float = -math.inf  # when the accounting last confirmed it without a request


class Freshness:
    def __init__(self, enabled: bool = True, idle_interval: float = 600.0) -> None:
        self.enabled = enabled
        self.idle_interval = idle_interval
        self._demand = DemandMeter()
        self._idle_factor: dict[str, float] = {}  # per org: the budget's stretch of idle
        self._intervals: dict[str, float] = {}  # per org: effective interval (stretched)
        self._accounting: frozenset[str] = frozenset()  # orgs whose budget cannot poll all
        self._orgs: dict[str, _Org] = {}
        self._spaces: dict[TargetKey, _Space] = {}

    def configure(self, enabled: bool, idle_interval: float, targets: Iterable[Target], *,
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
        self._demand.keep(driving)
        keys = {t.key for t in ordered}
        self._spaces = {k: v for k, v in self._spaces.items() if k in keys}

    # --- the demand, for the budget's plan ---------------------------------------------------

    @property
    def demand_version(self) -> int:
        """Moves when some org's follow-up demand shifted from what the plan pays for."""
        return self._demand.version

    def demand(self) -> dict[str, float]:
        """Per org: the follow-up polls each org-wide poll calls for, as last measured."""
        return self._demand.current() if self.enabled else {}

    def adopt_demand(self) -> dict[str, float]:
        """The demand, as what a new plan pays for (later shifts are measured from it)."""
        adopted = self._demand.adopt()
        return adopted if self.enabled else {}

    # --- which due target needs a request ------------------------------------------------

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

    # --- what an answer changes -------------------------------------------------------------

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
        self._demand.measure(target.org, now, self._intervals.get(target.org, target.interval))
        before, org.figures = org.figures, outcome
        if before is None or outcome == before:
            return []
        org.changed_at = now
        if not self.enabled:
            return []
        due = sorted((k for k in org.spaces if k not in self._spaces
                      or self._spaces[k].polled_at < now), key=self._urgency)
        poll = org.ledger.org_changed(minus(counts(outcome), counts(before)), due,
                                      accounting=target.org in self._accounting,
                                      active=self._active)
        return self._release(target.org, poll)

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
            if outcome != space.figures:
                space.changed_at = now
            space.polled_at = now
        if space is not None and isinstance(outcome, Analytics):
            space.figures = outcome
        if org is None:
            return []
        change = (minus(counts(outcome), counts(before))
                  if isinstance(outcome, Analytics) and before is not None else None)
        settled = org.ledger.space_answered(
            key, change, (k for k in org.spaces if self._pending(org, k)))
        for quiet_key in settled.explained:
            if (quiet := self._spaces.get(quiet_key)) is not None:
                quiet.explained_at = now
        return self._release(key.org, list(settled.poll))

    def _release(self, org: str, keys: list[TargetKey]) -> list[TargetKey]:
        self._demand.release(org, len(keys))
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

    def _pending(self, org: _Org, key: TargetKey) -> bool:
        """Whether a space has been neither polled nor explained since its org changed."""
        space = self._spaces.get(key)
        return space is None or org.changed_at > max(space.polled_at, space.explained_at)
