"""The backlog loop against the fake API: scans into the store, series through the collector
and the cached exposition, withdrawal when stale, and nothing personal in any log line."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest

from exporter.app import Exporter, make_registry
from exporter.backlog.runner import BacklogScanner, ScanPlan
from exporter.backlog.scan import Endpoint, Fetch
from exporter.client import REASONS, ApiResponse, UnpodClient
from exporter.collector import UnpodCollector
from exporter.config import BacklogConfig, TokenSource
from exporter.demo import DemoApi, demo_config
from exporter.exposition import ExpositionCache
from exporter.store import SnapshotStore
from exporter.targets import Target
from tests.conftest import TOKEN, config_yaml, parse_metrics, value, wait_for
from tests.fakeapi import FakeUnpod
from tests.fakebacklog import PERSONAL

T = TypeVar("T")
SOURCE = TokenSource("token", TOKEN, "api.token")
STUCK = Target("acme", "survey", "sp_stuck_9d1c", SOURCE, 60.0)
BUSY = Target("acme", "sales", "sp_busy_77ab", SOURCE, 60.0)


class World:
    def __init__(self, fake: FakeUnpod, client: UnpodClient) -> None:
        self.fake = fake
        self.client = client
        self.now = time.time()
        self.store = SnapshotStore(300.0, clock=lambda: self.now)
        self.store.set_targets([STUCK, BUSY])
        self.scanner = BacklogScanner(self.store, self.fetch_for, lambda _: False,
                                      clock=lambda: self.now)

    def fetch_for(self, target: Target, deadline: float) -> Fetch:
        async def fetch(endpoint: Endpoint, path: str, params: Mapping[str, str],
                        parse: Callable[[object], T]) -> ApiResponse[T] | None:
            return await self.client.get(path, TOKEN, target.org, dict(params), parse,
                                         (TOKEN, target.space_token or ""), whole_body=True)
        return fetch

    def metrics(self) -> dict[Any, float]:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(UnpodCollector(self.store))
        return parse_metrics(generate_latest(registry).decode())


@pytest.fixture
async def world(backlog_api: tuple[FakeUnpod, UnpodClient]) -> AsyncIterator[World]:
    world = World(*backlog_api)
    task = asyncio.create_task(world.scanner.run())
    yield world
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await world.scanner.stop()


def seed(world: World) -> None:
    backlog = world.fake.backlog
    backlog.add_run(STUCK.space_token or "", ["pending"] * 40, created=world.now - 7200,
                    run_status="pending", assignee="agent-survey")
    backlog.add_run(BUSY.space_token or "", ["completed"] * 5 + ["in_progress", "pending"],
                    created=world.now - 300, last_status_change=world.now - 120,
                    assignee="agent-sales")


async def scanned(world: World, *targets: Target) -> None:
    def done() -> bool:
        states = [world.store.get(t.key) for t in targets]
        return all(s is not None and s.backlog is not None for s in states)
    await wait_for(done, what="a scan of every space")


async def test_scans_become_series_of_their_space(world):
    seed(world)
    world.scanner.configure(ScanPlan(1.0, 50, 20, 300.0), [STUCK, BUSY])
    await scanned(world, STUCK, BUSY)  # the first scans spread over the interval
    series = world.metrics()
    stuck, busy = {"org": "acme", "space": "survey"}, {"org": "acme", "space": "sales"}
    assert value(series, "unpod_backlog_open_runs", **stuck) == 1
    assert value(series, "unpod_backlog_tasks", **stuck, status="pending") == 40
    assert value(series, "unpod_backlog_tasks", **stuck, status="in_progress") == 0
    assert value(series, "unpod_backlog_oldest_pending_timestamp_seconds",
                 **stuck) == pytest.approx(world.now - 7200, abs=1)
    assert value(series, "unpod_backlog_oldest_in_progress_timestamp_seconds", **stuck) is None
    assert value(series, "unpod_backlog_oldest_in_progress_timestamp_seconds",
                 **busy) == pytest.approx(world.now - 120, abs=1)
    assert value(series, "unpod_backlog_scan_complete", **busy) == 1
    assert value(series, "unpod_backlog_retried_tasks", **busy) == 0
    assert value(series, "unpod_backlog_scan_last_success_timestamp_seconds",
                 **busy) == world.now
    for reason in REASONS:  # pre-initialised, as the poll errors are
        assert value(series, "unpod_backlog_scan_errors_total", **busy, reason=reason) == 0


async def test_the_cached_exposition_renders_them_too(world):
    seed(world)
    cache = ExpositionCache(world.store, make_registry(world.store, targets=False))
    world.scanner.configure(ScanPlan(600.0, 50, 20, 300.0), [STUCK])
    await scanned(world, STUCK)
    text = (await cache.get(False)).text.decode()
    assert "# TYPE unpod_backlog_scan_errors_total counter" in text
    series = parse_metrics(text)
    assert value(series, "unpod_backlog_tasks", org="acme", space="survey",
                 status="pending") == 40


async def test_a_failing_space_keeps_its_figures_until_stale_then_loses_them(world):
    seed(world)
    world.scanner.configure(ScanPlan(0.05, 50, 20, 10.0), [STUCK])
    await scanned(world, STUCK)
    world.fake.tokens = {"rotated-away"}  # every scan now fails with 401
    labels = {"org": "acme", "space": "survey"}

    def errors() -> float:
        return value(world.metrics(), "unpod_backlog_scan_errors_total", **labels,
                     reason="unauthorized") or 0
    await wait_for(lambda: errors() >= 2, what="failed scans")
    assert value(world.metrics(), "unpod_backlog_open_runs", **labels) == 1  # kept
    world.now += 10.05 + 1  # past interval + max_staleness
    await wait_for(lambda: value(world.metrics(), "unpod_backlog_open_runs", **labels) is None,
                   what="withdrawal")
    assert value(world.metrics(), "unpod_backlog_scan_last_success_timestamp_seconds",
                 **labels) is None
    assert errors() >= 2  # the counter stays


async def test_a_space_scanned_again_keeps_its_figures_past_its_first_success(world):
    # Withdrawal looks at the oldest successes only: a newer success of the same space must
    # keep it shown until that one is too old, and then re-render it without its figures
    # (the cached exposition renders only what the store says changed; no scan in between).
    seed(world)
    cache = ExpositionCache(world.store, make_registry(world.store, targets=False))
    labels = {"org": "acme", "space": "survey"}
    monotonic = [0.0]
    scanner = BacklogScanner(world.store, world.fetch_for, lambda _: False,
                             clock=lambda: world.now, monotonic=lambda: monotonic[0])

    async def shown() -> float | None:
        text = (await cache.get(False)).text.decode()
        return value(parse_metrics(text), "unpod_backlog_open_runs", **labels)

    def last_success() -> float | None:
        return value(world.metrics(), "unpod_backlog_scan_last_success_timestamp_seconds",
                     **labels)

    task = asyncio.create_task(scanner.run())
    try:
        scanner.configure(ScanPlan(60.0, 50, 20, 10.0), [STUCK])  # stale after 70 s
        first = world.now
        await wait_for(lambda: last_success() == first, what="a first success")
        world.now, monotonic[0] = first + 40, 60.0  # the next scan due
        await wait_for(lambda: last_success() == first + 40, what="a second success")
        world.now = first + 71  # the first success too old, the second not
        await asyncio.sleep(1.2)  # past a look at staleness (at least one a second)
        assert await shown() == 1
        world.now = first + 40 + 71  # the second too old too
        deadline = time.monotonic() + 5
        while await shown() is not None:
            assert time.monotonic() < deadline, "never withdrawn from the cached exposition"
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await scanner.stop()


async def test_a_space_no_longer_scanned_loses_its_series(world):
    seed(world)
    world.scanner.configure(ScanPlan(1.0, 50, 20, 300.0), [STUCK, BUSY])
    await scanned(world, STUCK, BUSY)
    world.scanner.configure(ScanPlan(1.0, 50, 20, 300.0), [BUSY])
    names = {name for name, labels in world.metrics() if dict(labels).get("space") == "survey"}
    assert not {n for n in names if n.startswith("unpod_backlog")}


async def test_scans_wait_for_their_interval(world):
    seed(world)
    world.scanner.configure(ScanPlan(600.0, 50, 20, 300.0), [STUCK])
    await scanned(world, STUCK)
    sent = world.fake.backlog.count()
    await asyncio.sleep(0.3)
    assert world.fake.backlog.count() == sent


async def test_nothing_personal_in_any_log_line(world, caplog):
    caplog.set_level(logging.DEBUG)
    seed(world)
    world.fake.backlog.faults["agent:agent-sales"] = lambda: web.json_response(
        {"message": f"Agent not found for {PERSONAL[1]}"}, status=404)
    world.scanner.configure(ScanPlan(0.05, 50, 20, 300.0), [STUCK, BUSY])
    await scanned(world, STUCK, BUSY)
    world.fake.tokens = set()
    await wait_for(lambda: any("backlog scan failed" in r.getMessage() for r in caplog.records),
                   what="a failure logged")
    # aiohttp.access here is the fake API's own access log (the server side), not ours
    lines = [r.getMessage() + repr(getattr(r, "fields", {})) for r in caplog.records
             if r.name != "aiohttp.access"]
    assert any("backlog scanned" in line for line in lines)
    for line in lines:
        for secret in (*PERSONAL, TOKEN, STUCK.space_token, BUSY.space_token):
            assert secret not in line, line


async def test_nothing_personal_leaves_the_exporter(fake_api, start_exporter, caplog):
    """Task documents full of names, numbers, e-mails, transcripts and recordings: none of it
    on /metrics, the landing page or in any log line, at debug level too."""
    caplog.set_level(logging.DEBUG)
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.set_analytics("acme", "sp_survey")
    now = time.time()
    fake.backlog.add_run("sp_survey", ["pending", "in_progress", "scheduled", "completed"],
                         created=now - 900, last_status_change=now - 120, retry_attempt=1,
                         scheduled_timestamp=now - 30, transcript_bytes=50_000)
    orgs = [{"handle": "acme", "spaces": [{"name": "survey", "space_token": "sp_survey"}]}]
    running = await start_exporter(config_yaml(base, orgs, interval="1s")
                                   + "backlog: {interval: 1s}\n")
    await wait_for(lambda: fake.backlog.count("agent") >= 2, 10, "two scans")
    series = await running.metrics()
    assert value(series, "unpod_backlog_retried_tasks", org="acme", space="survey") == 3
    metrics = await (await running.client.get("/metrics")).text()
    landing = await (await running.client.get("/")).text()
    # aiohttp.access here is the fake API's own access log (the server side), not ours
    logs = "\n".join(r.getMessage() + repr(getattr(r, "fields", {}))
                     for r in caplog.records if r.name != "aiohttp.access")
    for secret in (*PERSONAL, TOKEN, "sp_survey"):
        assert secret not in metrics and secret not in landing and secret not in logs, secret


async def test_the_demo_shows_a_campaign_that_never_starts():
    """--demo's flu-recall: empty analytics, and the backlog scan's pending tasks on /metrics
    and on the landing page."""
    api = TestServer(DemoApi(history_seconds=600).app(), host="127.0.0.1")
    await api.start_server()
    try:
        config = dataclasses.replace(demo_config(str(api.make_url(""))),
                                     backlog=BacklogConfig(interval=1.0))
        exporter = Exporter(config)
        client = TestClient(TestServer(exporter.web_app, host="127.0.0.1"))
        await client.start_server()
        await exporter.start()
        try:
            recall = {"org": "globex-health", "space": "flu-recall"}

            async def pending() -> float | None:
                text = await (await client.get("/metrics")).text()
                return value(parse_metrics(text), "unpod_backlog_tasks", **recall,
                             status="pending")
            await wait_for(lambda: pending_is(pending, 25), 15, "flu-recall's backlog")
            series = parse_metrics(await (await client.get("/metrics")).text())
            assert value(series, "unpod_tasks_by_status", **recall, status="pending") is None
            oldest = value(series, "unpod_backlog_oldest_pending_timestamp_seconds", **recall)
            assert oldest is not None and time.time() - oldest > 7200
            page = await (await client.get("/")).text()
            row = next(line for line in page.splitlines() if "flu-recall" in line)
            assert "1 open runs, 25 pending, oldest" in row
        finally:
            await exporter.stop()
            await client.close()
    finally:
        await api.close()


async def pending_is(read: Callable[[], Any], expected: float) -> bool:
    return bool(await read() == expected)


async def test_first_scans_are_spread_over_the_interval(world):
    seed(world)
    world.scanner.configure(ScanPlan(2.0, 50, 20, 300.0), [STUCK, BUSY])
    await scanned(world, STUCK)
    busy = world.store.get(BUSY.key)
    assert busy is not None and busy.backlog is None  # due a half interval later
    await scanned(world, BUSY)


async def test_the_interval_stretches_to_the_spare_budget(world):
    plan = ScanPlan(600.0, 50, 20, 300.0)
    # two spaces, 3 requests a scan (the first estimate): 0.6 a minute
    world.scanner.configure(plan, [STUCK, BUSY], {SOURCE: (1.0, None)})
    assert world.scanner.interval_for(STUCK) == 600.0
    world.scanner.set_spares({SOURCE: (0.1, None)})
    assert world.scanner.interval_for(STUCK) == pytest.approx(3600.0)
    assert world.store.backlog_stale_after == pytest.approx(3900.0)
    world.scanner.set_spares({SOURCE: (None, 1440.0 * 0.3)})  # half of it a day
    assert world.scanner.interval_for(BUSY) == pytest.approx(1200.0)
