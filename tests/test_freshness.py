"""Change-driven polling: the policy alone, then the whole exporter against the fake API."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from exporter.analytics import parse_analytics
from exporter.budget import RequestBudget, stretch_intervals
from exporter.client import ApiError
from exporter.config import ConfigError, TokenSource, parse_config_text
from exporter.freshness import CHANGED, IDLE, Freshness
from exporter.poller import Poller
from exporter.sharding import Shard
from exporter.store import SnapshotStore
from exporter.targets import Target
from exporter.tokens import TokenReader
from tests.conftest import config_yaml, value, wait_for
from tests.fakeapi import analytics

TOKEN = TokenSource("token", "t", "api.token")
ORG = Target("acme", "", None, TOKEN, 60)
SALES = Target("acme", "sales", "sp_sales", TOKEN, 60)
SURVEY = Target("acme", "survey", "sp_survey", TOKEN, 60)
LONE = Target("solo", "only", "sp_only", TOKEN, 60)  # an org polled without org-wide target


def snapshot(calls: int):
    return parse_analytics(analytics(calls=calls))


# --- the policy ------------------------------------------------------------------------------

def test_unchanged_org_confirms_its_spaces_until_the_idle_interval():
    fresh = Freshness(True, idle_interval=600)
    fresh.configure(True, 600, [ORG, SALES, SURVEY, LONE])
    assert fresh.needs_request(SALES, 0)  # never polled
    fresh.observe(ORG, snapshot(10), 0)
    fresh.observe(SALES, snapshot(5), 1)
    assert not fresh.needs_request(SALES, 2)  # org unchanged since its poll
    assert not fresh.needs_request(SALES, 600.9)
    assert fresh.needs_request(SALES, 601)  # idle_interval since its last poll
    assert fresh.needs_request(LONE, 2)  # no org-wide target: as before
    assert fresh.needs_request(ORG, 2)  # org-wide targets always


def test_an_org_change_calls_its_spaces_active_ones_first():
    fresh = Freshness(True, idle_interval=600)
    quiet = Target("acme", "quiet", "sp_quiet", TOKEN, 60)
    fresh.configure(True, 600, [ORG, SALES, SURVEY, quiet])
    fresh.observe(ORG, snapshot(10), 0)
    for target in (SALES, SURVEY, quiet):
        fresh.observe(target, snapshot(5), 1)
    fresh.observe(SALES, snapshot(6), 3)  # sales and survey changed at their last poll:
    fresh.observe(SURVEY, snapshot(6), 2)  # active; survey has waited longer
    assert fresh.observe(ORG, snapshot(10), 4) == []  # the same figures: nothing to do
    assert fresh.observe(ORG, snapshot(11), 5) == [SURVEY.key, SALES.key, quiet.key]
    assert fresh.needs_request(quiet, 6)  # polled before the change


def test_untrusted_org_figures_poll_as_before():
    fresh = Freshness(True, idle_interval=600)
    fresh.configure(True, 600, [ORG, SALES])
    fresh.observe(ORG, snapshot(10), 0)
    fresh.observe(SALES, snapshot(5), 1)
    fresh.observe(ORG, ApiError("timeout", "x"), 2)  # the org-wide poll failed
    assert fresh.needs_request(SALES, 3)
    fresh.observe(ORG, snapshot(10), 4)
    fresh.observe(SALES, ApiError("server_error", "x"), 5)  # the space itself failing
    assert fresh.needs_request(SALES, 6)
    fresh.configure(False, 600, [ORG, SALES])  # change_driven: false
    fresh.observe(SALES, snapshot(5), 7)
    assert fresh.needs_request(SALES, 8)


def test_org_wide_targets_keep_their_interval_under_a_cap():
    targets = [ORG, SALES, SURVEY, LONE]
    # plain: 4 targets a minute against a cap of 2: everything stretched by 2
    plain = stretch_intervals(targets, per_minute=2, per_day=None)[TOKEN]
    assert plain.factor == 2 and plain.intervals["acme"] == 120
    # change-driven: org-wide and the lone space (2 a minute) fit; the idle interval stretches
    driven = stretch_intervals(targets, per_minute=2.5, per_day=None, idle_interval=600)[TOKEN]
    assert driven.factor == 1 and driven.intervals == {"acme": 60, "solo": 60}
    assert driven.idle_factor == 1  # 0.2 a minute for the spaces' idle polls: fits
    tight = stretch_intervals(targets, per_minute=2.05, per_day=None, idle_interval=600)[TOKEN]
    assert tight.factor == 1 and tight.idle_factor == pytest.approx(0.2 / 0.05)
    over = stretch_intervals(targets, per_minute=1, per_day=None, idle_interval=600)[TOKEN]
    assert over.factor == 2 and over.idle_factor >= 2


@pytest.mark.parametrize("poll, message", [
    ({"interval": "60s", "idle_interval": "30s"}, "poll.idle_interval: 30s is below"),
    ({"change_driven": "yes"}, "poll.change_driven: expected true or false"),
])
def test_config_errors(poll, message):
    with pytest.raises(ConfigError, match=message):
        parse_config_text(yaml.safe_dump({"api": {"token": "t"}, "poll": poll,
                                          "orgs": [{"handle": "a"}]}))


def test_org_interval_above_idle_interval_is_an_error():
    with pytest.raises(ConfigError, match=r"orgs\[0\].interval: 120s exceeds poll.idle_interval"):
        parse_config_text(yaml.safe_dump({
            "api": {"token": "t"}, "poll": {"idle_interval": "90s", "max_staleness": "10m"},
            "orgs": [{"handle": "a", "interval": "120s"}]}))


# --- the exporter ----------------------------------------------------------------------------

ORGS = [{"handle": "acme", "spaces": [{"name": "sales", "space_token": "sp_sales"},
                                      {"name": "survey", "space_token": "sp_survey"}]}]


def seed(fake, sales=5, survey=7):
    """Org-wide figures that are the sum of the spaces', as Unpod's are."""
    fake.set_analytics("acme", "sp_sales", calls=sales, completed=sales, failed=0)
    fake.set_analytics("acme", "sp_survey", calls=survey, completed=survey, failed=0)
    fake.set_analytics("acme", calls=sales + survey, completed=sales + survey, failed=0)


async def test_unchanged_org_saves_requests_and_keeps_series(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake)
    running = await start_exporter(config_yaml(base, ORGS, interval="500ms", idle_interval="30s",
                                               max_staleness="1s"))
    await running.wait_ready()
    await asyncio.sleep(2.5)  # five intervals, max_staleness passed twice
    assert fake.count("acme", "sp_sales") == 1 and fake.count("acme", "sp_survey") == 1
    assert fake.count("acme", None) >= 4  # the org-wide target keeps its interval
    m = await running.metrics()
    sales = {"org": "acme", "space": "sales"}
    assert value(m, "unpod_calls", **sales) == 5  # confirmed: not withdrawn as stale
    assert value(m, "unpod_up", **sales) == 1
    assert value(m, "unpod_exporter_polls_skipped_total", org="acme") >= 6
    state = running.exporter.store.get(("acme", "sales"))
    assert state is not None and state.last_success > state.last_polled
    page = await (await running.client.get("/")).text()
    assert "last confirmed" in page and "last polled" in page


async def test_an_org_change_polls_its_spaces_within_seconds(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake)
    running = await start_exporter(config_yaml(base, ORGS, interval="1s", idle_interval="60s"))
    await running.wait_ready()
    await asyncio.sleep(1.5)
    seed(fake, sales=9)  # a call in sales: the org-wide figures change too
    await wait_for(lambda: running.metrics(), 1)
    await wait_for(lambda: fake.count("acme", "sp_sales") >= 2, 3, "sales polled again")
    assert fake.count("acme", "sp_survey") == 2  # every space of the org, not only one
    await wait_for(lambda: running.exporter.exposition._fresh(False) is None, 2, "re-render")

    async def shown() -> bool:
        return value(await running.metrics(), "unpod_calls", org="acme", space="sales") == 9
    await wait_for(shown, 3, "the new figure on /metrics")


async def test_a_change_the_org_does_not_show_is_seen_within_idle_plus_interval(
        fake_api, start_exporter):
    fake, base = fake_api
    seed(fake)
    running = await start_exporter(config_yaml(base, ORGS, interval="500ms", idle_interval="2s"))
    await running.wait_ready()
    fake.set_analytics("acme", "sp_sales", calls=5, completed=4, failed=1)  # org-wide equal

    async def shown() -> bool:
        return value(await running.metrics(), "unpod_calls_failed", org="acme",
                     space="sales") == 1
    await wait_for(shown, 2 + 0.5 + 1.5, "the change within idle_interval + interval")


async def test_stuck_detection_is_unchanged_for_confirmed_spaces(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme", "sp_sales", breakdown={"pending": 4, "completed": 1})
    fake.set_analytics("acme", "sp_survey", breakdown={"pending": 0, "completed": 3})
    fake.set_analytics("acme", breakdown={"pending": 4, "completed": 4})
    running = await start_exporter(config_yaml(base, ORGS, interval="500ms", idle_interval="30s"))
    await running.wait_ready()
    before = running.exporter.store.get(("acme", "sales")).progress_timestamp
    await asyncio.sleep(1.5)
    after = running.exporter.store.get(("acme", "sales"))
    assert after.progress_timestamp == before  # confirmations do not move the progress clock
    assert after.analytics.task_status[0] == ("pending", 4)


async def test_orgs_without_org_wide_target_and_plain_mode_poll_as_before(fake_api,
                                                                        start_exporter):
    fake, base = fake_api
    seed(fake)
    orgs = [{**ORGS[0], "org_wide": False}]
    running = await start_exporter(config_yaml(base, orgs, interval="500ms"))
    await running.wait_ready()
    await asyncio.sleep(1.6)
    assert fake.count("acme", "sp_sales") >= 3
    assert value(await running.metrics(), "unpod_exporter_polls_skipped_total",
                 org="acme") is None


async def test_plain_polling_when_turned_off(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake)
    running = await start_exporter(config_yaml(base, ORGS, interval="500ms",
                                               change_driven=False))
    await running.wait_ready()
    await asyncio.sleep(1.6)
    assert fake.count("acme", "sp_sales") >= 3


async def test_a_shard_without_the_org_wide_target_polls_its_spaces(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake)
    # find a shard count where org-wide and sales land on different shards
    shard = next(Shard(i, n) for n in range(2, 20) for i in range(n)
                 if Shard(i, n).owns("acme", "sales") and not Shard(i, n).owns("acme", ""))
    running = await start_exporter(config_yaml(base, ORGS, interval="500ms"), shard=shard)
    await running.wait_ready()
    await asyncio.sleep(1.6)
    assert fake.count("acme", None) == 0 and fake.count("acme", "sp_sales") >= 3


async def test_org_wide_requests_go_first_under_a_budget():
    poller = Poller(None, SnapshotStore(300), TokenReader(), 4)  # send() needs no client
    budget = RequestBudget(per_minute=1)
    budget.pause(0.3)  # e.g. a 429: both requests wait, and then one request is left
    sent: list[str] = []

    async def request(name: str) -> str:
        sent.append(name)
        return name

    deadline = asyncio.get_running_loop().time() + 1.0
    idle = asyncio.create_task(poller.send(budget, deadline, lambda: request("idle"),
                                           priority=IDLE))
    await asyncio.sleep(0.02)
    space = asyncio.create_task(poller.send(budget, deadline, lambda: request("space"),
                                            priority=CHANGED))
    await asyncio.sleep(0.05)  # the spaces asked first
    org = asyncio.create_task(poller.send(budget, deadline, lambda: request("org-wide")))
    assert await org == "org-wide"
    assert await space is None and await idle is None  # no request left before the deadline
    assert sent == ["org-wide"]
    budget = RequestBudget(per_minute=1)
    budget.pause(0.3)
    idle = asyncio.create_task(poller.send(budget, deadline + 1, lambda: request("idle"),
                                           priority=IDLE))
    await asyncio.sleep(0.05)
    space = asyncio.create_task(poller.send(budget, deadline + 1, lambda: request("changed"),
                                            priority=CHANGED))
    assert await space == "changed" and await idle is None  # a change before a refresh
