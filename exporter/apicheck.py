"""``--config.check.api``: one real request per target (and per list with discovery), within
the request budget, printed as a table that says what each answer would export, or why it
failed and which config key to look at. No token or space token is ever printed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from exporter.analytics import Analytics
from exporter.client import ApiError, ApiResponse, UnpodClient, close_quietly, environment_proxy
from exporter.config import Config, TokenSource
from exporter.discovery import ORGS_PATH, SPACES_PATH, parse_orgs, parse_spaces, refused_scheme
from exporter.gate import RequestGate
from exporter.reasons import Reason
from exporter.sharding import Shard
from exporter.targets import ORG_WIDE, Discovered, Target, build_targets
from exporter.tokens import TokenReader

COLUMNS = ("TARGET", "HTTP", "SHAPE", "FIGURES", "RESULT")
R = TypeVar("R")


@dataclass(frozen=True)
class Row:
    target: str
    http: str
    shape: str
    figures: str
    result: str
    ok: bool


@dataclass(frozen=True)
class Keys:
    """The config keys a target's answer can point at."""

    token: str
    org: str
    space: str | None


def config_keys(config: Config, target: Target) -> Keys:
    token = config.api.token.key
    for i, org in enumerate(config.orgs):
        if org.handle != target.org:
            continue
        token = config.token_for(org).key
        for j, space in enumerate(org.spaces):
            if space.name == target.space:
                return Keys(token, f"orgs[{i}].handle", f"orgs[{i}].spaces[{j}].space_token")
        space_key = None if target.space == ORG_WIDE else "discovery.spaces (listed by the API)"
        return Keys(token, f"orgs[{i}].handle", space_key)
    return Keys(token, "discovery.orgs (listed by the API)",
                None if target.space == ORG_WIDE else "discovery.spaces (listed by the API)")


def hint(error: ApiError, keys: Keys, challenge: str | None, scheme: str) -> str:
    """Where to look for a failure's cause, naming the config key."""
    reason = error.reason
    if reason == Reason.UNAUTHORIZED:
        if (wanted := refused_scheme(challenge, scheme)) is not None:
            extra = (" (or list spaces under orgs[].spaces: some deployments' list endpoints "
                     "take JWT only)") if keys.org.startswith("discovery") else ""
            return f"the API asks for {wanted} credentials: check api.auth_scheme{extra}"
        return f"the token is refused: check {keys.token}"
    if reason == Reason.FORBIDDEN:
        if error.target_only and keys.space:
            return f"the token's user has no access to this space: check {keys.space}"
        return f"the token lacks access to the organization: check {keys.token} and {keys.org}"
    if reason == Reason.NOT_FOUND:
        if error.route_missing:
            return ("the route does not exist at api.base_url (a web server's page, not the "
                    "platform's JSON): check api.base_url")
        if "space" in error.message.lower() and keys.space:
            return f"check {keys.space}"
        return f"check {keys.org}"
    return {
        Reason.BAD_REQUEST: f"check {keys.org}",
        Reason.RATE_LIMITED: "the API throttles: lower api.max_requests_per_minute",
        Reason.SERVER_ERROR: "Unpod's side: try again later",
        Reason.TIMEOUT: "check api.timeout, api.base_url and the network",
        Reason.CONNECTION_ERROR: "check api.base_url, api.proxy_url and api.tls",
        Reason.INVALID_RESPONSE: "check api.base_url (is it Unpod's platform API?)",
        Reason.NO_DATA: ("Unpod's analytics store failed to answer (data: null): try again "
                         "later; the exporter keeps the last figures until poll.max_staleness"),
    }.get(reason, "")


def figures(analytics: Analytics) -> str:
    parts = [f"{name}={value:.4g}" for name, value in (
        ("calls", analytics.total_calls), ("completed", analytics.completed_calls),
        ("failed", analytics.failed_calls), ("avg_duration_s", analytics.avg_duration_seconds),
        ("tasks", analytics.total_tasks), ("task_success", analytics.task_success_ratio),
    ) if value is not None]
    parts.append(f"statuses={len(analytics.status_names)}")
    if analytics.outcome_names:
        parts.append(f"outcomes={len(analytics.outcome_names)}")
    return " ".join(parts)


def _failure(name: str, response: ApiResponse[R], keys: Keys, scheme: str) -> Row:
    error = response.outcome
    assert isinstance(error, ApiError)
    where = hint(error, keys, response.auth_challenge, scheme)
    result = f"{error.reason}: {error.message}" + (f" -> {where}" if where else "")
    return Row(name, str(response.http_status or "-"), "-", "", result, False)


