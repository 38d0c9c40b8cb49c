"""What an answer of the runs and tasks endpoints means: pages of small frozen records.

Task documents carry personal data (``input`` with names, numbers and e-mails, ``user_info``,
transcripts, recordings, summaries). A record keeps only the fields a figure needs, and no
error message here ever quotes a value from a task: only key names and types. The rest of the
document is dropped with the decoded JSON as soon as the page is parsed.

Times are ISO 8601 with or without an offset (none means UTC, as the platform writes them) or
epoch seconds; a time that cannot be read becomes ``None`` and leaves that one task out of the
figure that needs it, never the page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from exporter.analytics import MAX_COUNT

T = TypeVar("T")
MAX_BODY_BYTES = 8 * 1024 * 1024  # after decompression: a page of tasks with transcripts
# Identifiers that go into a request path (run ids, agent handles): nothing that could
# change the path or the query.
_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_NUMBER_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
_MAX_EPOCH = 32_503_680_000.0  # year 3000: a later "time" is garbage, not a schedule
_MAX_TIME_TEXT = 64
_MAX_STATUS_TEXT = 128  # longer status texts are not kept at all (the name rule drops them)


class InvalidPage(ValueError):
    """The answer is not a page of the expected kind."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    count: int | None  # the total over every page, when the answer says
    skipped: int = 0  # items that were not objects or lacked what every record needs


@dataclass(frozen=True)
class Run:
    run_id: str
    status: str
    created: float | None


@dataclass(frozen=True)
class Task:
    """A task as the run-tasks endpoint lists it (stripped of the status-change fields)."""

    task_id: str | None
    status: str
    created: float | None
    assignee: str | None  # the agent handle, when it can go into a request path


@dataclass(frozen=True)
class AgentTask:
    """A raw task document of the agent-tasks endpoint, reduced to what the figures need."""

    task_id: str | None
    run_id: str | None
    status: str
    created: float | None
    last_status_change: float | None
    scheduled_timestamp: float | None
    retry_attempt: int | None  # None when absent or not a count


def parse_time(value: object) -> float | None:
    """Unix time from ISO 8601 (no offset: UTC) or epoch seconds; None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # a JSON integer too large for a float
            return None
        return seconds if math.isfinite(seconds) and 0 <= seconds <= _MAX_EPOCH else None
    if not isinstance(value, str) or len(value) > _MAX_TIME_TEXT:
        return None
    text = value.strip()
    if _NUMBER_RE.fullmatch(text):
        return parse_time(float(text))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        seconds = when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return seconds if 0 <= seconds <= _MAX_EPOCH else None


def _identifier(value: object) -> str | None:
    return value if isinstance(value, str) and _ID_RE.fullmatch(value) else None


def _status(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= _MAX_STATUS_TEXT:
        return value
    return None


def _retry_attempt(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if 0 <= value <= MAX_COUNT else None


def _count(body: Mapping[str, object]) -> int | None:
    count = body.get("count")
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
        raise InvalidPage(f"count is {type(count).__name__}, expected a non-negative integer")
    return count


def _page(body: object, what: str,
          record: Callable[[Mapping[str, object]], T | None]) -> Page[T]:
    """The envelope's ``data`` list as records; an item that is not an object or lacks what
    every record needs is skipped (and counted), never the whole page."""
    if not isinstance(body, dict):
        raise InvalidPage(f"{what} answer is {type(body).__name__}, expected object")
    data = body.get("data")
    if not isinstance(data, list):
        raise InvalidPage(f"{what} data is {type(data).__name__}, expected a list")
    items: list[T] = []
    skipped = 0
    for item in data:
        parsed = record(item) if isinstance(item, dict) else None
        if parsed is None:
            skipped += 1
        else:
            items.append(parsed)
    return Page(tuple(items), _count(body), skipped)


def _run(item: Mapping[str, object]) -> Run | None:
    run_id, status = _identifier(item.get("run_id")), _status(item.get("status"))
    if run_id is None or status is None:
        return None
    return Run(run_id, status, parse_time(item.get("created")))


def _task(item: Mapping[str, object]) -> Task | None:
    status = _status(item.get("status"))
    if status is None:
        return None
    return Task(_identifier(item.get("task_id")), status, parse_time(item.get("created")),
                _identifier(item.get("assignee")))


def _agent_task(item: Mapping[str, object]) -> AgentTask | None:
    status = _status(item.get("status"))
    if status is None:
        return None
    return AgentTask(
        task_id=_identifier(item.get("task_id")), run_id=_identifier(item.get("run_id")),
        status=status, created=parse_time(item.get("created")),
        last_status_change=parse_time(item.get("last_status_change")),
        scheduled_timestamp=parse_time(item.get("scheduled_timestamp")),
        retry_attempt=_retry_attempt(item.get("retry_attempt")),
    )


def parse_runs(body: object) -> Page[Run]:
    return _page(body, "runs", _run)


def parse_tasks(body: object) -> Page[Task]:
    return _page(body, "tasks", _task)


def parse_agent_tasks(body: object) -> Page[AgentTask]:
    return _page(body, "agent tasks", _agent_task)
