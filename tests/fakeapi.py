"""A loopback HTTP server that plays the Unpod API, with its documented shapes and quirks.

It follows Unpod's public platform source (``apps/backend-core``: the analytics view, its
``fetch_space_analytics``, DRF's authentication answers, the list views) as well as the
published page: both success shapes (``set_analytics`` / ``set_platform``), a space without
runs (``set_empty``), ``data: null`` (``set_no_data``: the analytics store failed), a route
that does not exist (``no_route``: Django's HTML 404), the 206 answers, the real list items,
and which ``Authorization`` schemes each route accepts (``schemes`` / ``list_schemes``).
Tests inject faults with ``fail``; the server records every request so that tests can count
what the exporter really sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakebacklog import FakeBacklog

ORG_WIDE = None  # the space_token key of an org-wide target


def analytics(calls: int = 100, completed: int = 90, failed: int = 10, avg: float = 42.5,
              tasks: int = 50, breakdown: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "total_calls": calls, "completed_calls": completed, "failed_calls": failed,
        "avg_duration_seconds": avg, "total_tasks": tasks,
        "task_status_breakdown": breakdown if breakdown is not None else
        {"pending": 5, "running": 3, "completed": 35, "failed": 7},
    }


def platform_analytics(calls: int = 419, interested: int = 77, call_back: int = 13,
                       send_details: int = 1, not_interested: int = 20, not_connected: int = 35,
                       failed_calls: int = 200, avg_success_score: float = 467,
                       tasks: int = 419, completed: int = 302, failed: int = 109,
                       pending: int = 2, in_progress: int = 1,
                       **extra_outcomes: Any) -> dict[str, Any]:
    """The platform's own success body (``fetch_space_analytics``); defaults are the example
    of unpod-api.md. ``success_rate`` is computed as the platform does: a percentage of tasks,
    two decimals."""
    return {
        "call_analytics": {"total_calls": calls, "interested": interested,
                           "call_back": call_back, "send_details": send_details,
                           "not_interested": not_interested, "not_connected": not_connected,
                           "failed": failed_calls, "avg_success_score": avg_success_score,
                           **extra_outcomes},
        "call_status": {"total_tasks": tasks, "completed": completed, "failed": failed,
                        "pending": pending, "in_progress": in_progress,
                        "success_rate": round(completed * 100 / tasks, 2) if tasks else 0},
    }


# data: null appears only when the analytics store fails; the renderer always adds status_code
NO_DATA = {"status_code": 200, "message": "No analytics data available for this space.",
           "data": None}
# a space without runs: MongoDB's $facet still returns one document, with empty figures
EMPTY = {"call_analytics": {}, "call_status": {"success_rate": 0}}


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
    # the public source has no analytics route: Django's own page, before authentication
    "no_route": Fault(404, b"<!DOCTYPE html><html><head><title>Page not found at "
                           b"/api/v2/platform/organisation/analytics/</title></head><body>"
                           b"<h1>Page not found <span>(404)</span></h1></body></html>",
                      {"Content-Type": "text/html; charset=utf-8"}),
    "invalid_space_token": Fault(206, {"status_code": 206, "message": "Invalid Space Token",
                                       "data": {}}),
    "rate_limited": Fault(429, {"detail": "Request was throttled."},
                          {"Retry-After": "1", "X-RateLimit-Remaining": "0"}),
    # --- answers seen in the platform source (unpod-api.md, "More error answers") ---
    "invalid_token": Fault(401, {"message": "Invalid token.", "status_code": 401},
                           {"WWW-Authenticate": "Token"}),
    "no_space_access": Fault(206, {"status_code": 206,
                                   "message": "You Don't have Access to this Space",
                                   "data": {}}),
    "invalid_org_handle_206": Fault(206, {"status_code": 206,
                                          "message": "Invalid organization handle.",
                                          "data": {}}),
    "other_206": Fault(206, {"status_code": 206, "message": "Space is archived", "data": {}}),
    "view_exception": Fault(500, {"message": "An error occurred while fetching analytics: "
                                             "ServerSelectionTimeoutError"}),
    "drf_throttled": Fault(429, {"message": "Request was throttled. Expected available in 2 "
                                            "seconds.", "status_code": 429},
                           {"Retry-After": "2"}),
    "no_data": Fault(200, NO_DATA),
    "server_error_html": Fault(500, b"<html><body><h1>Server Error (500)</h1></body></html>",
                               {"Content-Type": "text/html"}),
    "not_json": Fault(200, b"OK, but not JSON", {"Content-Type": "text/plain"}),
    "wrong_shape": Fault(200, {"status_code": 200, "data": [1, 2, 3]}),
    "half_platform_shape": Fault(200, {"status_code": 200, "message": "ok", "data": {
        "call_analytics": {"total_calls": 10}}}),
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


def _not_authenticated(scheme: str) -> Fault:
    """DRF's answer when no authenticator of the view recognises the header."""
    realm = ' realm="api"' if scheme == "JWT" else ""
    return Fault(401, {"message": "Authentication credentials were not provided.",
                       "status_code": 401}, {"WWW-Authenticate": f"{scheme}{realm}"})


