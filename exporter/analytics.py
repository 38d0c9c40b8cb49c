"""The analytics snapshot of one target, and its strict parsing from an API body.

A body that is not exactly the documented shape with sane values is rejected whole: a partly
trusted snapshot would put wrong numbers on a dashboard, which is worse than a gap.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

DOCUMENTED_STATUSES = ("pending", "running", "completed", "failed")
MAX_STATUSES = 32
_STATUS_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_COUNT_FIELDS = ("total_calls", "completed_calls", "failed_calls", "total_tasks")


class InvalidAnalytics(ValueError):
    """The body does not have the documented shape or carries impossible values."""


@dataclass(frozen=True)
class Analytics:
    total_calls: int
    completed_calls: int
    failed_calls: int
    avg_duration_seconds: float
    total_tasks: int
    task_status: tuple[tuple[str, int], ...]  # documented statuses first, then others sorted
    ignored_statuses: tuple[str, ...] = ()  # keys dropped by the name rule or the cap

    @property
    def success_ratio(self) -> float | None:
        if self.total_calls == 0:
            return None
        return min(1.0, self.completed_calls / self.total_calls)

    @property
    def finished_tasks(self) -> int:
        statuses = dict(self.task_status)
        return statuses["completed"] + statuses["failed"]


def _count(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidAnalytics(f"{key} is {type(value).__name__}, expected a count")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise InvalidAnalytics(f"{key} is {value!r}, expected a whole number")
    if value < 0:
        raise InvalidAnalytics(f"{key} is negative ({value!r})")
    return int(value)


def _seconds(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidAnalytics(f"{key} is {type(value).__name__}, expected a number")
    if not math.isfinite(value) or value < 0:
        raise InvalidAnalytics(f"{key} is {value!r}, expected a non-negative number")
    return float(value)


def _statuses(raw: object) -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise InvalidAnalytics(f"task_status_breakdown is {type(raw).__name__}, expected object")
    counts = {status: 0 for status in DOCUMENTED_STATUSES}
    extra: list[str] = []
    ignored: list[str] = []
    for key, value in raw.items():
        if not _STATUS_KEY_RE.fullmatch(key):
            ignored.append(key)
            continue
        counts[key] = _count(value, f"task_status_breakdown.{key}")
        if key not in DOCUMENTED_STATUSES:
            extra.append(key)
    extra.sort()
    room = MAX_STATUSES - len(DOCUMENTED_STATUSES)
    kept, dropped = extra[:room], extra[room:]
    ordered = [*DOCUMENTED_STATUSES, *kept]
    return tuple((s, counts[s]) for s in ordered), tuple(ignored + dropped)


def parse_analytics(data: object) -> Analytics:
    """Build a snapshot from the body's ``data`` object, or raise InvalidAnalytics."""
    if not isinstance(data, dict):
        raise InvalidAnalytics(f"data is {type(data).__name__}, expected object")
    missing = [k for k in (*_COUNT_FIELDS, "avg_duration_seconds", "task_status_breakdown")
               if k not in data]
    if missing:
        raise InvalidAnalytics(f"data lacks {', '.join(missing)} (undocumented shape)")
    counts = {k: _count(data[k], k) for k in _COUNT_FIELDS}
    statuses, ignored = _statuses(data["task_status_breakdown"])
    return Analytics(
        avg_duration_seconds=_seconds(data["avg_duration_seconds"], "avg_duration_seconds"),
        task_status=statuses,
        ignored_statuses=ignored,
        **counts,
    )
