"""A loopback HTTP server that plays the Unpod API, with its documented shapes and quirks.

Tests set per-target analytics with ``set_analytics`` and inject faults with ``fail``; the
server records every request so that tests can count what the exporter really sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ORG_WIDE = None  # the space_token key of an org-wide target


def analytics(calls: int = 100, completed: int = 90, failed: int = 10, avg: float = 42.5,
              tasks: int = 50, breakdown: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "total_calls": calls, "completed_calls": completed, "failed_calls": failed,
        "avg_duration_seconds": avg, "total_tasks": tasks,
        "task_status_breakdown": breakdown if breakdown is not None else
        {"pending": 5, "running": 3, "completed": 35, "failed": 7},
    }


@dataclass(frozen=True)
class Fault:
    """A canned answer: status, body (bytes, or JSON-encoded), headers, delay, or a reset."""

    status: int = 500
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset_after: int | None = None  # send this many body bytes, then drop the connection


# The error answers of unpod-api.md, by name.
FAULTS: dict[str, Fault] = {
    "missing_org_handle": Fault(400, {"status_code": 400, "data": {},
                                      "message": "Organization handle is required in "
                                                 "Org-Handle header"}),
    "no_credentials": Fault(401, {"message": "Authentication credentials were not provided.",
                                  "status_code": 401}),
    "expired_token": Fault(401, {"message": "Unauthorized Access",
                                 "error": "Expired Auth Token"}),
    "invalid_org": Fault(403, {"status_code": 403, "message": "Invalid organization handle"}),
    "org_not_found": Fault(404, {"message": "Organization not found"}),
    "invalid_space_token": Fault(206, {"status_code": 206, "message": "Invalid Space Token",
                                       "data": {}}),
    "rate_limited": Fault(429, {"detail": "Request was throttled."},
                          {"Retry-After": "1", "X-RateLimit-Remaining": "0"}),
    "server_error_html": Fault(500, b"<html><body><h1>Server Error (500)</h1></body></html>",
                               {"Content-Type": "text/html"}),
    "not_json": Fault(200, b"OK, but not JSON", {"Content-Type": "text/plain"}),
    "wrong_shape": Fault(200, {"status_code": 200, "data": [1, 2, 3]}),
    "older_shape": Fault(200, {"status_code": 200, "message": "ok", "data": {
        "call_analytics": {"total": 10, "completed": 9}, "call_status": {"failed": 1}}}),
    "negative_value": Fault(200, {"status_code": 200, "data": analytics(calls=-1)}),
    "non_numeric_value": Fault(200, {"status_code": 200, "data": analytics(calls="many")}),  # type: ignore[arg-type]
}


@dataclass(frozen=True)
class Seen:
    org: str | None
    space_token: str | None
    authorization: str | None
    user_agent: str | None
    at: float


class FakeUnpod:
    def __init__(self, tokens: tuple[str, ...] = ("tok-secret-123",)) -> None:
        self.tokens = set(tokens)
        self.data: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._orgs: set[str] = set()
        self.faults: dict[tuple[str, str | None], Fault | Callable[[], Fault | None]] = {}
        self.requests: list[Seen] = []
        self.record = True  # benchmarks turn this off: a list of millions is its own leak
        self.moving = False
        self._tick = 0
        self.latency = 0.0
        self.extra_headers: dict[str, str] = {}
        self.space_names: dict[str, list[tuple[str, str]]] = {}
        self.list_faults: dict[str, Fault] = {}  # "organizations" or "spaces:ORG"
        self.list_requests: list[tuple[str, str | None]] = []

    # --- programming -----------------------------------------------------------------------

    def set_analytics(self, org: str, space_token: str | None = ORG_WIDE,
                      **values: Any) -> dict[str, Any]:
        self.data[(org, space_token)] = body = analytics(**values)
        self._orgs.add(org)
        return body

    def fail(self, org: str, space_token: str | None, fault: Fault | str | None) -> None:
        if fault is None:
            self.faults.pop((org, space_token), None)
        else:
            self.faults[(org, space_token)] = FAULTS[fault] if isinstance(fault, str) else fault

    def count(self, org: str | None = None, space_token: str | None = "*") -> int:
        return sum(1 for r in self.requests if (org is None or r.org == org)
                   and (space_token == "*" or r.space_token == space_token))

    # --- serving ---------------------------------------------------------------------------

    async def _answer(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        body = fault.body if isinstance(fault.body, bytes) else json.dumps(fault.body).encode()
        headers = {"Content-Type": "application/json", **fault.headers}
        if fault.reset_after is None:
            return web.Response(status=fault.status, body=body, headers=headers)
        response = web.StreamResponse(status=fault.status, headers={
            **headers, "Content-Length": str(len(body))})
        await response.prepare(request)
        await response.write(body[: fault.reset_after])
        assert request.transport is not None
        request.transport.close()
        return response

    async def analytics(self, request: web.Request) -> web.StreamResponse:
        org = request.headers.get("Org-Handle")
        space_token = request.query.get("space_token")
        if self.record:
            self.requests.append(Seen(org, space_token, request.headers.get("Authorization"),
                                      request.headers.get("User-Agent"), time.monotonic()))
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self.faults.get((org or "", space_token))
        if callable(fault):
            fault = fault()
        if fault is not None:
            return await self._answer(request, fault)
        if request.headers.get("Authorization", "").removeprefix("Token ") not in self.tokens:
            return await self._answer(request, FAULTS["no_credentials"])
        if not org:
            return await self._answer(request, FAULTS["missing_org_handle"])
        if org not in self._orgs:
            return await self._answer(request, FAULTS["org_not_found"])
        data = self.data.get((org, space_token))
        if data is None:
            return await self._answer(request, FAULTS["invalid_space_token"])
        if self.moving:  # a live campaign: every answer is a new snapshot
            self._tick += 1
            data = {**data, "total_calls": data["total_calls"] + self._tick,
                    "completed_calls": data["completed_calls"] + self._tick}
        return web.json_response(
            {"status_code": 200, "message": "Analytics fetched successfully", "data": data},
            headers=self.extra_headers)

    async def organizations(self, request: web.Request) -> web.StreamResponse:
        self.list_requests.append(("organizations", request.headers.get("Org-Handle")))
        fault = self.list_faults.get("organizations")
        if fault is not None:
            return await self._answer(request, fault)
        if request.headers.get("Authorization", "").removeprefix("Token ") not in self.tokens:
            return await self._answer(request, FAULTS["no_credentials"])
        items = [{"id": i, "name": h.title(), "domain_handle": h, "role": "owner"}
                 for i, h in enumerate(sorted({key[0] for key in self.data}))]
        return web.json_response({"count": len(items), "status_code": 200,
                                  "message": "Organizations fetched", "data": items})

    async def spaces(self, request: web.Request) -> web.StreamResponse:
        org = request.headers.get("Org-Handle") or ""
        self.list_requests.append(("spaces", org))
        fault = self.list_faults.get(f"spaces:{org}")
        if fault is not None:
            return await self._answer(request, fault)
        if request.headers.get("Authorization", "").removeprefix("Token ") not in self.tokens:
            return await self._answer(request, FAULTS["no_credentials"])
        items = [{"id": i, "name": name, "token": token, "slug": name.lower()}
                 for i, (name, token) in enumerate(self.space_names.get(org, []))]
        return web.json_response({"count": len(items), "status_code": 200,
                                  "message": "Spaces fetched", "data": items})

    def add_space(self, org: str, name: str, token: str, **values: Any) -> None:
        """A space that the spaces/ list shows (and that answers analytics)."""
        self.space_names.setdefault(org, []).append((name, token))
        self.set_analytics(org, token, **values)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v2/platform/organisation/analytics/", self.analytics)
        app.router.add_get("/api/v2/platform/organizations/", self.organizations)
        app.router.add_get("/api/v2/platform/spaces/", self.spaces)
        return app
