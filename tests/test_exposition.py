"""The cached exposition equals a fresh prometheus_client render after every change."""

from __future__ import annotations

import asyncio
import gzip
import random
import threading

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families

from exporter.analytics import parse_analytics
from exporter.app import make_registry
from exporter.client import REASONS, ApiError
from exporter.config import TokenSource
from exporter.exposition import DEFLATE_BATCH, MAX_LAG, ExpositionCache, finish_in_thread
from exporter.store import SnapshotStore
from exporter.targets import Target
from tests.conftest import parse_metrics
from tests.fakeapi import analytics

TOKEN = TokenSource("token", "t", "api.token")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def targets(count: int, offset: int = 0) -> list[Target]:
    return [Target(f"org{i // 5}", "" if i % 5 == 0 else f"space-{i}", f"sp{i}", TOKEN, 60)
            for i in range(offset, offset + count)]


def without_process(series: dict) -> dict:
    return {k: v for k, v in series.items()
            if not k[0].startswith(("process_", "python_"))}


def random_outcome(rng: random.Random):
    if rng.random() < 0.3:
        return ApiError(rng.choice(REASONS), "boom")
    breakdown = {"pending": rng.randint(0, 9), "completed": rng.randint(0, 99)}
    if rng.random() < 0.5:
        breakdown[rng.choice(["in_progress", "scheduled", "hold"])] = rng.randint(0, 5)
    total = rng.randint(0, 500)
    return parse_analytics(analytics(calls=total, completed=rng.randint(0, total),
                                     failed=rng.randint(0, 50), avg=rng.random() * 100,
                                     breakdown=breakdown))


async def settled(cache: ExpositionCache, openmetrics: bool):
    """The body once the assembly a scrape starts (if it starts one) is done."""
    await cache.get(openmetrics)
    await cache.settle()
    return await cache.get(openmetrics)


@pytest.mark.parametrize("deflate_batch", [DEFLATE_BATCH, 0])  # 0: deflated segment by segment
async def test_cache_equals_fresh_render_after_every_change(deflate_batch: int):
    clock = Clock()
    store = SnapshotStore(max_staleness=300, clock=clock)
    cache = ExpositionCache(store, make_registry(store, targets=False), clock=clock)
    cache.deflate_batch = deflate_batch
    fresh = make_registry(store)
    rng = random.Random(42)
    current = targets(40)
    store.set_targets(current)
    for step in range(120):
        action = rng.random()
        if action < 0.75:
            target = rng.choice(current)
            store.record(target, random_outcome(rng), rng.random())
        elif action < 0.85:
            clock.now += rng.choice([10, 400])  # some analytics go stale
            cache.check_staleness()
        else:
            current = targets(rng.randint(5, 60), offset=rng.randint(0, 20))
            store.set_targets(current)
        clock.now += MAX_LAG  # the next scrape starts an assembly
        text = await settled(cache, openmetrics=False)
        expected = without_process(parse_metrics(generate_latest(fresh).decode()))
        assert without_process(parse_metrics(text.text.decode())) == expected, step
        assert gzip.decompress(text.gzipped) == text.text
        om = await settled(cache, openmetrics=True)
        assert gzip.decompress(om.gzipped) == om.text
        assert om.text.endswith(b"# EOF\n")
        parsed = {(s.name, frozenset(s.labels.items())): s.value
                  for f in om_families(om.text.decode()) for s in f.samples}
        assert without_process(parsed) == expected, step


async def test_a_burst_costs_one_assembly_and_a_stale_body_is_served_meanwhile():
    clock = Clock()
    store = SnapshotStore(max_staleness=300, clock=clock)
    cache = ExpositionCache(store, make_registry(store, targets=False), clock=clock)
    [target] = targets(1)
    store.set_targets([target])
    store.record(target, parse_analytics(analytics(calls=1)), 0.1)
    burst = await asyncio.gather(*(cache.get(openmetrics=True) for _ in range(50)))
    first = burst[0]
    assert all(body is first for body in burst)  # the first scrapes wait for one assembly
    store.record(target, parse_analytics(analytics(calls=2)), 0.1)
    clock.now += MAX_LAG / 2
    assert await cache.get(openmetrics=True) is first  # within the lag: the cached body
    clock.now += MAX_LAG / 2
    burst = await asyncio.gather(*(cache.get(openmetrics=True) for _ in range(50)))
    assert all(body is first for body in burst)  # served at once while one assembly runs
    await cache.settle()
    second = await cache.get(openmetrics=True)
    assert b'unpod_org_calls{org="org0"} 2.0' in second.text
    assert await cache.get(openmetrics=True) is second  # no second assembly was started
    store.set_targets([])  # a reload that removes the target shows at once
    assert b"unpod_org_calls{" not in (await cache.get(openmetrics=True)).text


