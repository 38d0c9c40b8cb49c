"""One poll of one target: through the gate, retried by the retry policy, into the store.

The scheduler says when a target is due and calls ``start``: change-driven polling
(``Freshness``) either confirms the target without a request or names the priority of its
request; the poll then runs in a short-lived task of its own, so a slow or failing target only
ever holds its own task (and one gate slot, for at most the request timeout). ``poll_once`` is
the one fetch loop: send, observe what the answer says of the budget, retry or give up, back
off an org's credential on 401/403, record, and make the spaces of a changed org due now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from exporter.analytics import Analytics, without
from exporter.budget import AuthBackoff
from exporter.client import ApiError, ApiResponse, UnpodClient
from exporter.clock import SYSTEM_CLOCK, Clock
from exporter.config import ConfigError
from exporter.freshness import Freshness
from exporter.gate import Priority, RequestGate
from exporter.reasons import AUTH_FAILURES, Reason
from exporter.retry import retry_delay
from exporter.scheduler import Scheduler
from exporter.store import SnapshotStore
from exporter.targets import Target
from exporter.tokens import TokenReader
from exporter.transitions import TransitionLog

log = logging.getLogger("unpod_exporter.poller")
Outcome = Analytics | ApiError


class Poller:
    def __init__(self, *, gate: RequestGate, client: Callable[[], UnpodClient],
                 store: SnapshotStore, tokens: TokenReader, scheduler: Scheduler,
                 freshness: Freshness | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        """``client()``: the API client of the running config (a reload may replace it)."""
        self.gate = gate
        self.scheduler = scheduler
        # which due space needs a request (change-driven polling); off unless given
        self.freshness = freshness or Freshness(enabled=False)
        self.auth_backoff = AuthBackoff(clock=clock.now)
        self.clock = clock
        self._client = client
        self._store = store
        self._tokens = tokens
        self._transitions = TransitionLog()
        self._space_tokens: frozenset[str] = frozenset()

    def set_targets(self, targets: Iterable[Target]) -> None:
        """The targets being polled: their space tokens are secrets never exported."""
        ordered = list(targets)
        self._space_tokens = frozenset(t.space_token.casefold() for t in ordered
                                       if t.space_token)
        self._transitions.keep_only(t.key for t in ordered)

    def start(self, target: Target, now: float) -> asyncio.Task[None] | None:
        """Poll a due target in a task of its own, or confirm it without a request when its
        org is unchanged (``now``: the time up to which due polls start together)."""
        priority = self.freshness.priority(target, now)
        if priority is None:
            self._store.confirm(target)
            return None
        return asyncio.create_task(self._poll(target, priority),
                                   name=f"poll {target.describe()}")

    async def _poll(self, target: Target, priority: Priority) -> None:
        try:
            await self.poll_once(target, priority=priority)
        except Exception:  # a bug must not kill the loop; it shows in the log instead
            log.exception("poll crashed", extra={"fields": {"target": target.describe()}})

    async def poll_once(self, target: Target, deadline: float | None = None,
                        priority: Priority = Priority.FIRST) -> Outcome | None:
        """Poll one target now, with retries, within the budget and before ``deadline``
        (default: the end of its slot). None means skipped: nothing sent, nothing counted."""
        blocking = self.auth_backoff.blocked(target.org, target.token)
        if blocking is not None:
            if not self._tokens.changed(target.token):
                self._store.mark_skipped(target, blocking)
                return None
            self.auth_backoff.reset(target.org, target.token)
        started = self.clock.now()
        if deadline is None:
            deadline = started + self.scheduler.interval(target)
        outcome = await self._fetch(target, deadline, priority)
        if outcome is None:
            return None  # no budget within the slot: skipped, as if not due
        if isinstance(outcome, Analytics):
            outcome = without(outcome, self.is_secret)
        transition = self._store.record(target, outcome, self.clock.now() - started)
        if transition is not None:
            self._transitions.record(target, transition)
            self.scheduler.make_due(self.freshness.observe(target, outcome, self.clock.now()))
        return outcome

    async def _fetch(self, target: Target, deadline: float,
                     priority: Priority) -> Outcome | None:
        """Requests until one answers, the retry policy gives up, or the deadline comes."""
        outcome: Outcome | None = None
        attempt = 0
        auth_retried = False
        while True:
            response = await self._request(target, deadline, priority)
            if response is None:
                return outcome  # no budget before the deadline: the last answer stands
            outcome = response.outcome
            if not isinstance(outcome, ApiError):
                self.auth_backoff.reset(target.org, target.token)
                return outcome
            if outcome.reason in AUTH_FAILURES and not outcome.target_only:
                if not auth_retried and self._tokens.changed(target.token):
                    auth_retried = True  # a rotated token file: retry at once, count nothing
                    continue
                self._back_off(target, outcome)
                return outcome
            attempt += 1
            wait = retry_delay(attempt, outcome.reason, now=self.clock.now(),
                               deadline=deadline, request_timeout=self._client().timeout)
            if wait is None:
                return outcome
            await asyncio.sleep(wait)

    async def _request(self, target: Target, deadline: float,
                       priority: Priority) -> ApiResponse[Analytics] | None:
        async def fetch() -> ApiResponse[Analytics]:
            try:
                token = self._tokens.get(target.token)
            except ConfigError as exc:
                return ApiResponse(ApiError(Reason.UNAUTHORIZED, f"no usable token: {exc}"))
            return await self._client().fetch_analytics(target.org, token, target.space_token)

        response = await self.gate.send(target.token, fetch, priority=priority,
                                        deadline=deadline)
        if response is not None:
            self._store.count_request(target.org, response.outcome, response.ratelimit_remaining)
        return response

    def is_secret(self, name: str) -> bool:
        """Whether a status or outcome name is a configured token (compared case-folded)."""
        folded = name.casefold()
        return folded in self._space_tokens or folded in self._tokens.known()

    def _back_off(self, target: Target, error: ApiError) -> None:
        delay = self.auth_backoff.failed(target.org, target.token, error,
                                         self.scheduler.interval(target))
        log.warning("authentication failed, backing off this org's targets", extra={"fields": {
            "org": target.org, "reason": error.reason, "token": target.token.describe(),
            "retry_in": f"{delay:.0f}s"}})