def target_row(config: Config, target: Target,
               response: ApiResponse[Analytics]) -> Row:
    name = target.org + ("" if target.space == ORG_WIDE else f"/{target.space}")
    outcome = response.outcome
    if isinstance(outcome, Analytics) and outcome.empty:
        return Row(name, str(response.http_status), outcome.shape, "",
                   "ok: no runs yet, so no figures; they appear once it has runs", True)
    if isinstance(outcome, Analytics):
        return Row(name, str(response.http_status), outcome.shape, figures(outcome), "ok", True)
    return _failure(name, response, config_keys(config, target), config.api.auth_scheme)


def render(rows: list[Row]) -> str:
    table = [COLUMNS, *((r.target, r.http, r.shape, r.figures, r.result) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS) - 1)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(line, widths, strict=False)),
                        line[-1]]).rstrip() for line in table]
    failed = sum(not r.ok for r in rows)
    lines.append(f"{len(rows) - failed} of {len(rows)} answered usefully"
                 + (f"; {failed} failed" if failed else ""))
    return "\n".join(lines)


class ApiCheck:
    """The requests of one check, sent through a request gate with the config's budget and
    concurrency, as the running exporter would send them."""

    def __init__(self, config: Config, client: UnpodClient) -> None:
        self.config = config
        self.client = client
        self.tokens = TokenReader()
        api = config.api
        self.gate = RequestGate(concurrency=config.poll.concurrency,
                                per_minute=api.max_requests_per_minute,
                                per_day=api.max_requests_per_day)

    async def _send(self, source: TokenSource,
                    request: Callable[[str], Awaitable[ApiResponse[R]]]) -> ApiResponse[R]:
        response = await self.gate.send(source, lambda: request(self.tokens.get(source)))
        assert response is not None  # no deadline: it waits for the budget
        return response

    async def _list(self, path: str, org: str | None,
                    parse: Callable[[object], object]) -> ApiResponse[object]:
        return await self._send(self.config.api.token, lambda token: self.client.get(
            path, token, org, None, parse, (token,)))

    async def discover(self, rows: list[Row]) -> Discovered:
        config = self.config
        assert config.discovery is not None
        keys = Keys(config.api.token.key, "discovery.orgs", None)
        orgs: tuple[str, ...] | None = None
        if config.discovery.orgs is not None:
            response = await self._list(ORGS_PATH, None, parse_orgs)
            if isinstance(response.outcome, tuple):
                orgs = tuple(h for h in response.outcome if config.discovery.orgs.matches(h))
                rows.append(Row("list organizations", str(response.http_status), "-",
                                f"orgs={len(orgs)}", "ok", True))
            else:
                rows.append(_failure("list organizations", response, keys,
                                     config.api.auth_scheme))
        configured = {org.handle: org for org in config.orgs}
        spaces = {}
        for handle in [*configured, *(h for h in orgs or () if h not in configured)]:
            if config.space_filter(configured.get(handle)) is None:
                continue
            response = await self._list(SPACES_PATH, handle, parse_spaces)
            name = f"list spaces of {handle}"
            if isinstance(response.outcome, tuple):
                spaces[handle] = response.outcome
                rows.append(Row(name, str(response.http_status), "-",
                                f"spaces={len(response.outcome)}", "ok", True))
            else:
                rows.append(_failure(name, response, keys, config.api.auth_scheme))
        return Discovered(orgs, spaces)

    async def target(self, target: Target) -> Row:
        response = await self._send(target.token, lambda token: self.client.fetch_analytics(
            target.org, token, target.space_token))
        return target_row(self.config, target, response)


async def check_api(config: Config, shard: Shard | None = None) -> list[Row]:
    """Every list and target of this shard, one request each; rows in target order."""
    api = config.api
    session = aiohttp.ClientSession()
    try:
        client = UnpodClient(session, api.base_url, api.timeout,
                             proxy=api.proxy_url or environment_proxy(api.base_url),
                             ssl_context=api.tls.ssl_context(), auth_scheme=api.auth_scheme)
        check = ApiCheck(config, client)
        rows: list[Row] = []
        discovered = await check.discover(rows) if config.discovery else None
        targets = build_targets(config, discovered, shard)
        rows.extend(await asyncio.gather(*(check.target(t) for t in targets)))
        return rows
    finally:
        await close_quietly(session)
