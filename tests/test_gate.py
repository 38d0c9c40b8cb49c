"""The request gate, the scheduler and the retry policy, each on a clock of its own."""

from __future__ import annotations

import asyncio

from exporter.client import ApiError, ApiResponse
from exporter.clock import ManualClock
from exporter.config import TokenSource
from exporter.gate import Priority, RequestGate
from exporter.retry import MAX_ATTEMPTS, RETRY_CAP, retry_delay
from exporter.scheduler import Scheduler, next_slot
from exporter.targets import Target

TOKEN = TokenSource("token", "t", "api.token")
OTHER = TokenSource("token", "u", "orgs[1].token")


async def settle() -> None:
    """Let the tasks woken by a timer run (the gate resolves futures; tasks resume later)."""
    for _ in range(5):
        await asyncio.sleep(0)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.release = asyncio.Event()
        self.release.set()

    def request(self, name: str, response: ApiResponse[str] | None = None):
        async def send() -> ApiResponse[str]:
            self.sent.append(name)
            await self.release.wait()
            return response or ApiResponse(name)
        return send


def queue(gate: RequestGate, rec: Recorder,
          count: int) -> list[asyncio.Task[ApiResponse[str] | None]]:
    """``count`` requests of one token, named by their order."""
    return [asyncio.create_task(gate.send(TOKEN, rec.request(str(i)))) for i in range(count)]


async def outcome(task: asyncio.Task[ApiResponse[str] | None]) -> str | None:
    response = await task
    return None if response is None else str(response.outcome)


# --- the gate --------------------------------------------------------------------------------

async def test_more_urgent_requests_go_first_for_the_same_budget():
    clock = ManualClock()
    gate = RequestGate(concurrency=4, per_minute=1, clock=clock)
    gate.budget(TOKEN).pause(0.3)  # e.g. a 429: everything waits, then one request is left
    rec = Recorder()
    deadline = clock.now() + 1.0
    idle = asyncio.create_task(gate.send(TOKEN, rec.request("idle"), priority=Priority.IDLE,
                                         deadline=deadline))
    space = asyncio.create_task(gate.send(TOKEN, rec.request("space"),
                                          priority=Priority.CHANGED, deadline=deadline))
    backlog = asyncio.create_task(gate.send(TOKEN, rec.request("backlog"),
                                            priority=Priority.BACKLOG, deadline=deadline))
    await settle()
    org = asyncio.create_task(gate.send(TOKEN, rec.request("org-wide"), deadline=deadline))
    await settle()
    assert rec.sent == [] and gate.waiting(TOKEN) == 4
    clock.advance(0.3)
    await settle()
    assert await outcome(org) == "org-wide"
    # the minute's one request is spent: none of the others can be sent before its deadline,
    # and each learns so at once, without waiting for the deadline
    assert [await outcome(t) for t in (space, idle, backlog)] == [None, None, None]
    assert rec.sent == ["org-wide"] and gate.waiting(TOKEN) == 0


async def test_a_change_goes_before_a_refresh_and_backlog_after_both():
    clock = ManualClock()
    gate = RequestGate(concurrency=4, per_minute=3, clock=clock)
    gate.budget(TOKEN).pause(5)
    rec = Recorder()
    tasks = [asyncio.create_task(gate.send(TOKEN, rec.request(p.name), priority=p))
             for p in (Priority.BACKLOG, Priority.IDLE, Priority.CHANGED)]
    await settle()
    clock.advance(5)
    await settle()
    assert [await outcome(t) for t in tasks] == ["BACKLOG", "IDLE", "CHANGED"]
    assert rec.sent == ["CHANGED", "IDLE", "BACKLOG"]


async def test_waiters_are_woken_by_one_timer_when_the_budget_refills():
    clock = ManualClock()
    gate = RequestGate(concurrency=4, per_minute=2, clock=clock)
    rec = Recorder()
    tasks = queue(gate, rec, 5)
    await settle()
    assert rec.sent == ["0", "1"]  # the minute's two requests
    assert clock.pending == 1  # one timer for every waiter, not a timer each
    clock.advance(59.9)
    await settle()
    assert len(rec.sent) == 2
    clock.advance(0.1)  # the first request leaves the sliding window
    await settle()
    assert rec.sent == ["0", "1", "2", "3"]
    clock.advance(60)
    await settle()
    assert [await outcome(t) for t in tasks] == ["0", "1", "2", "3", "4"]
    assert clock.pending == 0  # nobody waits: no timer left armed


