"""The backlog scan's requests for one space: its runs, the tasks of its open runs, and the
agent task lists behind the three figures that only raw task documents carry.

Order under the per-scan cap: the runs list first (without it nothing is known), then the open
runs' tasks from the oldest run on (the oldest pending task is what the alerts read), then the
agents' lists. A request is sent only through ``fetch`` (the request gate: budget, priority,
concurrency), never with ``page_size=0`` or ``space_id``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, Protocol, TypeVar
from urllib.parse import quote

from exporter.backlog.parse import (
    AgentTask,
    Page,
    Run,
    parse_agent_tasks,
    parse_runs,
    parse_tasks,
)
from exporter.backlog.policy import Allowance, Tally, is_open, reached_older, read_to_end
from exporter.backlog.snapshot import BacklogSnapshot
from exporter.client import ApiError, ApiResponse
from exporter.retry import retry_delay

T = TypeVar("T")
Endpoint = Literal["runs", "tasks"]
# The polls' retry policy; a scan has no slot to end in, only its per-scan cap.
Retry = Callable[[int, str], float | None]
RETRY: Retry = partial(retry_delay, now=0.0, deadline=math.inf, request_timeout=0.0)


class Fetch(Protocol):
    """One request through the gate; None when no budget was free in time (nothing sent)."""

    async def __call__(self, endpoint: Endpoint, path: str, params: Mapping[str, str],
                       parse: Callable[[object], T]) -> ApiResponse[T] | None: ...


@dataclass(frozen=True)
class ScanSettings:
    page_size: int
    max_requests: int
    is_secret: Callable[[str], bool]
    retry: Retry = field(default=RETRY)  # seconds before attempt+1, or None: give up


@dataclass(frozen=True)
class ScanResult:
    """A snapshot, or the error that stopped the scan; ``agent_error`` when only an agent
    list failed (the snapshot stands without the figures it would have given). ``skipped``:
    the budget had no room, nothing is recorded."""

    snapshot: BacklogSnapshot | None
    error: ApiError | None
    requests: int
    agent_error: ApiError | None = None
    skipped: bool = False


class _Stop(Exception):
    """A request failed for good (``error``), or found no budget (``error`` is None)."""

    def __init__(self, error: ApiError | None) -> None:
        super().__init__(error.reason if error else "no budget")
        self.error = error


class _Scan:
    def __init__(self, fetch: Fetch, space_token: str, settings: ScanSettings,
                 now: float) -> None:
        self._fetch = fetch
        self._space = quote(space_token, safe="")
        self._settings = settings
        self.allowance = Allowance(settings.max_requests)
        self.tally = Tally(now)

    @property
    def requests(self) -> int:
        return self._settings.max_requests - self.allowance.left

    async def _get(self, endpoint: Endpoint, path: str, number: int,
                   parse: Callable[[object], Page[T]]) -> Page[T] | None:
        """One page, with retries; None when the cap refused a request."""
        params = {"page": str(number), "page_size": str(max(1, self._settings.page_size))}
        attempt = 0
        while True:
            if not self.allowance.take():
                return None
            response = await self._fetch(endpoint, path, params, parse)
            if response is None:
                raise _Stop(None)
            outcome = response.outcome
            if not isinstance(outcome, ApiError):
                return outcome
            attempt += 1
            wait = self._settings.retry(attempt, outcome.reason)
            if wait is None:
                raise _Stop(outcome)
            await asyncio.sleep(wait)

    async def _pages(self, endpoint: Endpoint, path: str, parse: Callable[[object], Page[T]],
                     enough: Callable[[Page[T]], bool] = lambda page: False,
                     ) -> tuple[list[Page[T]], bool]:
        """Pages of a list until its end or ``enough``; True if nothing was cut short."""
        pages: list[Page[T]] = []
        number = 1
        while True:
            page = await self._get(endpoint, path, number, parse)
            if page is None:
                return pages, False
            pages.append(page)
            if read_to_end(page, number, self._settings.page_size) or enough(page):
                return pages, True
            number += 1

    async def runs(self) -> tuple[list[Run], bool]:
        pages, whole = await self._pages("runs", f"/spaces/{self._space}/runs/", parse_runs)
        runs = [run for page in pages for run in page.items]
        return [run for run in runs if is_open(run) and self.tally.add_run(run)], whole

    async def tasks(self, run: Run) -> bool:
        path = f"/spaces/{self._space}/runs/{quote(run.run_id, safe='')}/tasks/"
        pages, whole = await self._pages("tasks", path, parse_tasks)
        for page in pages:
            for task in page.items:
                self.tally.add_task(task)
        return whole

    async def agent(self, handle: str, oldest: float | None) -> bool:
        path = f"/agents/{quote(handle, safe='')}/tasks/"

        def enough(page: Page[AgentTask]) -> bool:
            return reached_older(page, oldest)

        pages, whole = await self._pages("tasks", path, parse_agent_tasks, enough)
        for page in pages:
            for task in page.items:
                self.tally.add_agent_task(task)
        return whole


async def scan_space(fetch: Fetch, space_token: str, settings: ScanSettings,
                     now: float) -> ScanResult:
    """Scan one space. Never raises for anything the API does."""
    scan = _Scan(fetch, space_token, settings, now)
    try:
        open_runs, complete = await scan.runs()
        for run in reversed(open_runs):  # the list is newest first: oldest open run first
            complete = await scan.tasks(run) and complete
    except _Stop as stop:
        return ScanResult(None, stop.error, scan.requests, skipped=stop.error is None)
    agent_error: ApiError | None = None
    agents_read = complete
    try:
        for handle, oldest in sorted(scan.tally.agents.items()) if complete else ():
            agents_read = await scan.agent(handle, oldest) and agents_read
    except _Stop as stop:
        if stop.error is None:
            return ScanResult(None, None, scan.requests, skipped=True)
        agent_error, agents_read = stop.error, False
    complete = complete and not scan.allowance.cut
    snapshot = scan.tally.snapshot(settings.is_secret, complete=complete,
                                   agents_read=agents_read and not scan.allowance.cut)
    return ScanResult(snapshot, None, scan.requests, agent_error)

