"""The polling loop: every target once per interval, spread over it, bounded in concurrency.

One scheduler coroutine keeps a heap of due times and starts one short-lived task per poll, so a
slow or failing target only ever holds its own task (and one concurrency slot, for at most the
request timeout). The first round starts every target at once (the semaphore and the request
budget pace it) so that ``/-/ready`` comes quickly; after that each target keeps a fixed slot in
its interval.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

from exporter.analytics import Analytics, NoData, without
from exporter.budget import DEFAULT_RATE_LIMIT_PAUSE, AuthBackoff, RequestBudget
from exporter.client import ApiError, ApiResponse, UnpodClient
from exporter.config import ConfigError, TokenSource
from exporter.freshness import FIRST, Freshness
from exporter.store import SnapshotStore, Transition
from exporter.targets import Target
from exporter.tokens import TokenReader

log = logging.getLogger("unpod_exporter.poller")
Key = tuple[str, str]
R = TypeVar("R")
RETRYABLE = frozenset({"timeout", "connection_error", "server_error"})
AUTH_FAILURES = frozenset({"unauthorized", "forbidden"})
MAX_ATTEMPTS = 3
RETRY_BASE = 0.5  # seconds; full jitter over base * 2**attempt
RETRY_CAP = 10.0
DISPATCH_GRAIN = 0.025  # seconds
PRIORITY_GRAIN = 0.05  # how often a request re-checks whether more urgent ones still wait


def next_slot(anchor: float, phase: float, interval: float, now: float) -> float:
    """The first slot ``anchor + phase + k*interval`` at least half an interval after now."""
    earliest = now + interval / 2
    k = math.ceil((earliest - anchor - phase) / interval)
    return anchor + phase + k * interval


class Poller:
    def __init__(self, client: UnpodClient, store: SnapshotStore, tokens: TokenReader,
                 concurrency: int, per_minute: float = 0, per_day: float | None = None,
                 freshness: Freshness | None = None) -> None:
        self.client = client
        # which due space needs a request (change-driven polling); off unless given
        self.freshness = freshness or Freshness(enabled=False)
        self._store = store
        self._tokens = tokens
        self._semaphore = asyncio.Semaphore(concurrency)
        self._per_minute = per_minute
        self._per_day = per_day
        self.budgets: dict[TokenSource, RequestBudget] = {}
        self.auth_backoff = AuthBackoff()
        self._targets: dict[Key, Target] = {}
        self._phases: dict[Key, float] = {}
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._inflight: dict[Key, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._anchor = time.monotonic()
        self._warned_statuses: set[Key] = set()
        self._space_tokens: frozenset[str] = frozenset()

    # --- configuration ---------------------------------------------------------------------

    def set_targets(self, targets: Iterable[Target], intervals: Mapping[str, float]) -> None:
        """Adopt a target list and effective per-org intervals: new targets are due now,
        surviving ones keep their slot."""
        ordered = list(targets)
        self._store.set_targets(ordered)
        old_intervals = {key: self.interval(t) for key, t in self._targets.items()}
        self._targets = {t.key: t for t in ordered}
        self._space_tokens = frozenset(t.space_token.casefold() for t in ordered
                                       if t.space_token)
        self._warned_statuses &= set(self._targets)
        for key in set(self._due) - set(self._targets):
            del self._due[key]
        for source in {t.token for t in ordered}:
            self.budget(source)
        self.set_intervals(intervals, old_intervals)

    def set_intervals(self, intervals: Mapping[str, float],
                      old: Mapping[Key, float] | None = None) -> None:
        """Adopt effective per-org intervals (a budget's new stretch): a target whose interval
        changed is next due one new interval after its last slot (not half an interval
        after now, which would delay every poll of a stretch that follows demand closely);
        new targets are due now."""
        now = time.monotonic()
        if old is None:
            old = {key: self.interval(t) for key, t in self._targets.items()}
        self._store.poll_intervals.clear()
        self._store.poll_intervals.update({t.org: intervals.get(t.org, t.interval)
                                           for t in self._targets.values()})
        count = max(1, len(self._targets))
        self._phases = {key: self.interval(t) * i / count
                        for i, (key, t) in enumerate(self._targets.items())}
        for key, target in self._targets.items():
            interval = self.interval(target)
            if key not in self._due:
                self._schedule(key, now)
            elif (before := old.get(key)) != interval:
                last = self._due[key] - before if before is not None else now
                self._schedule(key, max(now, last + interval))
        self._wake.set()

    def target(self, key: Key) -> Target | None:
        return self._targets.get(key)

    def set_budget(self, per_minute: float, per_day: float | None) -> None:
        self._per_minute, self._per_day = per_minute, per_day
        for budget in self.budgets.values():
            budget.configure(per_minute, per_day)

    def budget(self, source: TokenSource) -> RequestBudget:
        budget = self.budgets.get(source)
        if budget is None:
            budget = self.budgets[source] = RequestBudget(self._per_minute, self._per_day)
        return budget

    def set_concurrency(self, concurrency: int) -> None:
        # Polls in flight release the old semaphore; new ones queue on the new one.
        self._semaphore = asyncio.Semaphore(concurrency)

    def interval(self, target: Target) -> float:
        return self._store.poll_intervals.get(target.org, target.interval)

    def _schedule(self, key: Key, due: float) -> None:
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            # Polls due within the next few milliseconds start together: one wake-up serves
            # several of them, and the spread over the interval stays even at that grain.
            now = time.monotonic() + DISPATCH_GRAIN
            while self._heap and self._heap[0][0] <= now:
                due, key = heapq.heappop(self._heap)
                target = self._targets.get(key)
                if target is None or self._due.get(key) != due:
                    continue  # removed, or rescheduled since this entry was pushed
                if key not in self._inflight:
                    self._start(target, now)
                due = next_slot(self._anchor, self._phases[key], self.interval(target), now)
                refresh = self.freshness.refresh_at(target)  # an idle refresh between slots
                self._schedule(key, refresh if refresh is not None and now < refresh < due
                               else due)
            self._wake.clear()
            timer = loop.call_at(self._heap[0][0], self._wake.set) if self._heap else None
            await self._wake.wait()
            if timer is not None:
                timer.cancel()

    def _start(self, target: Target, now: float) -> None:
        """Poll a due target, or confirm it without a request when its org is unchanged
        (``now``: the time up to which due polls start together)."""
        priority = self.freshness.priority(target, now)
        if priority is None:
            self._store.confirm(target)
            return
        task = asyncio.create_task(self._poll(target, priority), name=f"poll {target.describe()}")
        self._inflight[target.key] = task
        task.add_done_callback(functools.partial(self._forget, target.key))

    def _forget(self, key: Key, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(key, None)

    async def stop(self, grace: float) -> None:
        """Stop scheduling, let in-flight polls finish for ``grace`` seconds, cancel the rest."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._inflight.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # --- one poll --------------------------------------------------------------------------

    async def poll_once(self, target: Target, deadline: float | None = None,
                        priority: int = FIRST) -> Analytics | NoData | ApiError | None:
        """Poll one target now, with retries, within the budget and before ``deadline``
        (default: the end of its slot). None means skipped: nothing sent, nothing counted."""
        blocking = self.auth_backoff.blocked(target.org, target.token)
        if blocking is not None:
            if not self._tokens.changed(target.token):
                self._store.mark_skipped(target, blocking)
                return None
            self.auth_backoff.reset(target.org, target.token)
        started = time.monotonic()
        if deadline is None:
            deadline = started + self.interval(target)
        budget = self.budget(target.token)
        outcome: Analytics | NoData | ApiError | None = None
        attempt = 0
        auth_retried = False
        while True:
            response = await self._request(target, budget, deadline, priority)
            if response is None:
                break  # no budget before the deadline
            outcome = response.outcome
            self._observe(budget, response)
            if not isinstance(outcome, ApiError):
                self.auth_backoff.reset(target.org, target.token)
                break
            if outcome.reason in AUTH_FAILURES and not outcome.target_only:
                if not auth_retried and self._tokens.changed(target.token):
                    auth_retried = True  # a rotated token file: retry at once, count nothing
                    continue
                self._back_off(target, outcome)
                break
            attempt += 1
            wait = random.uniform(0, min(RETRY_CAP, RETRY_BASE * 2**attempt))
            if (outcome.reason not in RETRYABLE or attempt >= MAX_ATTEMPTS
                    or time.monotonic() + wait + self.client.timeout > deadline):
                break
            await asyncio.sleep(wait)
        if outcome is None:
            return None  # no budget within the slot: skipped, as if not due
        if isinstance(outcome, Analytics):
            outcome = without(outcome, self._is_secret)
        transition = self._store.record(target, outcome, time.monotonic() - started)
        if transition is not None:
            self._log_transition(target, transition)
            self._poll_now(self.freshness.observe(target, outcome, time.monotonic()))
        return outcome

    def _poll_now(self, keys: list[Key]) -> None:
        """Make these targets due now, in this order (their org's figures changed)."""
        if not keys:
            return
        now = time.monotonic()
        for rank, key in enumerate(keys):
            if key in self._targets and key not in self._inflight:
                self._schedule(key, now + rank * 1e-6)
        self._wake.set()

    async def send(self, budget: RequestBudget, deadline: float,
                   request: Callable[[], Awaitable[R]], priority: int = FIRST) -> R | None:
        """Run ``request`` once the budget and a concurrency slot allow; None (nothing sent,
        nothing spent) if that is not before ``deadline``. A request waits while one of a
        higher priority (a lower number: org-wide first, then spaces whose org changed, then
        idle refreshes) waits for the same budget or a slot."""
        waiting = True
        budget.waiting[priority] += 1
        try:
            while True:
                delay = budget.wait()
                if any(budget.waiting[:priority]):
                    delay = max(delay, PRIORITY_GRAIN)
                if delay > 0:
                    if time.monotonic() + delay > deadline:
                        return None
                    await asyncio.sleep(delay)
                    continue
                async with self._semaphore:
                    if budget.wait() > 0 or any(budget.waiting[:priority]):
                        continue  # a 429, the cap or a more urgent request came meanwhile
                    budget.spend()
                    waiting = False
                    budget.waiting[priority] -= 1
                    return await request()
        finally:
            if waiting:
                budget.waiting[priority] -= 1

    async def _request(self, target: Target, budget: RequestBudget, deadline: float,
                       priority: int) -> ApiResponse[Analytics | NoData] | None:
        async def fetch() -> ApiResponse[Analytics | NoData]:
            try:
                token = self._tokens.get(target.token)
            except ConfigError as exc:
                return ApiResponse(ApiError("unauthorized", f"no usable token: {exc}"))
            return await self.client.fetch_analytics(target.org, token, target.space_token)

        response = await self.send(budget, deadline, fetch, priority)
        if response is not None:
            self._store.count_request(target.org, response.outcome, response.ratelimit_remaining)
        return response

    def _is_secret(self, name: str) -> bool:
        """Whether a status or outcome name is a configured token (compared case-folded)."""
        folded = name.casefold()
        return folded in self._space_tokens or folded in self._tokens.known()

    def _observe(self, budget: RequestBudget,
                 response: ApiResponse[Analytics | NoData]) -> None:
        outcome = response.outcome
        if isinstance(outcome, ApiError) and outcome.reason == "rate_limited":
            budget.pause(response.retry_after or response.ratelimit_reset
                         or DEFAULT_RATE_LIMIT_PAUSE)
        if response.retry_after is not None:
            return  # the API said exactly how long to wait
        budget.observe_limit(response.ratelimit_remaining, response.ratelimit_limit,
                             response.ratelimit_reset)

    def _back_off(self, target: Target, error: ApiError) -> None:
        delay = self.auth_backoff.failed(target.org, target.token, error, self.interval(target))
        log.warning("authentication failed, backing off this org's targets", extra={"fields": {
            "org": target.org, "reason": error.reason, "token": target.token.describe(),
            "retry_in": f"{delay:.0f}s"}})

    async def _poll(self, target: Target, priority: int) -> None:
        try:
            await self.poll_once(target, priority=priority)
        except Exception:  # a bug must not kill the loop; it shows in the log instead
            log.exception("poll crashed", extra={"fields": {"target": target.describe()}})

    def _log_transition(self, target: Target, transition: Transition) -> None:
        before, after = transition.before, transition.after
        fields: dict[str, object] = {"org": target.org, "space": target.space}
        if not after.up and after.last_error is not None:
            if before.up or not before.attempted or (
                before.last_error is not None and before.last_error.reason
                != after.last_error.reason
            ):
                fields.update(reason=after.last_error.reason, error=after.last_error.message)
                log.warning("target down", extra={"fields": fields})
            else:
                log.debug("poll failed", extra={"fields": {
                    **fields, "reason": after.last_error.reason}})
            return
        if before.attempted and not before.up:
            log.info("target recovered", extra={"fields": fields})
        analytics = after.analytics
        if analytics is not None and analytics.ignored_keys and (
            target.key not in self._warned_statuses
        ):
            self._warned_statuses.add(target.key)
            log.warning("task statuses or call outcomes ignored (bad name or more than 32)",
                        extra={"fields": {**fields,
                                          "names": ",".join(analytics.ignored_keys[:10])}})
