"""``/probe``: poll one target now, from what the scheduled polls leave of its budget.

A probe may spend only the spare budget of its token (what the plan leaves after the
scheduled polls and discovery), and only a few run at once: a flood of probes never starves
the polls of other targets. Its request then waits for the gate like any other, but no longer
than the scrape that asked for it can wait: Prometheus's ``X-Prometheus-Scrape-Timeout-Seconds``
less half a second for the answer, and never over ten seconds.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Literal

from prometheus_client import CollectorRegistry

from exporter.budget import RequestBudget
from exporter.clock import SYSTEM_CLOCK, Clock
from exporter.collector import UnpodCollector
from exporter.config import TokenSource
from exporter.poller import Poller
from exporter.scheduler import Scheduler
from exporter.store import SnapshotStore

MAX_WAIT = 10.0  # seconds: Prometheus's default scrape timeout
ANSWER_MARGIN = 0.5  # seconds of the scrape timeout left for rendering and sending the answer
Refusal = Literal["unknown", "budget"]


def probe_wait(scrape_timeout: str | None, cap: float = MAX_WAIT) -> float:
    """How long a probe may wait for budget: the scrape timeout less ANSWER_MARGIN, at most
    ``cap``; ``cap`` without a (readable, positive) header."""
    try:
        seconds = float(scrape_timeout) if scrape_timeout else math.nan
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        return cap
    return max(0.0, min(cap, seconds - ANSWER_MARGIN))


class Prober:
    def __init__(self, *, poller: Poller, scheduler: Scheduler, store: SnapshotStore,
                 concurrency: int, clock: Clock = SYSTEM_CLOCK) -> None:
        self._poller = poller
        self._scheduler = scheduler
        self._store = store
        self._clock = clock
        self._budgets: dict[TokenSource, RequestBudget] = {}
        self._slots = asyncio.Semaphore(max(1, concurrency // 4))

    def set_spare(self, spares: Mapping[TokenSource, tuple[float, float | None] | None]) -> None:
        """Per token: the spare caps (per minute, per day) for probes; None: no probes."""
        budgets = {}
        for token, caps in spares.items():
            if caps is None:
                continue  # the polls need every request: no probes for this token
            budget = budgets[token] = self._budgets.get(token) or RequestBudget(
                *caps, clock=self._clock.now)
            budget.configure(*caps)
        self._budgets = budgets

    def take_spare(self, token: TokenSource) -> bool:
        """Take one request of the token's spare budget now, if it has one (what the
        webhook's events spend too: neither may take requests from the schedule)."""
        allowance = self._budgets.get(token)
        if allowance is None or allowance.wait() > 0:
            return False
        allowance.spend()
        return True

    async def probe(self, org: str, space: str, wait: float) -> CollectorRegistry | Refusal:
        """Poll one current target now; its metrics alone, or why not. A probe that cannot
        be served from the spare budget at once says so at once; one whose request gets no
        budget within ``wait`` seconds says so then."""
        poller = self._poller
        target = self._scheduler.target((org, space))
        if target is None:
            return "unknown"
        blocked = poller.auth_backoff.blocked(target.org, target.token) is not None
        if not blocked and (self._slots.locked() or not self.take_spare(target.token)):
            return "budget"
        async with self._slots:
            outcome = await poller.poll_once(target, deadline=self._clock.now() + wait)
        if outcome is None and not blocked:
            return "budget"
        registry = CollectorRegistry(auto_describe=False)
        registry.register(UnpodCollector(self._store, only=target.key))
        return registry