async def test_concurrency_slots_are_shared_across_tokens_and_freed_by_answers():
    clock = ManualClock()
    gate = RequestGate(concurrency=2, clock=clock)
    rec = Recorder()
    rec.release.clear()
    tasks = [asyncio.create_task(gate.send(token, rec.request(name)))
             for token, name in ((TOKEN, "a"), (OTHER, "b"), (TOKEN, "c"), (OTHER, "d"))]
    await settle()
    assert rec.sent == ["a", "b"]  # two slots
    rec.release.set()
    await settle()
    assert rec.sent == ["a", "b", "c", "d"] and [await outcome(t) for t in tasks] == list("abcd")


async def test_a_waiter_held_by_busy_slots_is_sent_late_not_dropped():
    clock = ManualClock()
    gate = RequestGate(concurrency=1, clock=clock)
    rec = Recorder()
    rec.release.clear()
    first = asyncio.create_task(gate.send(TOKEN, rec.request("first")))
    late = asyncio.create_task(gate.send(TOKEN, rec.request("late"), deadline=clock.now() + 2))
    await settle()
    clock.advance(5)  # past its deadline: it has its budget, only the slot is busy
    await settle()
    assert not late.done() and clock.pending == 0  # no timer: only the slot can free it
    rec.release.set()
    assert await outcome(first) == "first" and await outcome(late) == "late"
    assert rec.sent == ["first", "late"]


async def test_a_waiter_held_back_by_a_more_urgent_one_gives_up_at_its_deadline():
    clock = ManualClock()
    gate = RequestGate(concurrency=1, clock=clock)
    rec = Recorder()
    rec.release.clear()
    first = asyncio.create_task(gate.send(TOKEN, rec.request("first")))
    urgent = asyncio.create_task(gate.send(TOKEN, rec.request("urgent")))
    idle = asyncio.create_task(gate.send(TOKEN, rec.request("idle"), priority=Priority.IDLE,
                                         deadline=clock.now() + 2))
    await settle()
    clock.advance(1.9)
    await settle()
    assert not idle.done()
    clock.advance(0.1)
    await settle()
    assert await outcome(idle) is None  # its slot's time passed while "urgent" waited
    rec.release.set()
    assert await outcome(first) == "first" and await outcome(urgent) == "urgent"
    assert rec.sent == ["first", "urgent"]


async def test_a_cancelled_waiter_spends_nothing_and_frees_its_turn():
    clock = ManualClock()
    gate = RequestGate(concurrency=1, per_minute=1, clock=clock)
    gate.budget(TOKEN).pause(1)
    rec = Recorder()
    gone = asyncio.create_task(gate.send(TOKEN, rec.request("gone")))
    kept = asyncio.create_task(gate.send(TOKEN, rec.request("kept")))
    await settle()
    gone.cancel()
    await settle()
    clock.advance(1)
    await settle()
    assert await outcome(kept) == "kept" and rec.sent == ["kept"]


async def test_a_429_pauses_the_waiters_before_its_slot_frees():
    clock = ManualClock()
    gate = RequestGate(concurrency=1, clock=clock)
    rec = Recorder()
    throttled = ApiResponse[str](ApiError("rate_limited", "HTTP 429"), retry_after=2)
    first = asyncio.create_task(gate.send(TOKEN, rec.request("first", throttled)))
    second = asyncio.create_task(gate.send(TOKEN, rec.request("second")))
    await settle()
    assert rec.sent == ["first"] and isinstance((await first).outcome, ApiError)
    clock.advance(1.9)
    await settle()
    assert rec.sent == ["first"]  # the slot was free, but the API asked to wait
    clock.advance(0.1)
    await settle()
    assert await outcome(second) == "second"


async def test_raising_the_caps_admits_waiters_at_once():
    clock = ManualClock()
    gate = RequestGate(concurrency=4, per_minute=1, clock=clock)
    rec = Recorder()
    tasks = queue(gate, rec, 3)
    await settle()
    assert rec.sent == ["0"]
    gate.configure(per_minute=10, per_day=None)  # a reload
    await settle()
    assert [await outcome(t) for t in tasks] == ["0", "1", "2"]


# --- the retry policy ------------------------------------------------------------------------

