"""The demo's runs and tasks endpoints, answered as the platform's code does (newest first,
``count``, stripped run tasks, raw agent task documents), from the simulated campaigns.

Each campaign has an old finished run and an open one whose tasks mirror the campaign's
current counts (at most ``SHOWN`` per status: a demo, not a load test). A campaign that never
starts has one run of pending tasks created two hours before the demo began, and nothing
finished, so its analytics are empty and only the backlog scan shows it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

SHOWN = 120  # task documents per status and run, at most
NEVER_STARTED_AGE = 7200.0  # seconds before the demo's start that the stuck run was created
NEVER_STARTED_TASKS = 25
_STRIPPED = ("retry_attempt", "last_status_change", "scheduled_timestamp")


class Campaign(Protocol):
    space_token: str
    never_started: bool
    tasks: dict[str, int]


def _iso(when: float, micro: bool = False) -> str:
    stamp = datetime.fromtimestamp(when, UTC).replace(tzinfo=None)
    return stamp.isoformat(timespec="microseconds" if micro else "seconds")


def _page(items: list[dict[str, Any]], request: web.Request, default_size: int) -> web.Response:
    try:
        page = int(request.query.get("page", 1))
        size = int(request.query.get("page_size", default_size))
    except ValueError:
        page, size = 1, default_size
    if page <= 0:
        return web.json_response({"message": "Runs Fetch Failed", "status_code": 206,
                                  "errors": {"page": "must be positive"}}, status=206)
    chosen = items if size <= 0 else items[(page - 1) * size: page * size]
    return web.json_response({"message": "Fetched Successfully", "status_code": 200,
                              "data": chosen, "count": len(items)})


class DemoBacklog:
    """Runs and tasks of the demo's campaigns, by space token."""

    def __init__(self, campaigns: list[Campaign], authorization: str,
                 started: float | None = None) -> None:
        self._campaigns = {c.space_token: c for c in campaigns}
        self._authorization = authorization
        self._started = time.time() if started is None else started

    def _runs(self, campaign: Campaign) -> list[tuple[str, str, float]]:
        """(run id, status, created), newest first."""
        token = campaign.space_token
        if campaign.never_started:
            return [(f"{token}-r2", "pending", self._started - NEVER_STARTED_AGE)]
        return [(f"{token}-r2", "in_progress", self._started - 3600),
                (f"{token}-r1", "completed", self._started - 86_400)]

    def _documents(self, campaign: Campaign, run_id: str, created: float) -> list[dict[str, Any]]:
        """Raw task documents of one run (contact data included, as the real ones carry)."""
        if run_id.endswith("-r1"):
            counts = {"completed": 10}
        elif campaign.never_started:
            counts = {"pending": NEVER_STARTED_TASKS}
        else:
            counts = {"pending": campaign.tasks["pending"],
                      "in_progress": campaign.tasks["running"],
                      "completed": min(campaign.tasks["completed"], 20)}
        now = time.time()
        documents = []
        for status, count in counts.items():
            for i in range(min(count, SHOWN)):
                documents.append({
                    "task_id": f"{run_id}-{status}-{i}", "run_id": run_id, "status": status,
                    "assignee": f"demo-agent-{campaign.space_token}", "execution_type": "call",
                    "created": _iso(created, micro=True), "modified": _iso(created, micro=True),
                    "last_status_change": _iso(now - 40 - i if status == "in_progress"
                                               else created, micro=True),
                    "scheduled_timestamp": None, "retry_attempt": 0,
                    "input": {"name": f"Demo Contact {i}", "contact_number": f"+1555010{i:04d}"},
                })
        return documents

    def _campaign(self, request: web.Request) -> Campaign | web.Response:
        """The space's campaign, or the platform's answer to a bad token or space token."""
        if request.headers.get("Authorization") != self._authorization:
            return web.json_response({"message": "Invalid token.", "status_code": 401},
                                     status=401, headers={"WWW-Authenticate": "Token"})
        campaign = self._campaigns.get(request.match_info.get("space_token", ""))
        if campaign is None:
            return web.json_response({"status_code": 206, "message": "Invalid Space Token",
                                      "data": {}}, status=206)
        return campaign

    async def runs(self, request: web.Request) -> web.Response:
        campaign = self._campaign(request)
        if isinstance(campaign, web.Response):
            return campaign
        items = [{"run_id": run_id, "collection_ref": f"collection_{campaign.space_token}",
                  "run_mode": "prod", "status": status, "batch_count": 1,
                  "created": _iso(created), "modified": _iso(created)}
                 for run_id, status, created in self._runs(campaign)]
        return _page(items, request, 50)

    async def run_tasks(self, request: web.Request) -> web.Response:
        campaign = self._campaign(request)
        if isinstance(campaign, web.Response):
            return campaign
        run_id = request.match_info["run_id"]
        runs = {rid: created for rid, _, created in self._runs(campaign)}
        documents = self._documents(campaign, run_id, runs[run_id]) if run_id in runs else []
        stripped = [{k: v for k, v in d.items() if k not in _STRIPPED} for d in documents]
        for task in stripped:
            task["created"] = task["created"][:19]  # run tasks: no microseconds
        return _page(stripped, request, 50)

    async def agent_tasks(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self._authorization:
            return web.json_response({"message": "Invalid token.", "status_code": 401},
                                     status=401)
        handle = request.match_info["handle"]
        campaign = self._campaigns.get(handle.removeprefix("demo-agent-"))
        if campaign is None:
            return web.json_response({"message": "Agent not found"}, status=404)
        documents = [d for run_id, _, created in self._runs(campaign)
                     for d in self._documents(campaign, run_id, created)]
        return _page(documents, request, 20)  # runs newest first: documents are too

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/spaces/{space_token}/runs/", self.runs)
        app.router.add_get("/spaces/{space_token}/runs/{run_id}/tasks/", self.run_tasks)
        app.router.add_get("/agents/{handle}/tasks/", self.agent_tasks)
