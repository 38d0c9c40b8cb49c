"""Faults injected into the loopback fake API, each bounded in time; budget, back-off, reload."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import resource
import time

from exporter.budget import RequestBudget
from exporter.config import TokenSource, parse_config_text
from exporter.plan import stretch_intervals
from exporter.targets import Target
from tests.conftest import config_yaml, value, wait_for
from tests.fakeapi import Fault


def orgs(count: int, **extra: object) -> list[dict[str, object]]:
    return [{"handle": f"org{i}", **extra} for i in range(count)]


def seed(fake, count: int) -> None:
    for i in range(count):
        fake.set_analytics(f"org{i}", calls=100 + i)


async def scrape_during(running, seconds: float) -> int:
    """Scrape continuously for ``seconds``; every answer must be a 200 that parses."""
    scrapes = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await running.metrics()
        scrapes += 1
        await asyncio.sleep(0.05)
    return scrapes


async def all_up(running, count: int) -> bool:
    m = await running.metrics()
    return all(value(m, "unpod_up", org=f"org{i}") == 1 for i in range(count))


async def test_flapping_api(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake, 6)
    served_errors = 0
    counter = itertools.count()

    def every_third() -> Fault | None:
        nonlocal served_errors
        if next(counter) % 3 == 0:
            served_errors += 1
            return Fault(503, b"<html>busy</html>")
        return None

    for i in range(6):
        fake.fail(f"org{i}", None, every_third)
    running = await start_exporter(config_yaml(base, orgs(6), interval="200ms",
                                               max_staleness="5s"))
    assert await scrape_during(running, 2.5) > 10
    for i in range(6):
        fake.fail(f"org{i}", None, None)
    await wait_for(lambda: all_up(running, 6), 3, "all targets up")
    await asyncio.sleep(1.3)  # requests in flight land, and the exposition catches up
    m = await running.metrics()
    counted = sum(value(m, "unpod_api_requests_total", org=f"org{i}",
                        endpoint="analytics", outcome="server_error")
                  or 0 for i in range(6))
    assert counted == served_errors > 0
    # polls go on meanwhile, so the exact total is compared at the source of the exposition,
    # at a moment when no request is in flight (the fake logs a request before it answers)
    store = running.exporter.store
    await wait_for(lambda: sum(store.api_requests.values()) == len(fake.requests), 3,
                   "every request the fake saw counted once")


async def test_slow_api_times_out_and_recovers(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake, 2)
    fake.fail("org0", None, Fault(200, b"{}", delay=1.0))
    running = await start_exporter(config_yaml(base, orgs(2), api={"timeout": "200ms"},
                                               interval="1s", max_staleness="5s"))
    await running.wait_ready(timeout=5)
    m = await running.metrics()
    assert value(m, "unpod_up", org="org0") == 0 and value(m, "unpod_up", org="org1") == 1
    assert value(m, "unpod_poll_errors_total", org="org0", reason="timeout") == 1
    # retries stay inside the poll's slot: at most MAX_ATTEMPTS requests per poll
    assert fake.count("org0") <= 3
    fake.fail("org0", None, None)
    await wait_for(lambda: all_up(running, 2), 4, "recovery")


async def test_reset_mid_body_and_huge_body(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake, 3)
    fake.fail("org0", None, Fault(200, b'{"status_code": 200, "data": {"total' + b" " * 5000,
                                   reset_after=30))
    fake.fail("org1", None, Fault(200, b"[" + b"1," * (5 * 1024 * 1024) + b"1]"))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    running = await start_exporter(config_yaml(base, orgs(3), api={"timeout": "2s"},
                                               interval="10s"))
    await running.wait_ready(timeout=8)
    m = await running.metrics()
    assert value(m, "unpod_poll_errors_total", org="org0", reason="connection_error") == 1
    assert value(m, "unpod_poll_errors_total", org="org1", reason="invalid_response") == 1
    assert value(m, "unpod_up", org="org2") == 1
    # the 10 MiB body was refused from its Content-Length, not read into memory
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 40 * 1024


async def test_retry_after_pauses_every_target_of_the_token(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake, 3)
    throttled = []

    def once() -> Fault | None:
        if not throttled:
            throttled.append(time.monotonic())
            return Fault(429, {"detail": "throttled"}, {"Retry-After": "2"})
        return None

    fake.fail("org0", None, once)
    running = await start_exporter(config_yaml(base, orgs(3), interval="200ms",
                                               max_staleness="5s", concurrency=1))
    await wait_for(lambda: bool(throttled) and fake.count() > 6, 6, "throttle then traffic")
    during = [r for r in fake.requests if throttled[0] < r.at < throttled[0] + 1.9]
    assert during == [], "requests were sent while the API asked to wait"
    m = await running.metrics()
    assert value(m, "unpod_poll_errors_total", org="org0", reason="rate_limited") == 1
    await wait_for(lambda: all_up(running, 3), 3, "recovery")


async def test_ready_under_a_persistent_429_without_retry_after(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake, 3)
    throttled = Fault(429, {"message": "Request was throttled.", "status_code": 429})
    for i in range(3):  # every answer a 429, and none says how long to wait
        fake.fail(f"org{i}", None, throttled)
    running = await start_exporter(config_yaml(base, orgs(3), concurrency=1))
    # the first answer pauses the token's budget for a minute: the other targets cannot get
    # a request, but they wait on a pause the API asked for, so the exporter is ready
    await running.wait_ready(timeout=3)
    assert fake.count() == 1
    states = {s.target.org: s for s in running.exporter.store.states()}
    pending = [org for org, s in states.items() if not s.attempted]
    assert len(pending) == 2
    page = await (await running.client.get("/")).text()
    assert page.count("pending (rate limited: the API asked to pause (") == 2
    assert "2 targets not polled yet wait on a pause the API asked for" in page
    assert "rate_limited: HTTP 429" in page  # the one that was polled says why it is down


async def test_a_target_held_by_nothing_keeps_readiness_waiting(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake, 2)
    fake.latency = 1.0  # answers take a second: the second target waits for the one slot
    running = await start_exporter(config_yaml(base, orgs(2), concurrency=1))
    await asyncio.sleep(0.5)
    response = await running.client.get("/-/ready")
    assert response.status == 503  # waiting for a slot is no pause the API asked for
    await running.wait_ready(timeout=4)


async def test_unauthorized_backs_off_and_heals(fake_api, start_exporter, caplog):
    fake, base = fake_api
    seed(fake, 2)
    fake.fail("org0", None, "expired_token")
    caplog.set_level(logging.INFO)
    running = await start_exporter(config_yaml(base, orgs(2), interval="100ms",
                                               max_staleness="5s"))
    await asyncio.sleep(2.0)
    # 20 intervals passed; back-off of 2, 4, 8 intervals allows at most 4 attempts
    attempts = [r.at for r in fake.requests if r.org == "org0"]
    assert 2 <= len(attempts) <= 4
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps))
    assert fake.count("org1") >= 12  # the other org polls on, undisturbed
    m = await running.metrics()
    assert value(m, "unpod_poll_errors_total", org="org0", reason="unauthorized") == len(attempts)
    fake.fail("org0", None, None)
    await wait_for(lambda: all_up(running, 2), 4, "recovery after back-off")
    assert any(r.getMessage() == "target recovered" for r in caplog.records)


async def test_budget_caps_requests_and_stretches_the_interval(fake_api, start_exporter, caplog):
    fake, base = fake_api
    seed(fake, 40)
    caplog.set_level(logging.WARNING)
    running = await start_exporter(config_yaml(base, orgs(40), interval="1s",
                                               api={"max_requests_per_minute": 30},
                                               concurrency=8))
    await asyncio.sleep(1.5)
    assert len(fake.requests) == 30  # the first round draws from the budget too
    m = await running.metrics()
    assert value(m, "unpod_exporter_poll_interval_seconds", org="org0") == 80
    warnings = [r for r in caplog.records if "stretching" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].fields["factor"] == "80.00"


def test_budget_window_and_pauses():
    now = [0.0]
    budget = RequestBudget(per_minute=3, per_day=5, clock=lambda: now[0])
    for _ in range(3):
        assert budget.wait() == 0
        budget.spend()
    assert budget.wait() == 60
    now[0] = 60.0
    assert budget.wait() == 0
    budget.spend()
    budget.spend()
    now[0] = 200.0
    assert budget.wait() == 86400 - 200  # five a day, all spent
    budget.configure(per_minute=3, per_day=None)
    assert budget.wait() == 0
    budget.pause(30)
    assert budget.wait() == 30
    now[0] = 231.0
    budget.observe_limit(remaining=2, limit=100, reset=10)
    budget.spend()
    assert budget.wait() == 5  # two left for ten seconds: one every five


def test_stretch_uses_one_factor_per_token():
    shared = TokenSource("token_env", "A", "api.token_env")
    other = TokenSource("token_env", "B", "orgs[2].token_env")
    targets = [Target("a", "", None, shared, 60), Target("b", "", None, shared, 30),
               Target("c", "", None, other, 60)]
    stretch = stretch_intervals(targets, per_minute=1, per_day=None)
    assert stretch[shared].factor == 3 and stretch[shared].intervals == {"a": 180, "b": 90}
    assert stretch[other].factor == 1 and stretch[other].intervals == {"c": 60}
    daily = stretch_intervals(targets, per_minute=0, per_day=1440)
    assert daily[shared].factor == 3


async def test_reload_adds_removes_and_keeps_state(fake_api, start_exporter, tmp_path):
    fake, base = fake_api
    seed(fake, 3)
    path = tmp_path / "config.yaml"
    path.write_text(config_yaml(base, orgs(2), interval="10s"))
    from exporter.config import load_config
    running = await start_exporter(path.read_text(), config_loader=lambda: load_config(path))
    await running.wait_ready()
    before = await running.metrics()
    progress = value(before, "unpod_org_tasks_last_progress_timestamp_seconds", org="org1")

    path.write_text(config_yaml(base, orgs(3)[1:], interval="10s"))  # drop org0, add org2
    assert running.exporter.reload() is None
    await wait_for(lambda: fake.count("org2") == 1, 3, "new target polled at once")
    after = await running.metrics()
    assert value(after, "unpod_org_calls", org="org0") is None
    assert value(after, "unpod_up", org="org0") is None
    assert value(after, "unpod_org_calls", org="org1") == 101  # kept, not re-polled
    assert fake.count("org1") == 1
    assert value(after, "unpod_org_tasks_last_progress_timestamp_seconds", org="org1") == progress
    assert value(after, "unpod_exporter_targets") == 2

    path.write_text("orgs: [{handle: x}\n")
    assert "invalid YAML" in running.exporter.reload()
    path.write_text(config_yaml(base, orgs(1)).replace(
        "token: tok-secret-123", f"token_file: {tmp_path / 'missing'}"))
    assert "token_file: cannot read" in running.exporter.reload()
    m = await running.metrics()
    assert value(m, "unpod_exporter_config_last_reload_successful") == 0
    assert value(m, "unpod_exporter_targets") == 2  # the old config keeps running
    assert value(m, "unpod_org_calls", org="org1") == 101


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def exporter_tasks() -> int:
    """Tasks of this process but the test servers' own per-connection handlers."""
    return sum(1 for task in asyncio.all_tasks()
               if "RequestHandler" not in repr(task.get_coro()))


