"""The backlog scan's parsing and policy, on their own (no I/O)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from exporter.analytics import MAX_STATUSES
from exporter.backlog.parse import (
    AgentTask,
    InvalidPage,
    Page,
    Run,
    Task,
    parse_agent_tasks,
    parse_runs,
    parse_tasks,
    parse_time,
)
from exporter.backlog.policy import (
    LONGEST_STRETCH,
    TASK_STATUSES,
    Allowance,
    Tally,
    mean_requests,
    reached_older,
    read_to_end,
    scan_interval,
    stale_after,
)
from exporter.backlog.snapshot import BacklogState, failed, succeeded, visible
from tests.fakebacklog import PERSONAL, STRIPPED, task_document

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC).timestamp()


def never_secret(_: str) -> bool:
    return False


@pytest.mark.parametrize("text, expected", [
    ("2026-03-01T09:30:00", T0),  # the platform's: naive, UTC
    ("2026-03-01T09:30:00.250000", T0 + 0.25),  # raw documents carry microseconds
    ("2026-03-01T09:30:00Z", T0),
    ("2026-03-01T15:00:00+05:30", T0),
    ("2026-03-01 09:30:00", T0),
    (T0, T0), (int(T0), T0), (str(int(T0)), T0), (f" {T0} ", T0),
])
def test_times_read(text, expected):
    assert parse_time(text) == pytest.approx(expected)


@pytest.mark.parametrize("garbage", [
    None, True, "", "yesterday", "2026-13-01T00:00:00", "2026-03-01T09:30:00+25:00",
    math.nan, math.inf, -1, 1e300, "9" * 80, [T0], {"$date": T0}, "0x10", "1e9",
    10 ** 400,  # a JSON integer too large for a float: OverflowError, not ValueError
])
def test_unreadable_times_are_none(garbage):
    assert parse_time(garbage) is None


def runs_body(*items, count=None):
    body = {"message": "Runs Fetched Successfully", "status_code": 200, "data": list(items)}
    if count is not None:
        body["count"] = count
    return body


def test_a_page_keeps_only_the_fields_a_figure_needs():
    document = task_document("T1", "R1", "sp_1", "agent-1", "pending", T0, retry_attempt=2,
                             last_status_change=T0 + 5)
    tasks = parse_tasks(runs_body({k: v for k, v in document.items() if k not in STRIPPED},
                                  count=1))
    raw = parse_agent_tasks(runs_body(document, count=1))
    assert tasks == Page((Task("T1", "pending", pytest.approx(T0), "agent-1"),), 1)
    assert raw.items == (AgentTask("T1", "R1", "pending", pytest.approx(T0),
                                   pytest.approx(T0 + 5), None, 2),)
    for kept in (tasks, raw):
        assert not any(secret in repr(kept) for secret in PERSONAL)


def test_items_that_cannot_be_read_are_skipped_not_the_page():
    page = parse_runs(runs_body(
        {"run_id": "R1", "status": "pending", "created": "2026-03-01T09:30:00"},
        "not an object", {"run_id": "R2"}, {"run_id": "../../etc", "status": "pending"},
        {"run_id": "R3", "status": "scheduled", "created": "soon"}, count=5))
    assert page.items == (Run("R1", "pending", T0), Run("R3", "scheduled", None))
    assert (page.count, page.skipped) == (5, 3)


@pytest.mark.parametrize("body, message", [
    ([], "runs answer is list"), ({"data": {}}, "runs data is dict"),
    ({"data": None}, "runs data is NoneType"),
    ({"data": [], "count": "3"}, "count is str"), ({"data": [], "count": True}, "count is bool"),
    ({"data": [], "count": -1}, "count is int"),
])
def test_what_is_not_a_page(body, message):
    with pytest.raises(InvalidPage, match=message):
        parse_runs(body)


def test_error_messages_quote_no_value():
    with pytest.raises(InvalidPage) as caught:
        parse_runs({"data": PERSONAL[0]})
    assert PERSONAL[0] not in str(caught.value)


def test_a_list_ends_by_count_or_by_a_short_page():
    full = Page(tuple(range(50)), None)
    assert not read_to_end(full, 1, 50)
    assert read_to_end(Page(tuple(range(49)), None), 1, 50)
    assert read_to_end(Page((), None), 3, 50)
    assert read_to_end(Page(tuple(range(50)), 100), 2, 50)  # no third request for []
    assert not read_to_end(Page(tuple(range(50)), 101), 2, 50)
    assert not read_to_end(Page(tuple(range(49)), None, skipped=1), 1, 50)


def agent_task(created, status="pending", run_id="R1", **fields):
    return AgentTask(fields.pop("task_id", None), run_id, status, created,
                     fields.get("last_status_change"), fields.get("scheduled_timestamp"),
                     fields.get("retry_attempt"))


def test_agent_lists_stop_at_the_first_task_older_than_the_oldest_open_run():
    page = Page((agent_task(T0 + 60), agent_task(None), agent_task(T0 - 1)), None)
    assert reached_older(page, T0)
    assert not reached_older(page, T0 - 1)
    assert not reached_older(page, None)  # unknown: read to the end


def test_the_cap_counts_and_says_when_it_refused():
    allowance = Allowance(2)
    assert allowance.take() and allowance.take() and not allowance.cut
    assert not allowance.take() and allowance.cut and allowance.left == 0


def test_tally_counts_open_runs_once_and_tasks_by_status():
    tally = Tally(now=T0 + 3600)
    assert tally.add_run(Run("R1", "in_progress", T0))
    assert not tally.add_run(Run("R1", "in_progress", T0))  # repeated by a growing list
    assert not tally.add_run(Run("R0", "completed", T0))
    for task in (Task("a", "pending", T0 + 10, "ag"), Task("b", "pending", None, "ag"),
                 Task("b", "pending", None, "ag"), Task("c", "completed", T0 - 99, "old"),
                 Task(None, "pending", T0 + 5, "ag2"), Task("d", "weird status!", T0, "ag")):
        tally.add_task(task)
    snapshot = tally.snapshot(never_secret, complete=True, agents_read=True)
    assert snapshot.open_runs == 1
    counts = dict(snapshot.tasks)
    assert counts["pending"] == 3 and counts["completed"] == 1 and counts["scheduled"] == 0
    assert [name for name, _ in snapshot.tasks][:len(TASK_STATUSES)] == list(TASK_STATUSES)
    assert snapshot.ignored_statuses == 1  # "weird status!" breaks the name rule
    assert snapshot.oldest_pending == T0 + 5  # the unreadable time is left out, not counted 0
    # finished tasks need no agent list; b's unreadable time makes ag's read to its end
    assert tally.agents == {"ag": None, "ag2": T0 + 5}


def test_an_unreadable_time_makes_that_agent_list_read_to_its_end():
    tally = Tally(now=T0)
    tally.add_task(Task("a", "pending", T0, "ag"))
    tally.add_task(Task("b", "pending", None, "ag"))
    tally.add_task(Task("c", "pending", T0 - 5, "ag"))
    assert tally.agents == {"ag": None}


def test_agent_documents_give_the_three_figures_for_open_runs_only():
    now = T0 + 7200
    tally = Tally(now=now)
    tally.add_run(Run("R1", "in_progress", T0))
    documents = [
        agent_task(T0, "in_progress", task_id="a", last_status_change=T0 + 600),
        agent_task(T0, "processing", task_id="b", last_status_change=T0 + 300),
        agent_task(T0, "in_progress", task_id="c", last_status_change=None),
        agent_task(T0, "scheduled", task_id="d", scheduled_timestamp=now - 1),
        agent_task(T0, "scheduled", task_id="e", scheduled_timestamp=now + 60),
        agent_task(T0, "scheduled", task_id="f", scheduled_timestamp=None),
        agent_task(T0, "pending", task_id="g", retry_attempt=2),
        agent_task(T0, "pending", task_id="g", retry_attempt=2),  # the same task twice
        agent_task(T0, "completed", task_id="h", retry_attempt=3),  # finished: not counted
        agent_task(T0, "pending", run_id="R9", task_id="i", retry_attempt=1),  # another run
        agent_task(T0, "in_progress", run_id=None, task_id="j", last_status_change=T0),
    ]
    for document in documents:
        tally.add_agent_task(document)
    snapshot = tally.snapshot(never_secret, complete=True, agents_read=True)
    assert snapshot.oldest_in_progress == T0 + 300
    assert snapshot.overdue_scheduled == 1
    assert snapshot.retried == 1


@pytest.mark.parametrize("agents_read, unassigned", [(False, False), (True, True)])
def test_agent_figures_are_absent_rather_than_guessed(agents_read, unassigned):
    tally = Tally(now=T0)
    tally.add_run(Run("R1", "pending", T0))
    tally.add_task(Task("a", "pending", T0, None if unassigned else "ag"))
    snapshot = tally.snapshot(never_secret, complete=True, agents_read=agents_read)
    assert (snapshot.oldest_in_progress, snapshot.overdue_scheduled, snapshot.retried) == (
        None, None, None)
    assert snapshot.oldest_pending == T0  # from the run's own tasks: still known


def test_statuses_follow_the_token_rule_and_the_cap():
    tally = Tally(now=T0)
    for i in range(40):
        tally.add_task(Task(f"t{i}", f"s{i:02d}", T0, "ag"))
    tally.add_task(Task("tok", "SP_SECRET_token", T0, "ag"))
    snapshot = tally.snapshot(lambda name: name.casefold() == "sp_secret_token",
                              complete=True, agents_read=True)
    names = [name for name, _ in snapshot.tasks]
    assert len(names) == MAX_STATUSES and "SP_SECRET_token" not in names
    assert snapshot.ignored_statuses == 40 - (MAX_STATUSES - len(TASK_STATUSES))


def test_the_scan_stretches_to_what_the_analytics_leave():
    assert scan_interval(600, 100, 3, None, None) == 600  # no cap
    assert scan_interval(600, 10, 3, 100, 10_000) == 600  # 4,320 a day fit in 10,000
    # 100 spaces at 3 requests every 10 minutes: 43,200 a day against 5,000 to spare
    assert scan_interval(600, 100, 3, 100, 5_000) == pytest.approx(600 * 43_200 / 5_000)
    assert scan_interval(600, 100, 3, 0.5, None) == pytest.approx(600 * 30 / 0.5)
    assert scan_interval(600, 100, 3, 100, 0) == LONGEST_STRETCH  # nothing left
    assert scan_interval(600, 10_000, 50, 1, 1) == LONGEST_STRETCH  # a scan a day at most
    assert scan_interval(600, 0, 3, 0, 0) == 600


def test_the_cost_estimate_follows_the_scans():
    assert mean_requests(None, 7) == 7
    assert mean_requests(7, 2) == pytest.approx(6)


def test_state_keeps_the_last_snapshot_until_it_is_stale():
    tally = Tally(now=T0)
    snapshot = tally.snapshot(never_secret, complete=True, agents_read=True)
    state = succeeded(BacklogState(), snapshot, T0, requests=3)
    state = failed(state, "timeout", requests=3)
    assert state.last_error == "timeout" and sum(state.errors.values()) == 1
    limit = stale_after(600, 300)
    assert visible(state, T0 + limit, limit) is snapshot
    assert visible(state, T0 + limit + 1, limit) is None
    assert visible(BacklogState(), T0, limit) is None
