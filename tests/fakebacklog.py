"""The runs and tasks endpoints of the fake Unpod API, as the platform's own code answers them
(unpod-api.md, "Runs and tasks", what it answered when run for real):

- ``spaces/{space_token}/runs/``: a space's runs, newest first; ``spaces/{space_token}/runs/
  {run_id}/tasks/``: a run's tasks, **stripped** of ``_id``, ``retry_attempt``,
  ``last_status_change``, ``scheduled_timestamp``, ``failure_count``, ``last_failure_reason``;
  ``agents/{handle}/tasks/``: the raw documents of every task of an agent, newest ``created``
  first, default ``page_size`` 20.
- Paging: ``page`` 1-based, default ``page_size`` 50, ``count`` the total, past the end
  ``data: []``, ``page_size=0`` everything, ``page`` <= 0 a 206 ("Runs Fetch Failed" with
  ``errors``), non-numeric values the defaults; on agent tasks a bad or zero page is a 500 HTML
  page. ``space_id`` really reads another space (the exporter must never send it).
- ``Token`` or ``JWT`` auth, ``Org-Handle`` ignored; a wrong token 401 "Invalid token."; an
  unknown space token 206 "Invalid Space Token"; an unknown agent 404 "Agent not found".
- Task documents carry personal data (names, numbers, e-mails, transcripts, recordings,
  summaries), with large transcripts: tests check that none of it leaves the exporter.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

# Personal data planted in every task document: none of it may appear in /metrics, the
# landing page or any log line.
PERSONAL = ("Priya Raman", "+919812345678", "priya.raman@example.com", "Flat 4B, Lotus Court",
            "I would like a call back on Tuesday", "recordings.example/rec-77.wav")
STRIPPED = ("_id", "retry_attempt", "last_status_change", "scheduled_timestamp",
            "failure_count", "last_failure_reason")
TERMINAL = ("completed", "failed", "partially_completed")


def iso(when: float, micro: bool = False) -> str:
    """The platform's times: naive UTC, with microseconds on raw documents only."""
    stamp = datetime.fromtimestamp(when, UTC).replace(tzinfo=None)
    return stamp.isoformat(timespec="microseconds" if micro else "seconds")