async def test_a_scrape_that_gives_up_does_not_cancel_the_assembly():
    clock = Clock()
    store = SnapshotStore(max_staleness=300, clock=clock)
    cache = ExpositionCache(store, make_registry(store, targets=False), clock=clock)
    store.set_targets(targets(400))
    waiting = asyncio.ensure_future(cache.get(openmetrics=False))
    await asyncio.sleep(0)
    waiting.cancel()
    body = await cache.get(openmetrics=False)  # joins the assembly the first one started
    assert body.text.count(b"\nunpod_poll_errors_total{") == 400 * len(REASONS)
    assert gzip.decompress(body.gzipped) == body.text


async def test_lag_is_a_second_whatever_the_poll_interval():
    """A sub-second poll interval does not shorten the lag: the body is assembled at most
    once a second."""
    clock = Clock()
    store = SnapshotStore(max_staleness=300, clock=clock)
    cache = ExpositionCache(store, make_registry(store, targets=False), clock=clock)
    target = Target("org0", "", "sp0", TOKEN, 0.1)
    store.set_targets([target])
    store.record(target, parse_analytics(analytics(calls=1)), 0.01)
    first, assembled = await cache.get(openmetrics=False), clock.now
    for calls in range(2, 11):  # nine more polls within the second
        clock.now += MAX_LAG / 10
        store.record(target, parse_analytics(analytics(calls=calls)), 0.01)
        assert await cache.get(openmetrics=False) is first
        await cache.settle()
    clock.now = assembled + MAX_LAG
    assert b'unpod_org_calls{org="org0"} 10.0' in (await settled(cache, openmetrics=False)).text


async def test_a_rare_scrape_gets_fresh_figures_not_the_previous_scrapes_body():
    """Prometheus scrapes every 15 s or more: serving the body assembled at the previous scrape
    would lag the snapshots by a whole scrape interval, not by a second."""
    clock = Clock()
    store = SnapshotStore(max_staleness=300, clock=clock)
    cache = ExpositionCache(store, make_registry(store, targets=False), clock=clock)
    [target] = targets(1)
    store.set_targets([target])
    store.record(target, parse_analytics(analytics(calls=1)), 0.1)
    assert b'unpod_org_calls{org="org0"} 1.0' in (await cache.get(openmetrics=False)).text
    clock.now += 15
    store.record(target, parse_analytics(analytics(calls=2)), 0.1)
    clock.now += 15  # the next scrape, half a minute after the first
    assert b'unpod_org_calls{org="org0"} 2.0' in (await cache.get(openmetrics=False)).text


class Failing:
    """A collector of the rest of /metrics that fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.failing = False

    def collect(self):
        if self.failing:
            raise RuntimeError("collector broke")
        return []


async def test_lines_rendered_by_a_failed_assembly_are_rendered_again():
    clock = Clock()
    store = SnapshotStore(max_staleness=300, clock=clock)
    rest = make_registry(store, targets=False)
    failing = Failing()
    rest.register(failing)
    cache = ExpositionCache(store, rest, clock=clock)
    current = targets(70)
    store.set_targets(current)
    for target in current:
        store.record(target, parse_analytics(analytics(calls=1)), 0.1)
    assert b'unpod_org_calls{org="org0"} 1.0' in (await cache.get(openmetrics=False)).text
    store.record(current[0], parse_analytics(analytics(calls=2)), 0.1)
    failing.failing = True
    clock.now += 3 * MAX_LAG
    with pytest.raises(RuntimeError, match="collector broke"):
        await cache.get(openmetrics=False)
    failing.failing = False
    clock.now += 3 * MAX_LAG
    body = (await cache.get(openmetrics=False)).text
    assert b'unpod_org_calls{org="org0"} 2.0' in body
    assert body.count(b"\nunpod_org_calls{") == 14


async def test_a_cancelled_assembly_waits_for_its_thread_before_letting_go():
    """The worker thread writes segments under the assembly's lock: cancelling the assembly
    must not release the lock while the thread still runs."""
    started, release, finished = threading.Event(), threading.Event(), []

    def deflating() -> None:
        started.set()
        release.wait(10)
        finished.append(True)

    lock = asyncio.Lock()

    async def assembly() -> None:
        async with lock:
            await finish_in_thread(deflating)

    task = asyncio.ensure_future(assembly())
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # twice: still waits
    await asyncio.sleep(0.05)
    assert lock.locked() and not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == [True] and not lock.locked()
