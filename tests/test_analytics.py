"""Strict parsing of the analytics object."""

from __future__ import annotations

import math

import pytest

from exporter.analytics import (
    MAX_STATUSES,
    Analytics,
    InvalidAnalytics,
    NoAnalytics,
    parse_analytics,
)
from tests.fakeapi import analytics, platform_analytics


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
    assert "bad key!" in a.ignored_keys and "x" * 65 in a.ignored_keys
    assert len(a.ignored_keys) == 2 + 40 - (MAX_STATUSES - 4)


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


def test_bad_breakdown_value_and_unknown_shape():
    with pytest.raises(InvalidAnalytics, match="task_status_breakdown.pending"):
        parse_analytics(analytics(breakdown={"pending": -2}))
    with pytest.raises(InvalidAnalytics, match="neither published nor platform"):
        parse_analytics({"call_analytics": {}})  # half of the platform shape
    with pytest.raises(InvalidAnalytics, match="expected object"):
        parse_analytics([1])


# --- the platform's own shape (unpod-api.md; the platform source's fetch_space_analytics) ---

def test_platform_shape_maps_as_the_spec_says():
    a = parse_analytics(platform_analytics())  # the example body of unpod-api.md
    assert isinstance(a, Analytics) and a.shape == "platform"
    assert (a.total_calls, a.failed_calls, a.total_tasks) == (419, 200, 419)
    assert dict(a.call_outcomes) == {"interested": 77, "call_back": 13, "send_details": 1,
                                     "not_interested": 20, "not_connected": 35, "failed": 200}
    assert a.task_status == (("completed", 302), ("failed", 109), ("pending", 2),
                             ("in_progress", 1))
    # figures the shape lacks are absent, never invented
    assert a.completed_calls is None and a.avg_duration_seconds is None
    assert a.success_ratio is None
    # success_rate (72.08, a percentage of tasks) never becomes a ratio; ours is 0..1
    assert a.task_success_ratio == pytest.approx(302 / 419)
    assert a.finished_tasks == 411


def test_platform_extra_outcomes_pass_through_and_misnamed_keys_do_not():
    a = parse_analytics(platform_analytics(voicemail=4))
    outcomes = dict(a.call_outcomes)
    assert outcomes["voicemail"] == 4
    assert "avg_success_score" not in outcomes and "total_calls" not in outcomes
    assert "success_rate" not in dict(a.task_status) and "total_tasks" not in dict(a.task_status)


def test_platform_empty_facets_export_nothing_invented():
    # The source's aggregation with no runs: empty call_analytics, a success_rate of 0.
    a = parse_analytics({"call_analytics": {}, "call_status": {"success_rate": 0}})
    assert isinstance(a, Analytics)
    assert (a.total_calls, a.failed_calls, a.total_tasks) == (None, None, None)
    assert a.task_status == () and a.call_outcomes == ()
    assert a.task_success_ratio is None and a.finished_tasks is None


@pytest.mark.parametrize("body, key", [
    (platform_analytics(calls=-1), "call_analytics.total_calls"),
    (platform_analytics(interested=1.5), "call_analytics.interested"),
    (platform_analytics(avg_success_score=math.inf), "avg_success_score"),
    ({"call_analytics": {}, "call_status": {"success_rate": "72%"}}, "success_rate"),
    ({"call_analytics": [], "call_status": {}}, "call_analytics"),
    (platform_analytics(tasks=2**53 + 2), "call_status.total_tasks"),
])
def test_platform_impossible_values_reject_the_whole_snapshot(body, key):
    with pytest.raises(InvalidAnalytics, match=key.replace(".", r"\.")):
        parse_analytics(body)


def test_task_success_ratio_is_capped_and_absent_without_tasks():
    assert parse_analytics(analytics(tasks=10, breakdown={"completed": 12})
                           ).task_success_ratio == 1.0
    assert parse_analytics(analytics(tasks=0)).task_success_ratio is None
    assert parse_analytics(analytics(tasks=4, breakdown={"completed": 1})
                           ).task_success_ratio == 0.25


def test_data_null_is_a_failure_not_zeros():
    with pytest.raises(NoAnalytics):
        parse_analytics(None)


def test_a_space_without_runs_is_the_platform_shape_with_no_figures():
    # unpod-api.md: MongoDB's $facet always returns one document, so empty figures
    empty = parse_analytics({"call_analytics": {}, "call_status": {"success_rate": 0}})
    assert empty.shape == "platform" and empty.empty
    assert empty.total_calls is None and empty.total_tasks is None
    assert empty.task_status == () and empty.call_outcomes == ()
    assert empty.success_ratio is None and empty.task_success_ratio is None
    assert not parse_analytics({"call_analytics": {"total_calls": 0},
                                "call_status": {"success_rate": 0}}).empty


def test_counts_above_2_to_the_53_are_invalid():
    with pytest.raises(InvalidAnalytics, match="2\\*\\*53"):
        parse_analytics(analytics(calls=10**400))
    with pytest.raises(InvalidAnalytics, match="avg_duration_seconds"):
        parse_analytics(analytics(avg=10**400))


def test_snapshots_share_one_names_tuple_and_keep_their_own_counts():
    # every answer of a shape names the same statuses: one names tuple for all snapshots
    first = parse_analytics(analytics(breakdown={"pending": 1, "completed": 2}))
    second = parse_analytics(analytics(breakdown={"pending": 3, "failed": 4}))
    assert first.status_names is second.status_names
    assert first.status_counts == (1, 0, 2, 0) and second.status_counts == (3, 0, 0, 4)
    assert second.task_status == (("pending", 3), ("running", 0), ("completed", 0),
                                  ("failed", 4))
    one, other = parse_analytics(platform_analytics()), parse_analytics(platform_analytics(
        interested=1))
    assert one.outcome_names is other.outcome_names and one.status_names is other.status_names
    assert dict(other.call_outcomes)["interested"] == 1


def test_the_shared_names_are_bounded():
    from exporter.analytics import _SHARED_NAMES, MAX_SHARED_NAMES
    for i in range(MAX_SHARED_NAMES + 10):
        parse_analytics(analytics(breakdown={f"status{i}": 1}))
        assert len(_SHARED_NAMES) <= MAX_SHARED_NAMES
    # a full table starts again: the names in use are shared again from their next answer
    assert parse_analytics(analytics()).status_names is parse_analytics(
        analytics()).status_names


def test_without_keeps_the_snapshot_when_nothing_is_secret_and_drops_secret_names():
    from exporter.analytics import without
    a = parse_analytics(analytics(breakdown={"pending": 1, "tok-1": 5, "Bad Name": 2}))
    assert without(a, lambda name: False) is a
    cleaned = without(a, lambda name: name.casefold() in {"tok-1", "bad name"})
    assert cleaned.task_status == (("pending", 1), ("running", 0), ("completed", 0),
                                   ("failed", 0))
    assert cleaned.ignored_keys == () and cleaned.status_counts == (1, 0, 0, 0)
    assert (cleaned.total_calls, cleaned.shape) == (a.total_calls, a.shape)
