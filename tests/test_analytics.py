"""Strict parsing of the analytics object."""

from __future__ import annotations

import math

import pytest

from exporter.analytics import MAX_STATUSES, InvalidAnalytics, parse_analytics
from tests.fakeapi import analytics


def test_documented_shape():
    a = parse_analytics(analytics(calls=1250, completed=1100, failed=150, avg=45.3, tasks=500))
    assert (a.total_calls, a.completed_calls, a.failed_calls, a.total_tasks) == (1250, 1100, 150,
                                                                                  500)
    assert a.avg_duration_seconds == 45.3
    assert a.success_ratio == pytest.approx(0.88)
    assert dict(a.task_status) == {"pending": 5, "running": 3, "completed": 35, "failed": 7}
    assert a.finished_tasks == 42


def test_whole_floats_are_counts_and_ratio_is_capped():
    a = parse_analytics(analytics(calls=10.0, completed=12, failed=0))
    assert a.total_calls == 10 and a.success_ratio == 1.0
    assert parse_analytics(analytics(calls=0, completed=0, failed=0)).success_ratio is None


def test_unknown_statuses_pass_through_and_documented_are_filled():
    a = parse_analytics(analytics(breakdown={"in_progress": 3, "scheduled": 2, "hold": 1}))
    assert a.task_status == (("pending", 0), ("running", 0), ("completed", 0), ("failed", 0),
                             ("hold", 1), ("in_progress", 3), ("scheduled", 2))


def test_bad_status_names_are_ignored_and_the_count_is_capped():
    breakdown = {f"s{i:02d}": i for i in range(40)}
    breakdown["bad key!"] = 1
    breakdown["x" * 65] = 1
    a = parse_analytics(analytics(breakdown=breakdown))
    assert len(a.task_status) == MAX_STATUSES
    assert "bad key!" in a.ignored_statuses and "x" * 65 in a.ignored_statuses
    assert len(a.ignored_statuses) == 2 + 40 - (MAX_STATUSES - 4)


@pytest.mark.parametrize("field, bad", [
    ("total_calls", -1), ("total_calls", "12"), ("total_calls", True), ("total_calls", None),
    ("total_calls", 1.5), ("total_calls", math.nan), ("total_calls", math.inf),
    ("avg_duration_seconds", -0.1), ("avg_duration_seconds", math.nan),
    ("avg_duration_seconds", "45"), ("total_tasks", []),
])
def test_impossible_values_reject_the_whole_snapshot(field, bad):
    data = analytics()
    data[field] = bad
    with pytest.raises(InvalidAnalytics, match=field):
        parse_analytics(data)


def test_bad_breakdown_value_and_older_shape():
    with pytest.raises(InvalidAnalytics, match="task_status_breakdown.pending"):
        parse_analytics(analytics(breakdown={"pending": -2}))
    with pytest.raises(InvalidAnalytics, match="undocumented shape"):
        parse_analytics({"call_analytics": {}, "call_status": {}})
    with pytest.raises(InvalidAnalytics, match="expected object"):
        parse_analytics([1])