async def test_no_leak_after_2000_failing_polls(fake_api, start_exporter, tmp_path):
    fake, base = fake_api
    for i in range(20):
        fake.fail(f"org{i}", None, "org_not_found")
    path = tmp_path / "config.yaml"

    def write(interval: str) -> None:
        path.write_text(config_yaml(base, orgs(20), interval=interval, max_staleness="5m",
                                    concurrency=8))

    write("60s")
    from exporter.config import load_config
    running = await start_exporter(path.read_text(), config_loader=lambda: load_config(path))
    await running.wait_ready()
    await asyncio.sleep(0.3)
    tasks, fds = exporter_tasks(), open_fds()

    write("10ms")
    assert running.exporter.reload() is None
    await wait_for(lambda: len(fake.requests) >= 2020, 30, "2,000 failing polls")
    write("60s")
    assert running.exporter.reload() is None
    await wait_for(lambda: exporter_tasks() <= tasks, 5, f"tasks back to {tasks}")
    # pooled keep-alive connections: at most poll.concurrency, as at the baseline
    await wait_for(lambda: open_fds() <= fds, 5, f"open files back to {fds}")
    m = await running.metrics()
    failures = sum(value(m, "unpod_poll_errors_total", org=f"org{i}", reason="not_found")
                   for i in range(20))
    assert failures >= 2000


def test_config_accepts_the_daily_cap():
    config = parse_config_text("api: {token: t, max_requests_per_day: 10000}\n"
                               "orgs: [{handle: a}]")
    assert config.api.max_requests_per_day == 10000


async def test_ratelimit_remaining_is_exported_and_low_remaining_slows_down(fake_api,
                                                                           start_exporter):
    fake, base = fake_api
    seed(fake, 4)
    fake.extra_headers = {"X-RateLimit-Remaining": "1", "X-RateLimit-Limit": "100",
                          "X-RateLimit-Reset": "2"}
    running = await start_exporter(config_yaml(base, orgs(4), interval="100ms",
                                               max_staleness="5s"))
    await asyncio.sleep(1.5)
    m = await running.metrics()
    assert value(m, "unpod_api_ratelimit_remaining", org="org0") == 1
    # one request left in a 2 s window: the exporter spreads it instead of sending 60
    assert len(fake.requests) <= 4 + 2
