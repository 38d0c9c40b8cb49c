"""The backlog's metric families and a space's samples from its state. Rendered with the
space's other series by the collector and the cached exposition (labels ``org`` and ``space``;
there is no org-wide backlog)."""

from __future__ import annotations

from exporter.backlog.snapshot import BacklogState, visible

# (name, type, help), in exposition order; counters without their suffix.
BACKLOG_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("unpod_backlog_open_runs", "gauge",
     "Runs of the space whose status is not terminal, as the backlog scan saw them."),
    ("unpod_backlog_tasks", "gauge", "Tasks of the open runs by task status."),
    ("unpod_backlog_oldest_pending_timestamp_seconds", "gauge",
     "Creation time of the oldest pending task of the open runs; absent when none."),
    ("unpod_backlog_oldest_in_progress_timestamp_seconds", "gauge",
     "When the longest-running in_progress or processing task entered that status; absent "
     "when none or unknown."),
    ("unpod_backlog_overdue_scheduled_tasks", "gauge",
     "Scheduled tasks of the open runs whose scheduled time has passed; absent when unknown."),
    ("unpod_backlog_retried_tasks", "gauge",
     "Unfinished tasks of the open runs with retry_attempt above 0; absent when unknown."),
    ("unpod_backlog_scan_complete", "gauge",
     "1 when the last scan read everything it needs, 0 when the per-scan cap cut it short."),
    ("unpod_backlog_scan_last_success_timestamp_seconds", "gauge",
     "Unix time of the last successful backlog scan of the space."),
    ("unpod_backlog_scan_errors", "counter", "Failed backlog scans of the space by reason."),
)

def describe(state: BacklogState | None, now: float, stale_after: float) -> str:
    """The landing page's word on a space's backlog: what waits, and since when."""
    if state is None:
        return ""
    snapshot = visible(state, now, stale_after)
    if snapshot is None:
        return f"scan failed: {state.last_error}" if state.last_error else "not scanned yet"
    pending = dict(snapshot.tasks).get("pending", 0)
    text = f"{snapshot.open_runs} open runs, {pending} pending"
    if snapshot.oldest_pending is not None:
        text += f", oldest {(now - snapshot.oldest_pending) / 60:.0f} min old"
    if snapshot.oldest_in_progress is not None:
        text += f", one in progress for {(now - snapshot.oldest_in_progress) / 60:.0f} min"
    if not snapshot.complete:
        text += " (scan cut short by its cap)"
    if state.last_error:
        text += f"; last scan failed: {state.last_error}"
    return text


# family, an extra label (name, value) or None, and the value (the collector's TargetSample)
Sample = tuple[str, tuple[str, str] | None, float]


def backlog_samples(state: BacklogState | None, now: float, stale_after: float) -> list[Sample]:
    """A space's backlog series: the figures while the last success is fresh (a figure the
    scan could not establish is absent, never 0), then the scan's own health."""
    if state is None:
        return []
    samples: list[Sample] = []
    snapshot = visible(state, now, stale_after)
    if snapshot is not None:
        samples.append(("unpod_backlog_open_runs", None, snapshot.open_runs))
        samples.extend(("unpod_backlog_tasks", ("status", status), count)
                       for status, count in snapshot.tasks)
        figures: tuple[tuple[str, float | None], ...] = (
            ("unpod_backlog_oldest_pending_timestamp_seconds", snapshot.oldest_pending),
            ("unpod_backlog_oldest_in_progress_timestamp_seconds", snapshot.oldest_in_progress),
            ("unpod_backlog_overdue_scheduled_tasks", snapshot.overdue_scheduled),
            ("unpod_backlog_retried_tasks", snapshot.retried),
        )
        samples.extend((name, None, value) for name, value in figures if value is not None)
        samples.append(("unpod_backlog_scan_complete", None, 1.0 if snapshot.complete else 0.0))
        assert state.last_success is not None  # visible() returned a snapshot
        samples.append(("unpod_backlog_scan_last_success_timestamp_seconds", None,
                        state.last_success))
    samples.extend(("unpod_backlog_scan_errors", ("reason", reason), count)
                   for reason, count in state.errors.pairs())
    return samples
