"""How the backlog scan plugs into the exporter: its requests through the request gate at the
lowest priority, the spaces and settings a config gives it, and the budget the analytics
polls leave it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from exporter.backlog.runner import ScanPlan, Spare
from exporter.backlog.scan import Endpoint, Fetch
from exporter.budget import AuthBackoff
from exporter.client import ApiError, ApiResponse, UnpodClient
from exporter.config import Config, ConfigError
from exporter.gate import Priority, RequestGate
from exporter.reasons import Reason
from exporter.store import SnapshotStore
from exporter.targets import ORG_WIDE, Target
from exporter.tokens import TokenReader

T = TypeVar("T")


def plan_of(config: Config) -> ScanPlan:
    backlog = config.backlog
    return ScanPlan(backlog.interval, backlog.page_size, backlog.max_requests_per_scan,
                    config.poll.max_staleness)


def spaces_to_scan(config: Config, targets: Iterable[Target]) -> list[Target]:
    """The space targets (configured or discovered) of the orgs the scan covers."""
    orgs = {org.handle: org for org in config.orgs}
    return [target for target in targets
            if target.space != ORG_WIDE and target.space_token
            and config.scans_backlog(orgs.get(target.org))]


def backlog_spare(spare: tuple[float, float | None] | None) -> Spare:
    """``budget.spare``'s answer (None: nothing left; a per-minute 0: no cap) as the scan's."""
    if spare is None:
        return (0.0, 0.0)
    per_minute, per_day = spare
    return (per_minute or None, per_day)


class BacklogGateway:
    """Builds each scan's ``Fetch``: the gate at ``Priority.BACKLOG`` (after every due
    analytics poll), nothing while the org's credential is backing off, and every request
    counted by endpoint."""

    def __init__(self, *, gate: RequestGate, client: Callable[[], UnpodClient],
                 tokens: TokenReader, store: SnapshotStore, auth_backoff: AuthBackoff) -> None:
        """``client()``: the backlog's client of the running config (8 MiB answers)."""
        self._gate = gate
        self._client = client
        self._tokens = tokens
        self._store = store
        self._auth_backoff = auth_backoff

    def fetch_for(self, target: Target, deadline: float) -> Fetch:
        async def fetch(endpoint: Endpoint, path: str, params: Mapping[str, str],
                        parse: Callable[[object], T]) -> ApiResponse[T] | None:
            if self._auth_backoff.blocked(target.org, target.token) is not None:
                return None  # as for a poll: skipped, nothing sent, nothing counted
            response = await self._gate.send(
                target.token, lambda: self._get(target, path, params, parse),
                priority=Priority.BACKLOG, deadline=deadline)
            if response is not None:
                self._store.count_request(target.org, response.outcome,
                                          response.ratelimit_remaining, endpoint)
            return response
        return fetch

    async def _get(self, target: Target, path: str, params: Mapping[str, str],
                   parse: Callable[[object], T]) -> ApiResponse[T]:
        try:
            token = self._tokens.get(target.token)
        except ConfigError as exc:
            return ApiResponse(ApiError(Reason.UNAUTHORIZED, f"no usable token: {exc}"))
        return await self._client().get(path, token, target.org, dict(params), parse,
                                        (token, target.space_token or ""), whole_body=True)
