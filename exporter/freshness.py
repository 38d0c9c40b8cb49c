"""Change-driven polling: which due space needs a request, and which are confirmed for free.

An organization's org-wide figures aggregate its spaces, so while they have not changed since
a space's last successful poll, neither has the space: it is confirmed without a request until
``idle_interval`` has passed since that poll. When the org-wide figures change, every space
of the org not polled since is due at once, the active ones first (those whose last poll
showed a change), the longest unpolled of them first. The poller asks; this module decides.

Trade-off (README): a change that leaves the org-wide figures exactly equal (one space up, one
down by the same amount) is seen within ``idle_interval``; so is a change in a space the
org-wide figures do not cover.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.analytics import Analytics, NoData
from exporter.client import ApiError
from exporter.targets import ORG_WIDE, Target

Key = tuple[str, str]
# Who goes first for the request budget: org-wide figures (and every target polled as before),
# then spaces whose org changed, then spaces refreshed because idle_interval passed.
FIRST, CHANGED, IDLE = 0, 1, 2


@dataclass
class _Org:
    figures: Analytics | None = None  # the last org-wide snapshot
    healthy: bool = False  # the last org-wide poll succeeded: its figures can be trusted
    changed_at: float = -math.inf  # monotonic time the figures last changed
    spaces: set[Key] = field(default_factory=set)


@dataclass
class _Space:
    polled_at: float  # monotonic time of the last successful request
    changed_at: float = -math.inf  # when its own figures last changed (activity order)
    figures: Analytics | None = None


class Freshness:
    def __init__(self, enabled: bool = True, idle_interval: float = 600.0) -> None:
        self.enabled = enabled
        self.idle_interval = idle_interval
        self._idle_factor: dict[str, float] = {}  # per org: the budget's stretch of idle
        self._orgs: dict[str, _Org] = {}
        self._spaces: dict[Key, _Space] = {}

    def configure(self, enabled: bool, idle_interval: float, targets: Iterable[Target],
                  idle_factors: dict[str, float] | None = None) -> None:
        """Adopt a target list: orgs whose org-wide target this exporter polls drive their
        spaces; state of surviving targets is kept."""
        self.enabled, self.idle_interval = enabled, idle_interval
        self._idle_factor = dict(idle_factors or {})
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

    def priority(self, target: Target, now: float) -> int | None:
        """The budget priority of a due target's request, or None when the space is confirmed
        by its unchanged org-wide figures (no request)."""
        if not self.enabled or target.space == ORG_WIDE:
            return FIRST
        org = self._orgs.get(target.org)
        space = self._spaces.get(target.key)
        if org is None or not org.healthy or org.figures is None or space is None:
            return FIRST  # nothing to compare with: poll as before
        if org.changed_at > space.polled_at:
            return CHANGED
        return IDLE if now - space.polled_at >= self.idle(target.org) else None

    def needs_request(self, target: Target, now: float) -> bool:
        return self.priority(target, now) is not None

    def observe(self, target: Target, outcome: Analytics | NoData | ApiError,
                now: float) -> list[Key]:
        """Take a poll's outcome; returns the spaces to poll now (the org-wide figures
        changed), the active ones first."""
        if target.space != ORG_WIDE:
            self._observe_space(target.key, outcome, now)
            return []
        org = self._orgs.get(target.org)
        if org is None:
            return []
        org.healthy = not isinstance(outcome, ApiError)
        if not isinstance(outcome, Analytics):
            return []  # an error, or data: null: nothing to compare
        first = org.figures is None
        changed = not first and outcome != org.figures
        org.figures = outcome
        if not changed:
            return []
        org.changed_at = now
        if not self.enabled:
            return []
        due = [k for k in org.spaces if k not in self._spaces
               or self._spaces[k].polled_at < now]
        return sorted(due, key=self._urgency)

    def _urgency(self, key: Key) -> tuple[bool, float]:
        """Spaces whose last poll showed a change (the active ones) first, the longest
        unpolled of them first: under a tight budget every active space gets its turn."""
        space = self._spaces.get(key)
        if space is None:
            return (False, -math.inf)
        return (space.changed_at != space.polled_at, space.polled_at)

    def _observe_space(self, key: Key, outcome: Analytics | NoData | ApiError,
                       now: float) -> None:
        if isinstance(outcome, ApiError):
            self._spaces.pop(key, None)  # failing: polled as before until it answers again
            return
        space = self._spaces.get(key)
        if space is None:
            self._spaces[key] = space = _Space(now)
        elif isinstance(outcome, Analytics) and outcome != space.figures:
            space.changed_at = now
        space.polled_at = now
        if isinstance(outcome, Analytics):  # data: null keeps the figures, as the store does
            space.figures = outcome
