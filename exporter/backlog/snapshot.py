"""The backlog of one space as the last scan saw it: immutable, replaced whole by each scan,
so that a scrape never sees half of one."""

from __future__ import annotations

from dataclasses import dataclass, replace

from exporter.reasons import ErrorCounts

_NO_ERRORS = ErrorCounts()


@dataclass(frozen=True, slots=True)
class BacklogSnapshot:
    open_runs: int
    tasks: tuple[tuple[str, int], ...]  # by status: the known ones first, then others sorted
    oldest_pending: float | None  # Unix time: ``created`` of the oldest pending task
    oldest_in_progress: float | None  # ``last_status_change`` of the longest in progress
    overdue_scheduled: int | None  # None: the agent lists behind it were not all read
    retried: int | None
    complete: bool  # the per-scan cap cut nothing short
    ignored_statuses: int = 0  # dropped by the name rule or the cap


@dataclass(frozen=True, slots=True)
class BacklogState:
    """A space's scans: the last good snapshot, when it was taken, failures by reason."""

    snapshot: BacklogSnapshot | None = None
    last_success: float | None = None  # Unix time
    errors: ErrorCounts = _NO_ERRORS  # failed scans by reason
    last_error: str | None = None  # the reason of the last failed scan, None after a success
    requests: int = 0  # of the last scan, for the cost estimate


def _counted(errors: ErrorCounts, reason: str | None) -> ErrorCounts:
    return errors if reason is None else errors.added(reason)


def succeeded(state: BacklogState, snapshot: BacklogSnapshot, now: float, requests: int,
              agent_error: str | None = None) -> BacklogState:
    """A scan that saw its space; an agent list that failed (its figures left out) still
    counts as an error of that reason."""
    return replace(state, snapshot=snapshot, last_success=now, last_error=None,
                   requests=requests, errors=_counted(state.errors, agent_error))


def failed(state: BacklogState, reason: str, requests: int) -> BacklogState:
    """A failed scan keeps the last snapshot (withdrawn only when it grows stale)."""
    return replace(state, errors=_counted(state.errors, reason), last_error=reason,
                   requests=requests)


def visible(state: BacklogState, now: float, stale_after: float) -> BacklogSnapshot | None:
    """The snapshot to export, or None once the last successful scan is too old."""
    if state.snapshot is None or state.last_success is None:
        return None
    return state.snapshot if now - state.last_success <= stale_after else None