def task_document(task_id: str, run_id: str, space_token: str, assignee: str, status: str,
                  created: float, *, last_status_change: float | None = None,
                  scheduled_timestamp: float | None = None, retry_attempt: int = 0,
                  transcript_bytes: int = 20_000) -> dict[str, Any]:
    """A raw task document as the task service stores it, personal data included."""
    name, number, email, address, said, recording = PERSONAL
    turn = f"user: {said}. My number is {number}, e-mail {email}. "
    return {
        "_id": f"oid-{task_id}", "task_id": task_id, "run_id": run_id, "space_id": 7,
        "space_token": space_token, "assignee": assignee, "execution_type": "call",
        "status": status, "ref_id": f"doc-{task_id}",
        "objective": "Confirm the appointment and offer a slot",
        "input": {"name": name, "contact_number": number, "email": email,
                  "address": address, "quality": "good"},
        "user_info": {"full_name": name, "phone": number, "email": email},
        "output": {"transcript": (turn * (transcript_bytes // len(turn) + 1))[:transcript_bytes],
                   "recording_url": f"https://{recording}", "contact_number": number,
                   "post_call_data": {"summary": {"status": "Call Back", "name": name,
                                                  "contact": number, "summary": said}}},
        "created": iso(created, micro=True), "modified": iso(created, micro=True),
        "last_status_change": iso(last_status_change if last_status_change is not None
                                  else created, micro=True),
        "scheduled_timestamp": scheduled_timestamp, "retry_attempt": retry_attempt,
        "failure_count": retry_attempt, "last_failure_reason": "no answer" if retry_attempt
        else None,
    }


@dataclass
class FakeRun:
    run_id: str
    space_token: str
    status: str
    created: float
    tasks: list[dict[str, Any]] = field(default_factory=list)  # newest (inserted) first

    def item(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "collection_ref": f"collection_{self.space_token}",
                "run_mode": "prod", "status": self.status, "batch_count": len(self.tasks),
                "created": iso(self.created), "modified": iso(self.created),
                "user": {"full_name": PERSONAL[0], "email": PERSONAL[2]}}


@dataclass(frozen=True)
class BacklogRequest:
    kind: str  # "runs", "tasks" or "agent"
    path: str
    query: dict[str, str]
    authorization: str | None


def _number(query: Any, name: str, default: int) -> int:
    """As the platform: a non-numeric value is silently the default."""
    try:
        return int(query.get(name, default))
    except ValueError:
        return default


class FakeBacklog:
    """Runs and tasks per space token; programmed by tests, served by ``FakeUnpod``."""

    def __init__(self, authenticate: Callable[[web.Request], web.Response | None],
                 known: Callable[[str], bool] = lambda token: False) -> None:
        """``known(token)``: a space the rest of the fake knows (it has no runs yet)."""
        self._authenticate = authenticate
        self._known = known
        self.runs: dict[str, list[FakeRun]] = {}  # space token -> runs, newest first
        self.space_ids: dict[str, str] = {}  # space_id -> space token (space_id is honoured)
        self.requests: list[BacklogRequest] = []
        self.record = True  # benchmarks turn this off: a list of millions is its own leak
        self.faults: dict[str, Callable[[], web.Response | None]] = {}  # "runs:TOKEN", ...
        self._ids = itertools.count(1)
        self._by_agent: dict[str, list[dict[str, Any]]] | None = None  # newest first

    # --- programming -----------------------------------------------------------------------

    def space(self, space_token: str) -> None:
        self.runs.setdefault(space_token, [])
        self.space_ids.setdefault(str(len(self.space_ids) + 1), space_token)

    def add_run(self, space_token: str, statuses: list[str], *, run_status: str = "in_progress",
                created: float | None = None, assignee: str = "space-agent-8qmk42",
                **document: Any) -> FakeRun:
        """A run with one task per status (each task a full document), newest first."""
        self.space(space_token)
        created = time.time() if created is None else created
        run = FakeRun(f"R{next(self._ids):06d}", space_token, run_status, created)
        for status in statuses:
            run.tasks.insert(0, task_document(f"T{next(self._ids):07d}", run.run_id,
                                              space_token, assignee, status, created,
                                              **document))
        self.runs[space_token].insert(0, run)
        self._by_agent = None
        return run

    def _agent_documents(self, handle: str) -> list[dict[str, Any]]:
        """Every task of an agent, newest ``created`` first (indexed once per change of the
        runs: a benchmark's fake answers thousands of these)."""
        if self._by_agent is None:
            index: dict[str, list[dict[str, Any]]] = {}
            for runs in self.runs.values():
                for run in runs:
                    for task in run.tasks:
                        index.setdefault(task["assignee"], []).append(task)
            for documents in index.values():
                documents.sort(key=lambda task: task["created"], reverse=True)
            self._by_agent = index
        return self._by_agent.get(handle, [])

    def count(self, kind: str | None = None) -> int:
        return sum(1 for r in self.requests if kind is None or r.kind == kind)

    # --- serving ---------------------------------------------------------------------------

    def _record(self, request: web.Request, kind: str) -> web.Response | None:
        if self.record:
            self.requests.append(BacklogRequest(kind, request.path, dict(request.query),
                                                request.headers.get("Authorization")))
        return self._authenticate(request)

    def _space(self, request: web.Request) -> str | None:
        token = request.match_info["space_token"]
        if "space_id" in request.query:  # the platform lets it override the space
            return self.space_ids.get(request.query["space_id"])
        if token not in self.runs and self._known(token):
            self.space(token)
        return token if token in self.runs else None

    @staticmethod
    def _page(items: list[dict[str, Any]], query: Any, default_size: int,
              failed: str) -> web.Response:
        page, size = _number(query, "page", 1), _number(query, "page_size", default_size)
        if page <= 0:
            return web.json_response({"message": failed, "status_code": 206,
                                      "errors": {"page": "must be positive"}}, status=206)
        chosen = items if size == 0 else items[(page - 1) * size: page * size]
        body = {"message": "Fetched Successfully", "data": chosen, "count": len(items),
                "status_code": 200}
        response = web.Response(body=json.dumps(body).encode(), content_type="application/json")
        response.enable_compression()
        return response

    def _fault(self, key: str) -> web.Response | None:
        fault = self.faults.get(key)
        return fault() if fault is not None else None

    async def list_runs(self, request: web.Request) -> web.Response:
        refused = self._record(request, "runs")
        if refused is not None:
            return refused
        token = request.match_info["space_token"]
        if (fault := self._fault(f"runs:{token}")) is not None:
            return fault
        space = self._space(request)
        if space is None:
            return _invalid_space()
        return self._page([run.item() for run in self.runs[space]], request.query, 50,
                          "Runs Fetch Failed")

    async def run_tasks(self, request: web.Request) -> web.Response:
        refused = self._record(request, "tasks")
        if refused is not None:
            return refused
        token, run_id = request.match_info["space_token"], request.match_info["run_id"]
        if (fault := self._fault(f"tasks:{token}:{run_id}")) is not None:
            return fault
        space = self._space(request)
        if space is None:
            return _invalid_space()
        run = next((r for r in self.runs[space] if r.run_id == run_id), None)
        tasks = [] if run is None else [
            {k: v for k, v in task.items() if k not in STRIPPED} for task in run.tasks]
        return self._page(tasks, request.query, 50, "Runs Fetch Failed")

    async def agent_tasks(self, request: web.Request) -> web.Response:
        refused = self._record(request, "agent")
        if refused is not None:
            return refused
        handle = request.match_info["handle"]
        if (fault := self._fault(f"agent:{handle}")) is not None:
            return fault
        if _number(request.query, "page", 1) <= 0:
            return web.Response(status=500, text="<h1>Server Error (500)</h1>",
                                content_type="text/html")
        documents = self._agent_documents(handle)
        if not documents:
            return web.json_response({"message": "Agent not found"}, status=404)
        return self._page(documents, request.query, 20, "Tasks Fetch Failed")

    def routes(self, app: web.Application, prefix: str) -> None:
        app.router.add_get(prefix + "/spaces/{space_token}/runs/", self.list_runs)
        app.router.add_get(prefix + "/spaces/{space_token}/runs/{run_id}/tasks/",
                           self.run_tasks)
        app.router.add_get(prefix + "/agents/{handle}/tasks/", self.agent_tasks)


def _invalid_space() -> web.Response:
    return web.json_response({"status_code": 206, "message": "Invalid Space Token",
                              "data": {}}, status=206)
