"""The backlog scan's policy: which runs are open, when a list is read to its end, what the
per-scan cap allows, how tasks fold into the figures, and how often a space is scanned within
what the analytics polls leave of the request budget. No I/O here: ``scan.py`` makes the
requests, this module decides what they mean.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.analytics import named_counts
from exporter.backlog.parse import AgentTask, Page, Run, Task
from exporter.backlog.snapshot import BacklogSnapshot

# Run statuses seen on the platform; the last three are terminal (unpod-api.md).
TERMINAL_RUN_STATUSES = frozenset({"completed", "failed", "partially_completed"})
FINISHED_TASK_STATUSES = frozenset({"completed", "failed", "partially_completed"})
IN_PROGRESS_STATUSES = frozenset({"in_progress", "processing"})
# Exported at 0 when absent, so that a dashboard shows "none pending", not "no data".
TASK_STATUSES = ("pending", "in_progress", "processing", "scheduled", "hold", "completed",
                 "failed", "partially_completed")
FIRST_ESTIMATE = 3.0  # requests per scan before any was measured: runs, tasks, agent tasks
MEAN_WEIGHT = 0.2  # of the newest scan in the running mean of requests per scan
LONGEST_STRETCH = 86_400.0  # seconds: with no budget to spare, a scan a day at most


def is_open(run: Run) -> bool:
    return run.status not in TERMINAL_RUN_STATUSES


def read_to_end(page: Page[Any], number: int, page_size: int) -> bool:
    """Whether page ``number`` (1-based) was the last: by ``count`` when the answer gives it,
    else a short page (the platform answers ``data: []`` past the end)."""
    if page.count is not None:
        return number * page_size >= page.count
    return len(page.items) + page.skipped < page_size


def reached_older(page: Page[AgentTask], oldest: float | None) -> bool:
    """Agent tasks come newest ``created`` first, across the agent's whole history: once a
    task is older than the oldest open run of this agent, nothing further can be open.
    Without that time (unreadable) the list is read to its end."""
    return oldest is not None and any(
        task.created is not None and task.created < oldest for task in page.items)


class Allowance:
    """The per-scan request cap: every request from the runs list's first page on, retries
    included, takes one; ``cut`` says that the cap refused one."""

    def __init__(self, cap: int) -> None:
        self.left = cap
        self.cut = False

    def take(self) -> bool:
        if self.left <= 0:
            self.cut = True
            return False
        self.left -= 1
        return True


@dataclass(frozen=True)
class _AgentFigures:
    oldest_in_progress: float | None
    overdue_scheduled: int
    retried: int


class Tally:
    """The figures of one scan, folded in as pages arrive. Keeps counts, a few times and
    identifiers (run ids, agent handles, task ids), never a task document."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.open_run_ids: set[str] = set()
        self.statuses: Counter[str] = Counter()
        self.oldest_pending: float | None = None
        self.agents: dict[str, float | None] = {}  # handle -> its oldest open task's created
        self.unassigned = False  # an unfinished task that no agent list can show
        self._seen_tasks: set[str] = set()
        self._seen_agent_tasks: set[str] = set()
        self._in_progress_since: float | None = None
        self._overdue = 0
        self._retried = 0

    def add_run(self, run: Run) -> bool:
        """Count an open run once (a list read while it grows can repeat one); True if new."""
        if not is_open(run) or run.run_id in self.open_run_ids:
            return False
        self.open_run_ids.add(run.run_id)
        return True

    def add_task(self, task: Task) -> None:
        if task.task_id is not None:
            if task.task_id in self._seen_tasks:
                return
            self._seen_tasks.add(task.task_id)
        self.statuses[task.status] += 1
        if task.status == "pending" and task.created is not None:
            self.oldest_pending = _earliest(self.oldest_pending, task.created)
        if task.status in FINISHED_TASK_STATUSES:
            return
        if task.assignee is None:
            self.unassigned = True
            return
        if task.assignee not in self.agents:
            self.agents[task.assignee] = task.created
        elif (known := self.agents[task.assignee]) is not None:
            # an unreadable time (None) stays None: that agent's list is read to its end
            self.agents[task.assignee] = None if task.created is None else min(known,
                                                                               task.created)

    def add_agent_task(self, task: AgentTask) -> None:
        """A raw document of an agent's list: only unfinished tasks of this scan's open runs
        count, each once."""
        if task.run_id not in self.open_run_ids or task.status in FINISHED_TASK_STATUSES:
            return
        if task.task_id is not None:
            if task.task_id in self._seen_agent_tasks:
                return
            self._seen_agent_tasks.add(task.task_id)
        if task.status in IN_PROGRESS_STATUSES and task.last_status_change is not None:
            self._in_progress_since = _earliest(self._in_progress_since,
                                                task.last_status_change)
        if (task.status == "scheduled" and task.scheduled_timestamp is not None
                and task.scheduled_timestamp < self.now):
            self._overdue += 1
        if task.retry_attempt is not None and task.retry_attempt > 0:
            self._retried += 1

    def snapshot(self, is_secret: Callable[[str], bool], *, complete: bool,
                 agents_read: bool) -> BacklogSnapshot:
        """The figures. Those from agent documents only when every agent list they need was
        read (``agents_read``) and every unfinished task named its agent: never a guess."""
        statuses, ignored = named_counts(
            {name: count for name, count in self.statuses.items() if not is_secret(name)},
            "tasks", TASK_STATUSES, fill=True)
        agents = None
        if agents_read and not self.unassigned:
            agents = _AgentFigures(self._in_progress_since, self._overdue, self._retried)
        return BacklogSnapshot(
            open_runs=len(self.open_run_ids), tasks=statuses,
            oldest_pending=self.oldest_pending,
            oldest_in_progress=agents.oldest_in_progress if agents else None,
            overdue_scheduled=agents.overdue_scheduled if agents else None,
            retried=agents.retried if agents else None,
            complete=complete, ignored_statuses=len(ignored))


def _earliest(known: float | None, when: float) -> float:
    return when if known is None else min(known, when)


# --- how often ------------------------------------------------------------------------------

def mean_requests(mean: float | None, requests: int) -> float:
    """Running mean of the requests a scan costs (the estimate the stretch plans with)."""
    if mean is None:
        return float(requests)
    return mean + MEAN_WEIGHT * (requests - mean)


def scan_interval(interval: float, spaces: int, per_scan: float,
                  spare_per_minute: float | None, spare_per_day: float | None) -> float:
    """The effective scan interval: ``interval`` while the spare budget (what the analytics
    polls leave; None: no cap) pays for every space's scans, else stretched until it does,
    up to a scan a day. The analytics intervals are never stretched for a scan."""
    if spaces == 0:
        return interval
    demand_per_minute = spaces * per_scan * 60.0 / interval
    factor = 1.0
    for spare, demand in ((spare_per_minute, demand_per_minute),
                          (spare_per_day, demand_per_minute * 1440.0)):
        if spare is None:
            continue
        if spare <= 0:
            return max(interval, LONGEST_STRETCH)
        factor = max(factor, demand / spare)
    return min(max(interval, LONGEST_STRETCH), interval * factor)


def stale_after(interval: float, max_staleness: float) -> float:
    """Backlog series are withdrawn once the last successful scan is older than this."""
    return interval + max_staleness
