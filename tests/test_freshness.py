"""Change-driven polling: the policy alone, then the whole exporter against the fake API."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from exporter.analytics import parse_analytics
from exporter.client import ApiError
from exporter.config import ConfigError, TokenSource, parse_config_text
from exporter.freshness import Freshness
from exporter.freshness.demand import DemandMeter
from exporter.freshness.ledger import Ledger, Settled
from exporter.gate import Priority
from exporter.plan import stretch_intervals
from exporter.sharding import Shard
from exporter.targets import Target
from tests.conftest import config_yaml, value, wait_for
from tests.fakeapi import analytics

TOKEN = TokenSource("token", "t", "api.token")
ORG = Target("acme", "", None, TOKEN, 60)
SALES = Target("acme", "sales", "sp_sales", TOKEN, 60)
SURVEY = Target("acme", "survey", "sp_survey", TOKEN, 60)
LONE = Target("solo", "only", "sp_only", TOKEN, 60)  # an org polled without org-wide target


def snapshot(calls: int):
    return parse_analytics(analytics(calls=calls))


# --- the parts alone: the demand meter and the ledger -----------------------------------------

def test_the_demand_meter_takes_a_rise_at_once_and_a_fall_slowly():
    meter = DemandMeter()
    meter.keep(["acme"])
    meter.measure("acme", 0, 60)
    meter.release("acme", 4)
    meter.measure("acme", 60, 60)
    assert meter.current() == {"acme": 4.0} and meter.version == 1  # risen: plan again
    assert meter.current() == {"acme": 4.0} and meter.version == 1  # reading changes nothing
    assert meter.adopt() == {"acme": 4.0}
    meter.measure("acme", 120, 60)  # no follow-ups this time: half the way down
    assert meter.current() == {"acme": 2.0} and meter.version == 2
    meter.adopt()
    meter.release("acme", 4)
    meter.measure("acme", 240, 60)  # two intervals since: one org-wide poll was skipped
    assert meter.current() == {"acme": 2.0} and meter.version == 2  # 2 a poll, as planned
    meter.release("ghost", 3)  # an org not measured: ignored
    meter.keep(["globex"])
    assert meter.current() == {"globex": 0.0}


def test_the_ledger_holds_quiet_spaces_until_the_active_ones_explain_the_change():
    active = {("acme", "a")}
    quiet = [("acme", "q1"), ("acme", "q2")]
    due = [("acme", "a"), *quiet]
    ledger = Ledger()
    polled = ledger.org_changed({"total_calls": 2}, due, accounting=True,
                                active=lambda key: key in active)
    assert polled == [("acme", "a")] and ledger.held == quiet
    assert ledger.space_answered(("acme", "a"), {"total_calls": 3}, []) == Settled(
        explained=tuple(quiet))  # more than all of it: a call made after the org's answer
    assert ledger.unexplained == {"total_calls": -1}  # carried to the next change
    assert ledger.org_changed({"total_calls": 1}, due, accounting=True,
                              active=lambda key: key in active) == [("acme", "a")]
    assert ledger.unexplained == {}  # the carried call was this change


def test_the_ledger_polls_the_quiet_spaces_when_it_cannot_explain():
    due = [("acme", "a"), ("acme", "q")]
    ledger = Ledger()
    ledger.org_changed({"total_calls": 5}, due, accounting=True,
                       active=lambda key: key == ("acme", "a"))
    assert ledger.space_answered(("acme", "a"), {"total_calls": 2}, []) == Settled(
        poll=(("acme", "q"),))  # 3 calls left that no active space made
    ledger.org_changed({"total_calls": 5}, due, accounting=True,
                       active=lambda key: key == ("acme", "a"))
    assert ledger.space_answered(("acme", "a"), None, []) == Settled(poll=(("acme", "q"),))
    assert ledger.unexplained is None  # broken by an answer it cannot reconcile
    assert ledger.org_changed({"total_calls": -1}, due, accounting=True,
                              active=lambda key: True) == due  # counts went down
    assert ledger.org_changed({"total_calls": 1}, due, accounting=False,
                              active=lambda key: key == ("acme", "a")) == due


# --- the policy ------------------------------------------------------------------------------

def test_unchanged_org_confirms_its_spaces_until_the_idle_interval():
    fresh = Freshness(True, idle_interval=600)
    fresh.configure(True, 600, [ORG, SALES, SURVEY, LONE])
    assert fresh.needs_request(SALES, 0)  # never polled
    fresh.observe(ORG, snapshot(10), 0)
    fresh.observe(SALES, snapshot(5), 1)
    assert not fresh.needs_request(SALES, 2)  # org unchanged since its poll
    assert not fresh.needs_request(SALES, 601)  # idle_interval passed: not yet ...
    assert fresh.refresh_at(SALES) == pytest.approx(1 + 600 + 0.95 * 60)
    assert not fresh.needs_request(SALES, 657.9)
    assert fresh.needs_request(SALES, 658)  # ... but before it is idle_interval + interval old
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


def test_under_a_tight_budget_active_spaces_that_explain_the_change_confirm_the_rest():
    fresh = Freshness(True, idle_interval=600)
    quiet = Target("acme", "quiet", "sp_quiet", TOKEN, 60)
    fresh.configure(True, 600, [ORG, SALES, SURVEY, quiet], accounting=["acme"])
    fresh.observe(ORG, snapshot(10), 0)
    for target in (SALES, SURVEY, quiet):
        fresh.observe(target, snapshot(5), 1)
    fresh.observe(SALES, snapshot(6), 3)  # sales is the active one
    # org-wide +1 call: sales is polled first, the quiet spaces wait for its answer
    assert fresh.observe(ORG, snapshot(11), 5) == [SALES.key]
    assert fresh.priority(SURVEY, 5.5) == Priority.CHANGED  # still due if its own slot comes first
    assert fresh.observe(SALES, snapshot(7), 6) == []  # +1 call: the whole change
    assert fresh.priority(SURVEY, 7) is None and fresh.priority(quiet, 7) is None
    # +2 calls, sales +1: the other call is elsewhere, so the quiet spaces are polled
    assert fresh.observe(ORG, snapshot(13), 10) == [SALES.key]
    assert sorted(fresh.observe(SALES, snapshot(8), 11)) == [quiet.key, SURVEY.key]
    assert fresh.priority(quiet, 12) == Priority.CHANGED
    fresh.observe(SURVEY, snapshot(6), 12)  # the other call
    fresh.observe(quiet, snapshot(5), 12)
    # +1, and sales made two calls: one after the org-wide answer, in the next change
    assert fresh.observe(ORG, snapshot(14), 20) == [SALES.key, SURVEY.key]
    assert fresh.observe(SALES, snapshot(10), 21) == []
    assert fresh.priority(quiet, 22) is None  # explained before survey even answered
    fresh.observe(SURVEY, snapshot(6), 22)
    # +2: the call sales made before, and one in survey: the ledger does not balance
    assert fresh.observe(ORG, snapshot(16), 30) == [SALES.key]
    assert sorted(fresh.observe(SALES, snapshot(10), 31)) == [quiet.key, SURVEY.key]
    fresh.observe(SURVEY, snapshot(7), 32)  # there it is: the ledger balances again
    fresh.observe(quiet, snapshot(5), 32)
    assert fresh.observe(ORG, snapshot(17), 40) == [SURVEY.key]  # active now: sales is not
    assert fresh.observe(SURVEY, snapshot(8), 41) == []
    # a failing active space cannot explain anything
    assert fresh.observe(ORG, snapshot(18), 50) == [SURVEY.key]
    assert sorted(fresh.observe(SURVEY, ApiError("server_error", "x"), 51)) == [
        quiet.key, SALES.key]
    # nor can counts that went down (a reset): every space is polled
    assert len(fresh.observe(ORG, snapshot(3), 60)) == 3


def test_without_accounting_every_space_is_polled_at_each_change():
    fresh = Freshness(True, idle_interval=600)
    fresh.configure(True, 600, [ORG, SALES, SURVEY])  # the budget pays for all
    fresh.observe(ORG, snapshot(10), 0)
    fresh.observe(SALES, snapshot(5), 1)
    fresh.observe(SURVEY, snapshot(5), 1)
    fresh.observe(SALES, snapshot(6), 2)
    assert fresh.observe(ORG, snapshot(11), 3) == [SALES.key, SURVEY.key]


def test_follow_up_demand_is_measured_per_org_wide_poll():
    fresh = Freshness(True, idle_interval=600)
    fresh.configure(True, 600, [ORG, SALES, SURVEY])
    fresh.observe(ORG, snapshot(10), 0)
    assert fresh.demand() == {"acme": 0.0}
    version = fresh.demand_version
    for step in range(1, 9):  # every org-wide poll calls for both spaces
        fresh.observe(ORG, snapshot(10 + step), 10 * step)
        fresh.observe(SALES, snapshot(step), 10 * step + 1)
        fresh.observe(SURVEY, snapshot(step), 10 * step + 1)
    assert 1.5 < fresh.demand()["acme"] <= 2
    assert fresh.demand_version > version  # worth a new stretch
    assert fresh.adopt_demand() == fresh.demand()  # a new plan pays for it
    version = fresh.demand_version
    fresh.observe(ORG, snapshot(19), 100)  # the same demand again: no new stretch
    assert fresh.demand_version == version
    fresh.observe(SALES, snapshot(9), 101)
    fresh.observe(SURVEY, snapshot(9), 101)
    fresh.observe(ORG, snapshot(19), 220)  # two intervals (one poll skipped): 1 a poll
    assert fresh.demand()["acme"] == pytest.approx(1.5)


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
    assert driven.accounting  # plain polling would need 4 a minute: not every space, always
    tight = stretch_intervals(targets, per_minute=2.05, per_day=None, idle_interval=600)[TOKEN]
    # the idle refreshes keep their 0.2 a minute (up to a tenth of the cap): org-wide stretch
    assert tight.factor == pytest.approx(2 / 1.85) and tight.idle_factor == pytest.approx(1)
    over = stretch_intervals(targets, per_minute=1, per_day=None, idle_interval=600)[TOKEN]
    assert over.factor == pytest.approx(2 / 0.9) and over.idle_factor == pytest.approx(2)


def test_the_stretch_pays_for_the_follow_ups_org_changes_call_for():
    targets = [ORG, SALES, SURVEY, LONE]
    busy = {"acme": 2.0}  # every org-wide poll of acme calls for both its spaces
    roomy = stretch_intervals(targets, 5, None, idle_interval=600, followups=busy)[TOKEN]
    assert roomy.factor == 1 and roomy.idle_factor == 1 and not roomy.accounting
    assert roomy.demand_per_minute == pytest.approx(3 + 1 + 0.2)
    tight = stretch_intervals(targets, 3, None, idle_interval=600, followups=busy)[TOKEN]
    # org-wide (1) + its follow-ups (2) + the lone space (1) in 2.8 of 3 a minute
    assert tight.factor == pytest.approx(4 / 2.8) and tight.intervals["acme"] == \
        pytest.approx(60 * 4 / 2.8)
    assert tight.idle_factor == pytest.approx(1) and tight.accounting  # plain would need 4


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

    async def shown() -> bool:
        return value(await running.metrics(), "unpod_calls", org="acme", space="sales") == 9
    await wait_for(shown, 3, "the new figure on /metrics")


async def start_budgeted(fake, base, start_exporter, per_minute: int):
    """acme (org-wide, sales, survey) seeded, polled every second under a request budget."""
    seed(fake)
    running = await start_exporter(config_yaml(
        base, ORGS, {"max_requests_per_minute": per_minute}, interval="1s",
        idle_interval="60s"))
    await running.wait_ready()
    return running


async def test_under_a_tight_budget_a_change_explained_by_the_active_space_spares_the_rest(
        fake_api, start_exporter):
    fake, base = fake_api
    # plain polling would ask 180 a minute: the budget (100) cannot pay for every space at
    # every change, but does for the org-wide polls and their follow-ups
    running = await start_budgeted(fake, base, start_exporter, per_minute=100)
    assert running.exporter.scheduler.interval(ORG) == 1  # the org-wide interval is kept

    async def calls(space: str, expected: int) -> bool:
        return value(await running.metrics(), "unpod_calls", org="acme", space=space) == expected

    seed(fake, sales=6)  # sales has not changed before: nothing to tell, both are polled
    await wait_for(lambda: calls("sales", 6), 4, "sales polled")
    await wait_for(lambda: fake.count("acme", "sp_survey") == 2, 2, "survey polled too")
    seed(fake, sales=7)  # sales is the active space now, and its call is the org's
    await wait_for(lambda: calls("sales", 7), 4, "sales polled again")
    await asyncio.sleep(1.5)
    assert fake.count("acme", "sp_survey") == 2  # confirmed by the accounting
    assert value(await running.metrics(), "unpod_exporter_polls_skipped_total", org="acme") >= 1
    seed(fake, sales=7, survey=8)  # a call in the quiet space: sales cannot explain it
    await wait_for(lambda: calls("survey", 8), 4, "survey polled after sales")


async def test_the_org_wide_interval_stretches_while_changes_call_for_follow_ups(
        fake_api, start_exporter):
    fake, base = fake_api
    # 150 a minute: the org-wide polls (60) fit, with the follow-ups of a busy org (120) not
    running = await start_budgeted(fake, base, start_exporter, per_minute=150)

    async def interval() -> float:
        return value(await running.metrics(), "unpod_exporter_poll_interval_seconds",
                     org="acme")
    assert await interval() == 1
    calls = 5

    async def busy() -> bool:
        nonlocal calls
        calls += 1
        seed(fake, sales=calls, survey=calls)  # both spaces call: nothing to account
        await asyncio.sleep(0.5)
        return await interval() > 1.1
    await wait_for(busy, 8, "a stretch that pays for the follow-ups")
    stretched = await interval()
    # (1 + 2) per interval in 150 a minute less 2 for the idle refreshes
    assert stretched == pytest.approx(60 * 3 / (150 - 2), rel=0.05)

    async def quiet() -> bool:
        return await interval() == 1
    await wait_for(quiet, 10, "the interval back once the org is quiet")


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
