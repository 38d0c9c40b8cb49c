"""The request gate: every request to the API passes here, polls, discovery, ``/probe`` and
``--config.check.api`` alike.

A request is admitted when three things allow it: its token source's budget
(``RequestBudget``: caps, 429 pauses, pacing near the API's limit), a free concurrency slot,
and its priority: a request waits while one of a more urgent class (a lower ``Priority``)
waits for the same budget. Within a class, first come, first served; a free slot goes to the
most urgent admissible request of any token.

Waiters are parked on futures and woken by one timer, as aiolimiter's leaky bucket does
(``acquire`` parks, ``_wake_next`` resolves): when a slot frees, a budget changes, or the timer
fires at the next moment a budget refills or a deadline passes. Nothing polls on a grain.
A waiter whose budget cannot admit it before its deadline gets None at once, and one held back
by a more urgent waiter gets None at its deadline: nothing sent, nothing spent.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar

from exporter.budget import RequestBudget
from exporter.client import ApiResponse
from exporter.clock import SYSTEM_CLOCK, Clock, Timer
from exporter.config import TokenSource

R = TypeVar("R")


class Priority(IntEnum):
    """Who goes first for a budget and a slot (lowest value first)."""

    FIRST = 0  # org-wide figures, and every target polled as before change-driven polling
    CHANGED = 1  # spaces whose org's figures changed
    IDLE = 2  # spaces refreshed because idle_interval passed
    BACKLOG = 3  # backlog scans: after every due analytics poll


@dataclass(eq=False)
class _Waiter:
    priority: Priority
    seq: int
    deadline: float
    future: asyncio.Future[bool] = field(repr=False)


@dataclass
class _Queue:
    """The waiters of one token source: by (priority, arrival), and by deadline within each
    priority; an entry whose future is done (admitted, expired, cancelled) is dropped lazily."""

    by_turn: list[tuple[int, int, _Waiter]] = field(default_factory=list)
    by_deadline: dict[Priority, list[tuple[float, int, _Waiter]]] = field(default_factory=dict)

    def push(self, waiter: _Waiter) -> None:
        heapq.heappush(self.by_turn, (waiter.priority, waiter.seq, waiter))
        if math.isfinite(waiter.deadline):
            heapq.heappush(self.by_deadline.setdefault(waiter.priority, []),
                           (waiter.deadline, waiter.seq, waiter))

    def head(self) -> _Waiter | None:
        while self.by_turn and self.by_turn[0][2].future.done():
            heapq.heappop(self.by_turn)
        return self.by_turn[0][2] if self.by_turn else None

    def expire(self, before: float, *, after: Priority | None = None) -> None:
        """Give None to every waiter whose deadline is before ``before`` (of a priority less
        urgent than ``after``, at or before it)."""
        for priority, heap in self.by_deadline.items():
            if after is not None and priority <= after:
                continue
            while heap and (heap[0][2].future.done() or heap[0][0] < before
                            or (after is not None and heap[0][0] == before)):
                waiter = heapq.heappop(heap)[2]
                if not waiter.future.done():
                    waiter.future.set_result(False)

    def next_deadline(self, after: Priority) -> float:
        """The earliest deadline of a waiter less urgent than ``after``."""
        soonest = math.inf
        for priority, heap in self.by_deadline.items():
            while heap and heap[0][2].future.done():
                heapq.heappop(heap)
            if priority > after and heap:
                soonest = min(soonest, heap[0][0])
        return soonest


class RequestGate:
    def __init__(self, *, concurrency: int, per_minute: float = 0,
                 per_day: float | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._limit = max(1, concurrency)
        self._busy = 0  # slots held by requests in flight
        self._per_minute, self._per_day = per_minute, per_day
        self.budgets: dict[TokenSource, RequestBudget] = {}
        self._queues: dict[TokenSource, _Queue] = {}
        self._seq = itertools.count()
        self._timer: Timer | None = None
        self._timer_at = math.inf

    # --- configuration ---------------------------------------------------------------------

    def budget(self, token: TokenSource) -> RequestBudget:
        """The budget of a token source, made with the gate's caps on first use."""
        budget = self.budgets.get(token)
        if budget is None:
            budget = self.budgets[token] = RequestBudget(self._per_minute, self._per_day,
                                                         clock=self.clock.now)
        return budget

    def configure(self, per_minute: float, per_day: float | None) -> None:
        """New caps for every budget (kept across reloads: what was spent stays spent)."""
        self._per_minute, self._per_day = per_minute, per_day
        for budget in self.budgets.values():
            budget.configure(per_minute, per_day)
        self.wake()

    def set_concurrency(self, concurrency: int) -> None:
        # Requests in flight keep their slots; the new limit applies to what is admitted next.
        self._limit = max(1, concurrency)
        self.wake()

    @property
    def concurrency(self) -> int:
        """Requests that may be in flight at once."""
        return self._limit

    def waiting(self, token: TokenSource) -> int:
        """Requests of this token source parked for their turn."""
        queue = self._queues.get(token)
        return 0 if queue is None else sum(not w.future.done() for _, _, w in queue.by_turn)

    # --- admission -------------------------------------------------------------------------

    async def send(self, token: TokenSource,
                   request: Callable[[], Awaitable[ApiResponse[R]]], *,
                   priority: Priority = Priority.FIRST, deadline: float = math.inf,
                   ) -> ApiResponse[R] | None:
        """Run ``request`` once admitted; None (nothing sent, nothing spent) if that cannot be
        before ``deadline`` (a time on the gate's clock). What the answer says of the API's
        limit (a 429, rate-limit headers) is taken before the slot frees, so that no waiter
        is admitted past a pause the API just asked for."""
        if not await self._admit(token, priority, deadline):
            return None
        try:
            response = await request()
            self.budgets[token].observe(response)
            return response
        finally:
            self._busy -= 1
            self.wake()

    async def _admit(self, token: TokenSource, priority: Priority, deadline: float) -> bool:
        self.budget(token)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(token, _Queue()).push(
            _Waiter(priority, next(self._seq), deadline, future))
        self.wake()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result():
                self._busy -= 1  # admitted, then cancelled before it could send
                self.wake()
            raise

    def wake(self) -> None:
        """Admit whatever may go now; arm the one timer for the next moment that changes."""
        now = self.clock.now()
        wake_at = math.inf
        while True:
            best: tuple[_Waiter, RequestBudget] | None = None
            for token, queue in list(self._queues.items()):
                budget = self.budgets[token]
                delay = budget.wait()
                if delay > 0:
                    queue.expire(now + delay)  # cannot be admitted in time: None at once
                head = queue.head()
                if head is None:
                    del self._queues[token]
                    continue
                if delay > 0:
                    wake_at = min(wake_at, now + delay)
                elif best is None or (head.priority, head.seq) < (best[0].priority,
                                                                  best[0].seq):
                    best = (head, budget)
            if best is None or self._busy >= self._limit:
                break
            waiter, budget = best
            budget.spend()
            self._busy += 1
            waiter.future.set_result(True)
        for queue in self._queues.values():
            # A waiter held back by a more urgent one of its budget gives up at its deadline;
            # one held only by busy slots, or by earlier ones of its class, waits on: it has
            # its budget, and is sent late rather than not at all, as behind a semaphore.
            if (head := queue.head()) is not None:
                queue.expire(now, after=head.priority)
                wake_at = min(wake_at, queue.next_deadline(head.priority))
        self._arm(now, wake_at)

    def _arm(self, now: float, when: float) -> None:
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, when
        if math.isfinite(when):
            self._timer = self.clock.call_later(when - now, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self.wake()
