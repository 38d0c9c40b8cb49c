"""The analytics snapshot of one target, and its strict parsing from an API body.

Unpod answers the analytics route in two shapes (unpod-api.md): the *published* one
(``total_calls``, ``completed_calls``, ..., ``task_status_breakdown``) and the *platform* one
(``call_analytics`` outcomes + ``call_status`` task counts). Both map onto one snapshot; a
figure a shape lacks stays ``None`` and is never exported, never invented.

A body that is not one of the shapes with sane values is rejected whole: a partly trusted
snapshot would put wrong numbers on a dashboard, which is worse than a gap.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

DOCUMENTED_STATUSES = ("pending", "running", "completed", "failed")
PLATFORM_STATUSES = ("completed", "failed", "pending", "in_progress")
MAX_STATUSES = 32
MAX_COUNT = 2**53  # above this a float cannot hold the count exactly: an absurd answer
_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_COUNT_FIELDS = ("total_calls", "completed_calls", "failed_calls", "total_tasks")
# call_analytics keys that are not call outcomes: the total, and a misnamed *sum* of scores
_NOT_OUTCOMES = frozenset({"total_calls", "avg_success_score"})
# call_status keys that are not task statuses: the total, and a *percentage* of tasks
_NOT_STATUSES = frozenset({"total_tasks", "success_rate"})

Shape = Literal["published", "platform"]


class InvalidAnalytics(ValueError):
    """The body does not have a known shape or carries impossible values."""


class NoAnalytics(ValueError):
    """``data: null`` on HTTP 200: the platform's analytics store failed (a MongoDB error or
    its 10-second query limit; unpod-api.md). A failed poll (reason ``no_data``), never zeros:
    a space without runs answers empty figures instead."""


@dataclass(frozen=True, slots=True)
class Analytics:
    """Named counts are kept as a tuple of names and a tuple of counts, not as pairs: every
    answer of a shape names the same statuses, so the names tuple is one shared object
    (``shared_names``) and each snapshot keeps only its counts (the pairs were 4 tuples of
    56 bytes per snapshot, 10.7 MiB at 50,000 targets)."""

    shape: Shape
    total_calls: int | None
    completed_calls: int | None
    failed_calls: int | None
    avg_duration_seconds: float | None
    total_tasks: int | None
    status_names: tuple[str, ...]  # documented statuses first, then others sorted
    status_counts: tuple[int, ...]  # by position in status_names
    outcome_names: tuple[str, ...] = ()  # platform shape only
    outcome_counts: tuple[int, ...] = ()
    ignored_keys: tuple[str, ...] = ()  # statuses/outcomes dropped by the name rule or the cap

    @property
    def task_status(self) -> tuple[tuple[str, int], ...]:
        """(status, count) pairs, in order."""
        return tuple(zip(self.status_names, self.status_counts, strict=True))

    @property
    def call_outcomes(self) -> tuple[tuple[str, int], ...]:
        """(outcome, count) pairs, in order (platform shape only)."""
        return tuple(zip(self.outcome_names, self.outcome_counts, strict=True))

    def status(self, name: str) -> int | None:
        """The count of one task status; None when the answer did not name it."""
        names = self.status_names
        return self.status_counts[names.index(name)] if name in names else None

    @property
    def empty(self) -> bool:
        """No figure at all: a space without runs (``call_analytics: {}``)."""
        return not self.status_names and not self.outcome_names and all(
            getattr(self, name) is None for name in (*_COUNT_FIELDS, "avg_duration_seconds"))

    @property
    def success_ratio(self) -> float | None:
        """Completed calls over total calls, 0..1; None when a figure is missing or 0."""
        return _ratio(self.completed_calls, self.total_calls)

    @property
    def task_success_ratio(self) -> float | None:
        """Completed tasks over total tasks, 0..1; None when a figure is missing or 0."""
        return _ratio(self.status("completed"), self.total_tasks)

    @property
    def finished_tasks(self) -> int | None:
        """completed + failed tasks; None when the answer carries neither."""
        completed, failed = self.status("completed"), self.status("failed")
        if completed is None and failed is None:
            return None
        return (completed or 0) + (failed or 0)


# Names tuples in use, each kept once: the same few sets of names come in every answer. Bounded
# so that an upstream naming ever new statuses cannot grow it: when full it starts again, and
# the names in use come back at their next answer (snapshots keep the tuples they have).
_SHARED_NAMES: dict[tuple[str, ...], tuple[str, ...]] = {}
MAX_SHARED_NAMES = 256


def shared_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The one kept tuple equal to ``names`` (``names`` itself when new)."""
    kept = _SHARED_NAMES.get(names)
    if kept is not None:
        return kept
    if len(_SHARED_NAMES) >= MAX_SHARED_NAMES:
        _SHARED_NAMES.clear()
    _SHARED_NAMES[names] = names
    return names


def _ratio(part: int | None, whole: int | None) -> float | None:
    if part is None or not whole:
        return None
    return min(1.0, part / whole)