def test_retry_delay_retries_only_transient_failures_within_the_deadline():
    def top(low: float, high: float) -> float:
        return high  # the jitter's upper end: the worst case

    assert retry_delay(1, "timeout", now=0, deadline=60, request_timeout=10, jitter=top) == 1.0
    assert retry_delay(2, "server_error", now=0, deadline=60, request_timeout=10,
                       jitter=top) == 2.0
    assert retry_delay(9, "timeout", now=0, deadline=1e9, request_timeout=0,
                       jitter=top) is None  # MAX_ATTEMPTS
    assert retry_delay(MAX_ATTEMPTS - 1, "connection_error", now=0, deadline=1e9,
                       request_timeout=0, jitter=top) <= RETRY_CAP
    assert retry_delay(1, "unauthorized", now=0, deadline=60, request_timeout=10) is None
    assert retry_delay(1, "rate_limited", now=0, deadline=60, request_timeout=10) is None
    # a retry that could not be answered before the next poll is due is not sent
    assert retry_delay(1, "timeout", now=50, deadline=60, request_timeout=9.5,
                       jitter=top) is None
    assert retry_delay(1, "timeout", now=50, deadline=60, request_timeout=9,
                       jitter=top) == 1.0


# --- the scheduler ---------------------------------------------------------------------------

def targets(count: int, interval: float = 60) -> list[Target]:
    return [Target(f"org{i}", "", None, TOKEN, interval) for i in range(count)]


def test_next_slot_is_at_least_half_an_interval_away():
    assert next_slot(0, 15, 60, now=0) == 75
    assert next_slot(0, 15, 60, now=44) == 75
    assert next_slot(0, 15, 60, now=46) == 135


async def test_scheduler_spreads_targets_over_the_interval_on_its_clock():
    clock = ManualClock(start=0)
    scheduler = Scheduler(clock=clock)
    started: list[tuple[str, float]] = []

    def start(target: Target, now: float) -> None:
        started.append((target.org, round(clock.now(), 3)))

    scheduler.set_targets(targets(4), {})
    scheduler.dispatch(start)
    assert [org for org, _ in started] == ["org0", "org1", "org2", "org3"]  # all due at once
    assert all(when == 0 for _, when in started)
    started.clear()
    for _ in range(300):
        clock.advance(0.5)
        scheduler.dispatch(start)
    # then each in its own slot, phases 0, 15, 30 and 45 s in every 60 s, the first of them
    # at least half an interval after the first round
    assert started == [("org3", 45), ("org0", 60), ("org1", 75), ("org2", 90),
                       ("org3", 105), ("org0", 120), ("org1", 135), ("org2", 150)]


async def test_make_due_puts_targets_first_in_line_now_unless_in_flight():
    clock = ManualClock(start=0)
    scheduler = Scheduler(clock=clock)
    started: list[str] = []
    busy: dict[str, asyncio.Future[None]] = {}

    def start(target: Target, now: float) -> asyncio.Task[None] | None:
        started.append(target.org)
        if target.org == "org1":
            busy[target.org] = asyncio.get_running_loop().create_future()
            return asyncio.ensure_future(busy[target.org])
        return None

    scheduler.set_targets(targets(3), {})
    scheduler.dispatch(start)
    started.clear()
    clock.advance(1)
    assert scheduler.busy(("org1", ""))
    scheduler.make_due([("org2", ""), ("org1", ""), ("org0", "")])
    scheduler.dispatch(start)
    assert started == ["org2", "org0"]  # in the order asked; org1's poll is still in flight
    busy["org1"].set_result(None)
    await settle()
    assert not scheduler.busy(("org1", ""))


async def test_a_burst_of_due_targets_keeps_at_most_the_live_limit_of_tasks_per_token():
    clock = ManualClock(start=0)
    scheduler = Scheduler(clock=clock, live_limit=lambda: 8)
    live: dict[str, asyncio.Future[None]] = {}
    most = 0

    def start(target: Target, now: float) -> asyncio.Task[None]:
        nonlocal most
        live[target.org] = asyncio.get_running_loop().create_future()
        most = max(most, sum(t.token == target.token for t in scheduler.targets
                             if scheduler.busy(t.key)) + 1)
        return asyncio.ensure_future(live[target.org])

    paused = [Target(f"slow{i}", "", None, OTHER, 60) for i in range(20)]
    scheduler.set_targets(targets(10_000) + paused, {})
    scheduler.dispatch(start)
    # the first round is due at once: 8 tasks per token source, the rest wait as entries;
    # the other token's polls (its budget paused, say) do not hold this token's back
    assert len(live) == 16
    assert len([org for org in live if org.startswith("slow")]) == 8
    scheduler.make_due([("org9999", "")])
    for _ in range(1300):  # this token's polls end one by one; the other's stay in flight
        for org, future in list(live.items()):
            if not org.startswith("slow") and not future.done():
                future.set_result(None)
                break
        await settle()
        scheduler.dispatch(start)
    assert most == 8
    assert "org9999" in list(live)[:24]  # made due: first in line among the held
    done = [org for org, future in live.items() if not org.startswith("slow")]
    assert len(done) == 1300 + 8
    assert len({org for org in live if org.startswith("slow")}) == 8
