"""The budget as a plan: from config, targets, shard and measured demand to what the exporter
may ask of the API, as one frozen ``BudgetPlan`` (pure: no state, no clock, no I/O).

The plan says, per token source, by how much intervals stretch so that demand fits the cap
(this shard's share of it), how far change-driven polling's idle interval stretches, whether
the cap binds (``accounting``: too tight to poll every space at every change), and what is left
for ``/probe``. ``Exporter`` applies a plan in one place (``_apply_plan``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exporter.config import Config, TokenSource
from exporter.sharding import Shard
from exporter.targets import ORG_WIDE, Discovered, Target

Caps = tuple[float, float | None]  # per minute (0: none), per day (None: none)


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


def shard_caps(config: Config, shard: Shard) -> Caps:
    """This shard's share of the request budget: per minute (0: none) and per day."""
    api, shards = config.api, shard.count
    per_day = api.max_requests_per_day / shards if api.max_requests_per_day else None
    return api.max_requests_per_minute / shards, per_day


def discovery_demand(config: Config, discovered: Discovered) -> float:
    """Discovery's requests per minute: one org list plus one space list per org."""
    if config.discovery is None:
        return 0.0
    orgs = {o.handle: o for o in config.orgs}
    handles = set(orgs) | set(discovered.orgs or ())
    lists = (config.discovery.orgs is not None) + sum(
        config.space_filter(orgs.get(h)) is not None for h in handles)
    return lists * 60.0 / config.discovery.interval


@dataclass(frozen=True)
class BudgetPlan:
    caps: Caps  # this shard's share
    stretches: Mapping[TokenSource, Stretch]
    intervals: Mapping[str, float]  # per org: the effective poll interval
    idle_factors: Mapping[str, float]  # per org: the stretch of change-driven idle_interval
    accounting: frozenset[str]  # orgs whose cap cannot pay for every space at every change
    probe_spare: Mapping[TokenSource, Caps | None]  # per token: left for /probe (None: none)
    demand_version: int = 0  # of the follow-up demand this plan pays for
    targets: tuple[Target, ...] = field(default=(), repr=False)

    @property
    def capped(self) -> bool:
        """Whether any cap is set: only then does a change of demand call for a new plan."""
        per_minute, per_day = self.caps
        return per_minute > 0 or per_day is not None

    @property
    def binding(self) -> dict[TokenSource, Stretch]:
        """The token sources whose cap stretches their intervals."""
        return {token: s for token, s in self.stretches.items() if s.factor > 1}

    def interval(self, target: Target) -> float:
        return self.intervals.get(target.org, target.interval)

    @property
    def shortest_interval(self) -> float | None:
        return min((self.interval(t) for t in self.targets), default=None)


def plan_budget(config: Config, targets: Iterable[Target], shard: Shard, *,
                discovered: Discovered | None = None,
                demand: Mapping[str, float] | None = None,
                demand_version: int = 0) -> BudgetPlan:
    """The plan for these targets of this shard under the config's caps, paying for
    discovery's lists and the follow-up ``demand`` (per org: polls per org-wide poll)."""
    ordered = tuple(targets)
    poll = config.poll
    per_minute, per_day = shard_caps(config, shard)
    lists = {config.api.token: discovery_demand(config, discovered or Discovered())}
    stretches = stretch_intervals(ordered, per_minute, per_day, lists,
                                  poll.idle_interval if poll.change_driven else None, demand)
    intervals = {org: interval for s in stretches.values()
                 for org, interval in s.intervals.items()}
    return BudgetPlan(
        caps=(per_minute, per_day), stretches=stretches, intervals=intervals,
        idle_factors={org: s.idle_factor for s in stretches.values() for org in s.intervals},
        accounting=frozenset(org for s in stretches.values() if s.accounting
                             for org in s.intervals),
        probe_spare={token: spare(s, per_minute, per_day) for token, s in stretches.items()},
        demand_version=demand_version, targets=ordered)