def _count(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidAnalytics(f"{key} is {type(value).__name__}, expected a count")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise InvalidAnalytics(f"{key} is {value!r}, expected a whole number")
    if value < 0:
        raise InvalidAnalytics(f"{key} is negative ({value!r})")
    if value > MAX_COUNT:
        raise InvalidAnalytics(f"{key} is larger than 2**53, not a plausible count")
    return int(value)


def _seconds(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidAnalytics(f"{key} is {type(value).__name__}, expected a number")
    if isinstance(value, int) and value > MAX_COUNT:
        raise InvalidAnalytics(f"{key} is larger than 2**53, not a plausible duration")
    if not math.isfinite(value) or value < 0:
        raise InvalidAnalytics(f"{key} is {value!r}, expected a non-negative number")
    return float(value)


def _object(value: object, key: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise InvalidAnalytics(f"{key} is {type(value).__name__}, expected object")
    return value


def _named_counts(raw: Mapping[str, object], key: str, first: tuple[str, ...],
                  skip: frozenset[str] = frozenset(), fill: bool = False,
                  ) -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
    """Counts by name: ``first`` in that order (0 when absent if ``fill``), then the other
    valid names sorted, at most MAX_STATUSES in all; the dropped names are returned apart.
    (Pairs, for the backlog scan; a snapshot keeps them apart: ``_split``.)"""
    counts: dict[str, int] = {name: 0 for name in first} if fill else {}
    ignored: list[str] = []
    for name, value in raw.items():
        if name in skip:
            continue
        if not _KEY_RE.fullmatch(name):
            ignored.append(name)
            continue
        counts[name] = _count(value, f"{key}.{name}")
    leading = [name for name in first if name in counts]
    extra = sorted(name for name in counts if name not in first)
    room = MAX_STATUSES - len(leading)
    ordered = [*leading, *extra[:room]]
    # Interned: each answer's JSON keys are new strings, kept by every target's snapshot
    # (150,000 copies of a few names, 3.8 MiB, at 50,000 targets); the kept names only, at
    # most MAX_STATUSES, and mortal (gone with the last snapshot naming them).
    return (tuple((sys.intern(name), counts[name]) for name in ordered),
            tuple(ignored + extra[room:]))


# The name rule and the cap, shared with the backlog scan's task statuses.
named_counts = _named_counts


def _split(pairs: tuple[tuple[str, int], ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(names, counts) of pairs: the names shared (``shared_names``), the counts the
    snapshot's own."""
    return shared_names(tuple(name for name, _ in pairs)), tuple(count for _, count in pairs)


def _optional_count(raw: Mapping[str, object], name: str, key: str) -> int | None:
    return _count(raw[name], f"{key}.{name}") if name in raw else None


def _published(data: Mapping[str, object]) -> Analytics:
    missing = [k for k in (*_COUNT_FIELDS, "avg_duration_seconds", "task_status_breakdown")
               if k not in data]
    if missing:
        raise InvalidAnalytics(f"data lacks {', '.join(missing)} (neither published nor "
                               "platform shape)")
    total_calls, completed_calls, failed_calls, total_tasks = (
        _count(data[k], k) for k in _COUNT_FIELDS)
    breakdown = _object(data["task_status_breakdown"], "task_status_breakdown")
    statuses, ignored = _named_counts(breakdown, "task_status_breakdown", DOCUMENTED_STATUSES,
                                      fill=True)
    status_names, status_counts = _split(statuses)
    return Analytics(
        shape="published",
        avg_duration_seconds=_seconds(data["avg_duration_seconds"], "avg_duration_seconds"),
        total_calls=total_calls, completed_calls=completed_calls, failed_calls=failed_calls,
        total_tasks=total_tasks, status_names=status_names, status_counts=status_counts,
        ignored_keys=ignored,
    )


def _platform(data: Mapping[str, object]) -> Analytics:
    calls = _object(data["call_analytics"], "call_analytics")
    status = _object(data["call_status"], "call_status")
    outcomes, dropped_outcomes = _named_counts(calls, "call_analytics", (), _NOT_OUTCOMES)
    statuses, dropped_statuses = _named_counts(status, "call_status", PLATFORM_STATUSES,
                                               _NOT_STATUSES)
    if "avg_success_score" in calls:  # validated although not exported: a sane answer only
        _seconds(calls["avg_success_score"], "call_analytics.avg_success_score")
    if "success_rate" in status:
        _seconds(status["success_rate"], "call_status.success_rate")
    status_names, status_counts = _split(statuses)
    outcome_names, outcome_counts = _split(outcomes)
    return Analytics(
        shape="platform",
        total_calls=_optional_count(calls, "total_calls", "call_analytics"),
        completed_calls=None,  # the platform shape has no completed-calls count
        failed_calls=dict(outcomes).get("failed"),
        avg_duration_seconds=None,  # nor a duration
        total_tasks=_optional_count(status, "total_tasks", "call_status"),
        status_names=status_names, status_counts=status_counts,
        outcome_names=outcome_names, outcome_counts=outcome_counts,
        ignored_keys=dropped_outcomes + dropped_statuses,
    )


def parse_analytics(data: object) -> Analytics:
    """Build a snapshot from the body's ``data`` object, or raise InvalidAnalytics (or
    NoAnalytics for ``data: null``)."""
    if data is None:
        raise NoAnalytics("data is null")
    data = _object(data, "data")
    if "call_analytics" in data and "call_status" in data:
        return _platform(data)
    return _published(data)


def without(analytics: Analytics, is_secret: Callable[[str], bool]) -> Analytics:
    """The snapshot without statuses or outcomes named like a secret (a configured token
    echoed back by a hostile or broken upstream must never become a label or a log line).
    The snapshot itself when no name is a secret (the usual case: nothing copied)."""
    secret = {name for name in (*analytics.status_names, *analytics.outcome_names,
                                *analytics.ignored_keys) if is_secret(name)}
    if not secret:
        return analytics

    def keep(names: tuple[str, ...],
             counts: tuple[int, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
        return _split(tuple(pair for pair in zip(names, counts, strict=True)
                            if pair[0] not in secret))

    status_names, status_counts = keep(analytics.status_names, analytics.status_counts)
    outcome_names, outcome_counts = keep(analytics.outcome_names, analytics.outcome_counts)
    return replace(analytics, status_names=status_names, status_counts=status_counts,
                   outcome_names=outcome_names, outcome_counts=outcome_counts,
                   ignored_keys=tuple(k for k in analytics.ignored_keys if k not in secret))