class FakeUnpod:
    def __init__(self, tokens: tuple[str, ...] = ("tok-secret-123",)) -> None:
        self.tokens = set(tokens)
        # Authorization schemes each route accepts, in the order DRF tries its authenticators
        # (the first one names WWW-Authenticate). The platform source: Token and JWT on the
        # analytics view, JWT only on the list views (``platform()`` sets that).
        self.schemes: tuple[str, ...] = ("Token", "JWT")
        self.list_schemes: tuple[str, ...] = ("Token", "JWT")
        self.data: dict[tuple[str, str | None], dict[str, Any] | None] = {}
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
        # runs, run tasks, agent tasks; a space with analytics is a space without runs
        self.backlog = FakeBacklog(self._backlog_refusal,
                                   lambda token: any(key[1] == token for key in self.data))

    # --- programming -----------------------------------------------------------------------

    def set_analytics(self, org: str, space_token: str | None = ORG_WIDE,
                      **values: Any) -> dict[str, Any]:
        """The published shape."""
        self.data[(org, space_token)] = body = analytics(**values)
        self._orgs.add(org)
        return body

    def set_platform(self, org: str, space_token: str | None = ORG_WIDE,
                     **values: Any) -> dict[str, Any]:
        """The platform's own shape (``call_analytics`` + ``call_status``)."""
        self.data[(org, space_token)] = body = platform_analytics(**values)
        self._orgs.add(org)
        return body

    def set_no_data(self, org: str, space_token: str | None = ORG_WIDE) -> None:
        """The analytics store failed (a MongoDB error, its 10 s limit): HTTP 200,
        ``data: null``."""
        self.data[(org, space_token)] = None
        self._orgs.add(org)

    def set_empty(self, org: str, space_token: str | None = ORG_WIDE) -> None:
        """A space without runs yet: HTTP 200, empty platform-shape figures."""
        self.data[(org, space_token)] = EMPTY
        self._orgs.add(org)

    def platform(self) -> None:
        """Authenticate as the platform source does: list views take JWT only."""
        self.list_schemes = ("JWT",)

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

    def _authenticate(self, request: web.Request, schemes: tuple[str, ...]) -> Fault | None:
        """None when authorised; else DRF's answer: a known scheme with a wrong token is
        "Invalid token.", an unknown scheme is "credentials were not provided"."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        accepted = {s.casefold() for s in schemes}
        if scheme.casefold() not in accepted or not token:
            return _not_authenticated(schemes[0])
        if token not in self.tokens:
            return FAULTS["invalid_token"]
        return None

    def _backlog_refusal(self, request: web.Request) -> web.Response | None:
        """The runs and tasks views authenticate like the analytics view (Token or JWT)."""
        refused = self._authenticate(request, self.schemes)
        if refused is None:
            return None
        return web.json_response(refused.body, status=refused.status, headers=refused.headers)

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
        refused = self._authenticate(request, self.schemes)
        if refused is not None:
            return await self._answer(request, refused)
        if not org:
            return await self._answer(request, FAULTS["missing_org_handle"])
        if org not in self._orgs:
            return await self._answer(request, FAULTS["org_not_found"])
        if (org, space_token) not in self.data:
            return await self._answer(request, FAULTS["invalid_space_token"])
        data = self.data[(org, space_token)]
        if data is None:
            return web.json_response(NO_DATA, headers=self.extra_headers)
        if self.moving and "total_calls" in data:  # a live campaign: a new snapshot each time
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
        refused = self._authenticate(request, self.list_schemes)
        if refused is not None:
            return await self._answer(request, refused)
        # The source's organization items: no id, a token of the org's own, nulls allowed.
        items = [{"name": h.title(), "token": f"org-token-{i}", "domain": f"{h}.example",
                  "domain_handle": h, "is_private_domain": True, "role": "owner"}
                 for i, h in enumerate(sorted(self._orgs | set(self.space_names)))]
        return web.json_response({"count": len(items), "status_code": 200,
                                  "message": "Organizations fetched", "data": items})

    async def spaces(self, request: web.Request) -> web.StreamResponse:
        org = request.headers.get("Org-Handle") or ""
        self.list_requests.append(("spaces", org))
        fault = self.list_faults.get(f"spaces:{org}")
        if fault is not None:
            return await self._answer(request, fault)
        refused = self._authenticate(request, self.list_schemes)
        if refused is not None:
            return await self._answer(request, refused)
        if not org:
            return await self._answer(request, FAULTS["missing_org_handle"])
        if org not in self._orgs and org not in self.space_names:
            return await self._answer(request, FAULTS["org_not_found"])
        # The source's space items: no id, nulls, the organization nested; newest first.
        items = [{"name": name, "slug": name.lower().replace(" ", "-"), "token": token,
                  "description": None, "logo": None, "privacy_type": "shared",
                  "space_type": "general", "content_type": "contact",
                  "organization": {"name": org.title(), "domain_handle": org}}
                 for name, token in reversed(self.space_names.get(org, []))]
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
        self.backlog.routes(app, "/api/v2/platform")
        return app
