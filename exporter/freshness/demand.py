"""The demand meter: how many follow-up polls each org-wide poll calls for, per org.

The budget's plan pays for these follow-ups before it makes org-wide polls more frequent:
detecting a change is worth little if the budget cannot then fetch what changed. A rise is
taken at once (a calling window opens: the budget must pay for it now, or it is overdrawn for
a minute), a fall smoothed over a couple of polls. ``version`` moves when some org's demand
moved away from what the current plan pays for (``adopt``) by enough to plan again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

DEMAND_WEIGHT = 0.5  # how fast a fall of the follow-ups per org-wide poll is believed
DEMAND_SHIFT = 0.1  # a relative change of demand that is worth planning again


@dataclass
class _Org:
    released: int = 0  # follow-up polls called for since the last org-wide answer
    demand: float = 0.0  # follow-up polls per org-wide poll, smoothed
    applied: float = 0.0  # the demand the current plan pays for
    measured_at: float = -math.inf  # the last org-wide answer folded into the demand


class DemandMeter:
    def __init__(self) -> None:
        self.version = 0  # bumped when some org's demand shifted from what is paid for
        self._orgs: dict[str, _Org] = {}

    def keep(self, orgs: Iterable[str]) -> None:
        """Measure these orgs (their state kept); forget the others."""
        self._orgs = {org: self._orgs.get(org) or _Org() for org in orgs}

    def release(self, org: str, polls: int) -> None:
        """Follow-up polls were called for."""
        if (state := self._orgs.get(org)) is not None:
            state.released += polls

    def measure(self, org: str, now: float, interval: float) -> None:
        """An org-wide answer: fold the follow-ups called for since the previous one into the
        demand, per interval (an org-wide poll the budget skipped must not double it)."""
        state = self._orgs.get(org)
        if state is None:
            return
        elapsed = now - state.measured_at
        polls = max(1, round(elapsed / interval)) if state.released and math.isfinite(
            elapsed) else 1
        sample = state.released / polls
        state.demand = max(sample, state.demand + DEMAND_WEIGHT * (sample - state.demand))
        state.released, state.measured_at = 0, now
        if abs(state.demand - state.applied) > max(0.5, DEMAND_SHIFT * state.applied):
            self.version += 1

    def current(self) -> dict[str, float]:
        """Per org: follow-up polls per org-wide poll, as last measured."""
        return {org: state.demand for org, state in self._orgs.items()}

    def adopt(self) -> dict[str, float]:
        """The current demand, as what a new plan pays for: later shifts count from it."""
        for state in self._orgs.values():
            state.applied = state.demand
        return self.current()
