"""The polling loop: every target once per interval, spread over it, bounded in concurrency.

One scheduler coroutine keeps a heap of due times and starts one short-lived task per poll, so a
slow or failing target only ever holds its own task (and one concurrency slot, for at most the
request timeout). The first round starts every target at once (the semaphore paces it) so that
``/-/ready`` comes quickly; after that each target keeps a fixed slot in the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import math
import time
from collections.abc import Iterable

from exporter.analytics import Analytics
from exporter.client import ApiError, ApiResponse, UnpodClient
from exporter.config import ConfigError
from exporter.store import SnapshotStore, Transition
from exporter.targets import Target
from exporter.tokens import TokenReader

log = logging.getLogger("unpod_exporter.poller")
Key = tuple[str, str]


def next_slot(anchor: float, phase: float, interval: float, now: float) -> float:
    """The first slot ``anchor + phase + k*interval`` at least half an interval after now."""
    earliest = now + interval / 2
    k = math.ceil((earliest - anchor - phase) / interval)
    return anchor + phase + k * interval


class Poller:
    def __init__(self, client: UnpodClient, store: SnapshotStore, tokens: TokenReader,
                 concurrency: int) -> None:
        self.client = client
        self._store = store
        self._tokens = tokens
        self._semaphore = asyncio.Semaphore(concurrency)
        self._targets: dict[Key, Target] = {}
        self._phases: dict[Key, float] = {}
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._inflight: dict[Key, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._anchor = time.monotonic()
        self._warned_statuses: set[Key] = set()

    # --- targets ---------------------------------------------------------------------------

    def set_targets(self, targets: Iterable[Target]) -> None:
        """Adopt a new target list: new targets are due now, surviving ones keep their slot."""
        ordered = list(targets)
        self._store.set_targets(ordered)
        for target in ordered:
            self._store.poll_intervals.setdefault(target.org, target.interval)
        count = max(1, len(ordered))
        now = time.monotonic()
        self._targets = {t.key: t for t in ordered}
        self._phases = {t.key: self.interval(t) * i / count for i, t in enumerate(ordered)}
        self._warned_statuses &= set(self._targets)
        for key in set(self._due) - set(self._targets):
            del self._due[key]
        for key in self._targets:
            if key not in self._due:
                self._schedule(key, now)
        self._wake.set()

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
        while not self._stopping:
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                due, key = heapq.heappop(self._heap)
                target = self._targets.get(key)
                if target is None or self._due.get(key) != due:
                    continue  # removed, or rescheduled since this entry was pushed
                if key not in self._inflight:
                    task = asyncio.create_task(self._poll(target), name=f"poll {target.describe()}")
                    self._inflight[key] = task
                    task.add_done_callback(functools.partial(self._forget, key))
                self._schedule(key, next_slot(self._anchor, self._phases[key],
                                              self.interval(target), now))
            timeout = self._heap[0][0] - now if self._heap else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

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

    async def poll_once(self, target: Target) -> Analytics | ApiError:
        """Poll one target now (under the concurrency limit) and record the outcome."""
        async with self._semaphore:
            started = time.monotonic()
            try:
                token = self._tokens.get(target.token)
            except ConfigError as exc:
                response = ApiResponse(ApiError("unauthorized", f"no usable token: {exc}"))
            else:
                response = await self.client.fetch_analytics(target.org, token,
                                                               target.space_token)
                self._store.count_request(target.org, response)
            duration = time.monotonic() - started
        transition = self._store.record(target, response.outcome, duration)
        if transition is not None:
            self._log_transition(target, transition)
        return response.outcome

    async def _poll(self, target: Target) -> None:
        try:
            await self.poll_once(target)
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
        if analytics is not None and analytics.ignored_statuses and (
            target.key not in self._warned_statuses
        ):
            self._warned_statuses.add(target.key)
            log.warning("task statuses ignored (bad name or more than 32)", extra={"fields": {
                **fields, "statuses": ",".join(analytics.ignored_statuses[:10])}})
