"""``--demo``: a simulated Unpod API in the same process, and a config pointing at it.

The numbers move like real campaigns: calls grow with some failures, tasks flow
pending -> running -> completed/failed, and one space has its tasks stuck in pending, so the
stuck-task alert has something to show. One organization answers in the published shape, the
other in the platform's own shape (call outcomes, ``call_status``), and one of its spaces has
no runs yet (empty figures, as the platform answers then), so a newcomer sees every successful
answer the real API gives. Another has a campaign that never starts: its run's tasks stay
pending, nothing finishes, so its analytics stay as empty and only the backlog scan
(``demo_backlog.py``) shows it. Nothing leaves the machine.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from aiohttp import web

from exporter.config import (
    ApiConfig,
    BacklogConfig,
    Config,
    OrgConfig,
    PollConfig,
    SpaceConfig,
    TokenSource,
)
from exporter.demo_backlog import DemoBacklog

DEMO_TOKEN = "demo-token"
OUTCOMES = ("interested", "call_back", "send_details", "not_interested", "not_connected",
            "failed")
OUTCOME_WEIGHTS = (20, 8, 3, 30, 39)  # of the connected calls, by outcome (not "failed")



@dataclass
class Campaign:
    """One simulated space; rates are per second."""

    space_token: str
    call_rate: float
    failure_share: float
    mean_duration: float
    task_rate: float
    stuck: bool = False
    idle: bool = False  # no runs yet: the platform answers empty figures
    never_started: bool = False  # a run whose tasks never start: nothing ever finishes
    calls: int = 0
    completed_calls: int = 0
    failed_calls: int = 0
    duration_sum: float = 0.0
    tasks: dict[str, int] = field(default_factory=lambda: {
        "pending": 0, "running": 0, "completed": 0, "failed": 0})
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def advance(self, rng: random.Random, seconds: float) -> None:
        if self.idle or self.never_started:
            return
        for _ in range(_arrivals(rng, self.call_rate * seconds)):
            self.calls += 1
            if rng.random() < self.failure_share:
                self.failed_calls += 1
                self.outcomes["failed"] += 1
            else:
                self.completed_calls += 1
                self.duration_sum += rng.expovariate(1 / self.mean_duration)
                self.outcomes[rng.choices(OUTCOMES[:-1], OUTCOME_WEIGHTS)[0]] += 1
        self.tasks["pending"] += _arrivals(rng, self.task_rate * seconds)
        if self.stuck:
            return
        started = min(self.tasks["pending"], _arrivals(rng, self.task_rate * 1.1 * seconds))
        self.tasks["pending"] -= started
        self.tasks["running"] += started
        finished = min(self.tasks["running"], _arrivals(rng, self.task_rate * seconds))
        failed = sum(rng.random() < self.failure_share for _ in range(finished))
        self.tasks["running"] -= finished
        self.tasks["completed"] += finished - failed
        self.tasks["failed"] += failed


def _arrivals(rng: random.Random, expected: float) -> int:
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


def _analytics(campaigns: list[Campaign]) -> dict[str, object]:
    completed = sum(c.completed_calls for c in campaigns)
    durations = sum(c.duration_sum for c in campaigns)
    breakdown: dict[str, int] = {}
    for campaign in campaigns:
        for status, count in campaign.tasks.items():
            breakdown[status] = breakdown.get(status, 0) + count
    return {
        "total_calls": sum(c.calls for c in campaigns),
        "completed_calls": completed,
        "failed_calls": sum(c.failed_calls for c in campaigns),
        "avg_duration_seconds": round(durations / completed, 1) if completed else 0.0,
        "total_tasks": sum(breakdown.values()),
        "task_status_breakdown": breakdown,
    }


def _platform_analytics(campaigns: list[Campaign]) -> dict[str, object]:
    """The platform's own shape, as its ``fetch_space_analytics`` sums runs: call outcomes,
    and task counts with ``in_progress`` for running and a success *percentage*; empty
    figures when there are no runs (its ``$facet`` still returns one document)."""
    # a run counts in the analytics only once one of its tasks finished
    if all(c.idle or c.never_started for c in campaigns):
        return {"call_analytics": {}, "call_status": {"success_rate": 0}}
    outcomes = {name: sum(c.outcomes[name] for c in campaigns) for name in OUTCOMES}
    tasks = {status: sum(c.tasks[status] for c in campaigns)
             for status in ("completed", "failed", "pending", "running")}
    total = sum(tasks.values())
    return {
        "call_analytics": {"total_calls": sum(c.calls for c in campaigns), **outcomes,
                           "avg_success_score": round(sum(c.completed_calls for c in campaigns)
                                                      * 0.42, 1)},
        "call_status": {"total_tasks": total, "completed": tasks["completed"],
                        "failed": tasks["failed"], "pending": tasks["pending"],
                        "in_progress": tasks["running"],
                        "success_rate": round(tasks["completed"] * 100 / total, 2)
                        if total else 0},
    }


PLATFORM_SHAPE_ORGS = frozenset({"globex-health"})


# org handle -> space name -> campaign
def _campaigns() -> dict[str, dict[str, Campaign]]:
    return {
        "acme-telecom": {
            "outbound-sales": Campaign("sp_demo_sales", 2.0, 0.12, 95, 0.8),
            "renewals": Campaign("sp_demo_renewals", 0.7, 0.05, 140, 0.3),
        },
        "globex-health": {
            "appointment-reminders": Campaign("sp_demo_reminders", 1.5, 0.2, 40, 1.0),
            "patient-survey": Campaign("sp_demo_survey", 0.2, 0.1, 180, 0.2, stuck=True),
            "vaccine-outreach": Campaign("sp_demo_outreach", 0.5, 0.1, 60, 0.3, idle=True),
            "flu-recall": Campaign("sp_demo_recall", 0.5, 0.1, 60, 0.3, never_started=True),
        },
    }


class DemoApi:
    """The simulated API; state advances by the wall time between requests."""

    def __init__(self, seed: int = 7, history_seconds: float = 3600) -> None:
        self._rng = random.Random(seed)
        self.orgs = _campaigns()
        self.backlog = DemoBacklog([c for campaigns in self.orgs.values()
                                    for c in campaigns.values()], f"Token {DEMO_TOKEN}")
        for _ in range(int(history_seconds // 10)):
            self._step(10.0)
        self._last = time.monotonic()

    def _advance(self) -> None:
        now = time.monotonic()
        seconds = min(now - self._last, 600.0)
        self._last = now
        self._step(seconds)

    def _step(self, seconds: float) -> None:
        for campaigns in self.orgs.values():
            for campaign in campaigns.values():
                campaign.advance(self._rng, seconds)

    async def analytics(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Token {DEMO_TOKEN}":
            return web.json_response(
                {"message": "Authentication credentials were not provided.", "status_code": 401},
                status=401)
        handle = request.headers.get("Org-Handle")
        if not handle:
            return web.json_response({"status_code": 400, "data": {}, "message":
                                      "Organization handle is required in Org-Handle header"},
                                     status=400)
        campaigns = self.orgs.get(handle)
        if campaigns is None:
            return web.json_response({"message": "Organization not found"}, status=404)
        self._advance()
        space_token = request.query.get("space_token")
        selected = list(campaigns.values())
        if space_token:
            selected = [c for c in selected if c.space_token == space_token]
            if not selected:
                return web.json_response({"status_code": 206, "message": "Invalid Space Token",
                                          "data": {}}, status=206)
        if handle in PLATFORM_SHAPE_ORGS:
            data = _platform_analytics(selected)
            return web.json_response({"status_code": 200, "data": data,
                                      "message": "Analytics fetched successfully"})
        return web.json_response({"status_code": 200, "message": "Analytics fetched successfully",
                                  "data": _analytics(selected)})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/organisation/analytics/", self.analytics)
        self.backlog.routes(app)
        return app


def demo_config(base_url: str) -> Config:
    return Config(
        api=ApiConfig(base_url=base_url, token=TokenSource("token", DEMO_TOKEN, "api.token"),
                      timeout=5.0, max_requests_per_minute=0),
        poll=PollConfig(interval=10.0, concurrency=4, max_staleness=300.0),
        backlog=BacklogConfig(interval=60.0),
        orgs=tuple(
            OrgConfig(handle=handle, spaces=tuple(
                SpaceConfig(name, campaign.space_token) for name, campaign in campaigns.items()))
            for handle, campaigns in _campaigns().items()
        ),
    )
