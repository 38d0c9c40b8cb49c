"""One backlog scan against the fake API's runs and tasks endpoints, through the real client."""

from __future__ import annotations

import gzip
import json
import math
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import pytest
from aiohttp import web

from exporter.backlog.parse import MAX_BODY_BYTES
from exporter.backlog.scan import Endpoint, ScanResult, ScanSettings, scan_space
from exporter.client import ApiResponse, UnpodClient
from exporter.retry import retry_delay
from tests.conftest import TOKEN
from tests.fakeapi import FakeUnpod
from tests.fakebacklog import PERSONAL

T = TypeVar("T")
SPACE = "sp_live_4f2a"
NO_WAIT = partial(retry_delay, now=0.0, deadline=math.inf, request_timeout=0.0,
                  jitter=lambda low, high: 0.0)
AGENT = "space-agent-8qmk42"


class Scanner:
    """The fake API, a client with the scan's 8 MiB bound, and a plain Fetch over it."""

    def __init__(self, fake: FakeUnpod, client: UnpodClient) -> None:
        self.fake = fake
        self.client = client
        self.endpoints: list[str] = []

    async def fetch(self, endpoint: Endpoint, path: str, params: Mapping[str, str],
                    parse: Callable[[object], T]) -> ApiResponse[T] | None:
        self.endpoints.append(endpoint)
        return await self.client.get(path, TOKEN, "acme", dict(params), parse,
                                     (TOKEN, SPACE), whole_body=True)

    async def scan(self, page_size: int = 50, max_requests: int = 20,
                   is_secret: Callable[[str], bool] = lambda _: False,
                   space: str = SPACE) -> ScanResult:
        settings = ScanSettings(page_size, max_requests, is_secret, NO_WAIT)
        return await scan_space(self.fetch, space, settings, time.time())


@pytest.fixture
def scanner(backlog_api: tuple[FakeUnpod, UnpodClient]) -> Scanner:
    return Scanner(*backlog_api)


def no_forbidden_parameters(scanner: Scanner) -> None:
    for request in scanner.fake.backlog.requests:
        assert "space_id" not in request.query
        assert request.query.get("page_size") != "0"
        assert request.authorization == f"Token {TOKEN}"


async def test_a_busy_space(scanner):
    backlog = scanner.fake.backlog
    now = time.time()
    backlog.add_run(SPACE, ["completed"] * 3, run_status="completed", created=now - 86_400)
    backlog.add_run(SPACE, ["pending", "pending", "in_progress", "completed", "scheduled"],
                    created=now - 1800, last_status_change=now - 600,
                    scheduled_timestamp=now - 60)
    result = await scanner.scan()
    assert result.error is None and result.snapshot is not None
    snapshot = result.snapshot
    assert snapshot.open_runs == 1
    counts = dict(snapshot.tasks)
    assert (counts["pending"], counts["in_progress"], counts["completed"],
            counts["scheduled"]) == (2, 1, 1, 1)
    assert snapshot.oldest_pending == pytest.approx(now - 1800, abs=1)
    assert snapshot.oldest_in_progress == pytest.approx(now - 600, abs=1)
    assert (snapshot.overdue_scheduled, snapshot.retried, snapshot.complete) == (1, 0, True)
    # runs, the open run's tasks, one agent list (it stops before the completed run)
    assert [r.kind for r in backlog.requests] == ["runs", "tasks", "agent"]
    assert scanner.endpoints == ["runs", "tasks", "tasks"] and result.requests == 3
    no_forbidden_parameters(scanner)
    assert not any(secret in repr(result) for secret in PERSONAL)


async def test_only_open_runs_cost_requests(scanner):
    for _ in range(7):
        scanner.fake.backlog.add_run(SPACE, ["completed"], run_status="completed")
    result = await scanner.scan()
    assert result.snapshot is not None and result.snapshot.open_runs == 0
    assert result.requests == 1 and result.snapshot.complete
    assert (result.snapshot.retried, result.snapshot.overdue_scheduled) == (0, 0)


async def test_pages_by_count_and_oldest_run_first(scanner):
    backlog = scanner.fake.backlog
    now = time.time()
    old = backlog.add_run(SPACE, ["pending"] * 100, created=now - 7200, retry_attempt=1,
                          transcript_bytes=200)
    backlog.add_run(SPACE, ["pending"] * 3, created=now - 60, transcript_bytes=200)
    result = await scanner.scan(page_size=50)
    assert result.snapshot is not None and result.snapshot.complete
    assert dict(result.snapshot.tasks)["pending"] == 103
    assert result.snapshot.retried == 100
    tasks = [r for r in backlog.requests if r.kind == "tasks"]
    # 100 tasks at 50 a page: two pages (count says so), the oldest run first
    assert [(r.path.split("/")[-3], r.query["page"]) for r in tasks] == [
        (old.run_id, "1"), (old.run_id, "2"), (backlog.runs[SPACE][0].run_id, "1")]
    assert {r.query["page_size"] for r in backlog.requests} == {"50"}
    no_forbidden_parameters(scanner)


async def test_the_cap_cuts_and_says_so(scanner):
    now = time.time()
    scanner.fake.backlog.add_run(SPACE, ["pending"] * 120, created=now - 3600,
                                 transcript_bytes=100)
    result = await scanner.scan(page_size=50, max_requests=3)
    assert result.snapshot is not None and not result.snapshot.complete
    assert result.requests == 3 and scanner.fake.backlog.count() == 3
    assert dict(result.snapshot.tasks)["pending"] == 100  # what it saw: a lower bound
    assert result.snapshot.oldest_pending == pytest.approx(now - 3600, abs=1)
    assert result.snapshot.retried is None  # the agent list was never read: no guess


