"""The budget plan: a pure function from config, targets, shard and demand to a frozen plan."""

from __future__ import annotations

import dataclasses

import pytest

from exporter.config import parse_config_text
from exporter.plan import discovery_demand, plan_budget, shard_caps
from exporter.sharding import Shard
from exporter.targets import Discovered, build_targets
from tests.conftest import config_yaml

ORGS = [{"handle": "acme", "spaces": [{"name": f"s{i}", "space_token": f"sp_{i}"}
                                      for i in range(4)]},
        {"handle": "globex"}]


def config(**api: object):
    return parse_config_text(config_yaml("https://unpod.example/api/v2/platform", ORGS,
                                         api=api, interval="60s", idle_interval="600s"))


def test_without_a_cap_nothing_stretches_and_probes_are_free():
    cfg = config()
    targets = build_targets(cfg)
    plan = plan_budget(cfg, targets, Shard())
    assert not plan.capped and plan.binding == {}
    assert all(plan.interval(t) == 60 for t in targets)
    assert plan.accounting == frozenset()
    assert set(plan.probe_spare.values()) == {(0.0, None)}  # 0: no cap for probes either
    assert plan.shortest_interval == 60
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.caps = (1, None)  # type: ignore[misc]


def test_a_binding_cap_stretches_pays_for_follow_ups_and_leaves_nothing_for_probes():
    cfg = config(max_requests_per_minute=1)
    targets = build_targets(cfg)
    plan = plan_budget(cfg, targets, Shard())
    assert plan.capped and set(plan.binding) == {cfg.api.token}
    # two org-wide polls a minute would fit 1.8/min (a tenth kept for acme's idle refreshes)
    assert plan.intervals["acme"] == plan.intervals["globex"] == pytest.approx(60 * 2 / 0.9)
    # the token's spaces cannot all be polled at every change: accounting for its orgs
    assert plan.accounting == {"acme", "globex"}
    assert plan.probe_spare[cfg.api.token] is None
    busier = plan_budget(cfg, targets, Shard(), demand={"acme": 4.0}, demand_version=3)
    assert busier.intervals["acme"] > plan.intervals["acme"]  # follow-ups paid for first
    assert busier.demand_version == 3


def test_a_shard_plans_with_its_share_and_discovery_lists_count():
    cfg = config(max_requests_per_minute=100, max_requests_per_day=14400)
    assert shard_caps(cfg, Shard(0, 4)) == (25, 3600)
    plan = plan_budget(cfg, build_targets(cfg), Shard(0, 4))
    assert plan.caps == (25, 3600)
    spare_minute, spare_day = plan.probe_spare[cfg.api.token]
    assert spare_minute < 25 and spare_day < 3600
    assert discovery_demand(cfg, Discovered()) == 0.0  # no discovery configured