async def test_agent_lists_stop_at_the_oldest_open_run(scanner):
    backlog = scanner.fake.backlog
    now = time.time()
    for day in range(5, 0, -1):  # an agent's long history, finished
        backlog.add_run(SPACE, ["completed"] * 10, run_status="completed",
                        created=now - day * 86_400, transcript_bytes=100)
    backlog.add_run(SPACE, ["pending"] * 10, created=now - 600, transcript_bytes=100)
    result = await scanner.scan(page_size=5)
    assert result.snapshot is not None and result.snapshot.complete
    agent = [r for r in backlog.requests if r.kind == "agent"]
    # 10 open tasks fill two pages; the third shows older tasks: stop there, not at page 12
    assert [r.query["page"] for r in agent] == ["1", "2", "3"]


async def test_retries_count_against_the_cap(scanner):
    backlog = scanner.fake.backlog
    run = backlog.add_run(SPACE, ["pending"])
    answers = iter([web.Response(status=500, text="<h1>Server Error</h1>")])
    backlog.faults[f"tasks:{SPACE}:{run.run_id}"] = lambda: next(answers, None)
    result = await scanner.scan()
    assert result.snapshot is not None and result.snapshot.complete
    assert result.requests == 4  # runs, tasks (500), tasks again, agent


@pytest.mark.parametrize("fault, reason", [
    ("invalid_space_token", "not_found"), ("no_space_access", "forbidden"),
    ("invalid_token", "unauthorized"), ("server_error_html", "server_error"),
])
async def test_a_failed_runs_list_fails_the_scan(scanner, fault, reason):
    from tests.fakeapi import FAULTS
    answer = FAULTS[fault]
    scanner.fake.backlog.space(SPACE)
    scanner.fake.backlog.faults[f"runs:{SPACE}"] = lambda: web.json_response(
        answer.body, status=answer.status) if not isinstance(answer.body, bytes) else \
        web.Response(status=answer.status, body=answer.body)
    result = await scanner.scan()
    assert result.snapshot is None and result.error is not None
    assert result.error.reason == reason
    assert SPACE not in result.error.message and TOKEN not in result.error.message


async def test_an_unknown_space_and_a_wrong_token(scanner):
    result = await scanner.scan(space="sp_nobody")
    assert result.error is not None and result.error.reason == "not_found"
    scanner.fake.tokens = {"another"}
    scanner.fake.backlog.space(SPACE)
    result = await scanner.scan()
    assert result.error is not None and result.error.reason == "unauthorized"


async def test_a_failed_agent_list_leaves_its_figures_out(scanner):
    backlog = scanner.fake.backlog
    backlog.add_run(SPACE, ["pending", "in_progress"], created=time.time() - 60)
    backlog.faults[f"agent:{AGENT}"] = lambda: web.json_response(
        {"message": "Agent not found"}, status=404)
    result = await scanner.scan()
    assert result.snapshot is not None and result.agent_error is not None
    assert result.agent_error.reason == "not_found"
    assert dict(result.snapshot.tasks)["pending"] == 1
    assert result.snapshot.oldest_in_progress is None and result.snapshot.retried is None


async def test_an_answer_over_8_mib_after_decompression(scanner):
    huge = json.dumps({"status_code": 200, "count": 1, "data": [
        {"run_id": "R1", "status": "pending", "notes": "x" * (MAX_BODY_BYTES + 1)}]}).encode()
    packed = gzip.compress(huge)
    assert len(packed) < MAX_BODY_BYTES // 100
    scanner.fake.backlog.space(SPACE)
    scanner.fake.backlog.faults[f"runs:{SPACE}"] = lambda: web.Response(
        body=packed, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    result = await scanner.scan()
    assert result.error is not None and result.error.reason == "invalid_response"


async def test_large_transcripts_within_the_bound_are_fine(scanner):
    scanner.fake.backlog.add_run(SPACE, ["pending"] * 50, transcript_bytes=100_000)
    result = await scanner.scan()
    assert result.snapshot is not None and dict(result.snapshot.tasks)["pending"] == 50


async def test_unreadable_times_leave_one_task_out_of_one_figure(scanner):
    backlog = scanner.fake.backlog
    now = time.time()
    run = backlog.add_run(SPACE, ["pending", "pending"], created=now - 300)
    run.tasks[0]["created"] = "the day before yesterday"
    result = await scanner.scan()
    assert result.snapshot is not None
    assert dict(result.snapshot.tasks)["pending"] == 2
    assert result.snapshot.oldest_pending == pytest.approx(now - 300, abs=1)


def _garbage_item() -> dict[str, Any]:
    return {"run_id": {"$oid": "x"}, "status": ["pending"]}


async def test_garbage_items_are_skipped(scanner):
    backlog = scanner.fake.backlog
    backlog.add_run(SPACE, ["pending"])
    real = backlog.runs[SPACE][0].item
    backlog.runs[SPACE][0].item = lambda: {**real(), "created": None}  # type: ignore[method-assign]
    backlog.add_run(SPACE, ["pending"])
    backlog.runs[SPACE][0].item = _garbage_item  # type: ignore[method-assign]
    result = await scanner.scan()
    assert result.snapshot is not None and result.snapshot.open_runs == 1
