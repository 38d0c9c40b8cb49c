"""Discovery: the organizations a token can see (``organizations/``) and their spaces
(``spaces/``). It fails soft: whatever could not be listed keeps its last known answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from exporter.client import ApiError, ApiResponse, UnpodClient
from exporter.config import Config, SpaceConfig
from exporter.gate import RequestGate
from exporter.store import SnapshotStore
from exporter.targets import Discovered
from exporter.tokens import TokenReader

log = logging.getLogger("unpod_exporter.discovery")
ORGS_PATH = "/organizations/"
SPACES_PATH = "/spaces/"


def _items(data: object, what: str) -> list[dict[str, object]]:
    if not isinstance(data, list):
        raise ValueError(f"{what} list is {type(data).__name__}, expected a list")
    return [item for item in data if isinstance(item, dict)]


def parse_orgs(data: object) -> tuple[str, ...]:
    handles = {item.get("domain_handle") for item in _items(data, "organizations")}
    return tuple(sorted(h for h in handles if isinstance(h, str) and h))


def parse_spaces(data: object) -> tuple[SpaceConfig, ...]:
    spaces = {}
    for item in _items(data, "spaces"):
        name, token = item.get("name"), item.get("token")
        if isinstance(name, str) and isinstance(token, str) and name.strip() and token:
            spaces[token] = SpaceConfig(name, token)
    return tuple(sorted(spaces.values(), key=lambda s: (s.name, s.space_token)))


class Discoverer:
    """Lists organizations and spaces with the API token, within its request budget."""

    def __init__(self, *, gate: RequestGate, client: Callable[[], UnpodClient],
                 tokens: TokenReader, store: SnapshotStore) -> None:
        self._gate = gate
        self._client = client
        self._tokens = tokens
        self._store = store
        self.last = Discovered()

    async def _get(self, config: Config, path: str, org: str | None,
                   parse: Callable[[object], object]) -> ApiResponse[object]:
        endpoint = "organizations" if path == ORGS_PATH else "spaces"
        token = self._tokens.get(config.api.token)
        response = await self._gate.send(config.api.token, lambda: self._client().get(
            path, token, org, None, parse, (token,)))
        assert response is not None  # no deadline: it waits for the budget
        self._store.count_request(org or "", response.outcome, response.ratelimit_remaining,
                                  endpoint)
        return response

    async def run(self, config: Config) -> Discovered:
        """One discovery round; returns (and keeps) the merged last known lists."""
        assert config.discovery is not None
        orgs = self.last.orgs
        if config.discovery.orgs is not None:
            response = await self._get(config, ORGS_PATH, None, parse_orgs)
            listed = response.outcome
            if isinstance(listed, ApiError):
                self._failed(config, "orgs", response)
            else:
                assert isinstance(listed, tuple)
                orgs = tuple(h for h in listed if config.discovery.orgs.matches(h))
                self._store.discovery_result("orgs", True)
        configured = {org.handle: org for org in config.orgs}
        candidates = [*configured, *(h for h in orgs or () if h not in configured)]
        spaces = dict(self.last.spaces)
        all_listed = True
        for handle in candidates:
            if config.space_filter(configured.get(handle)) is None:
                spaces.pop(handle, None)
                continue
            response = await self._get(config, SPACES_PATH, handle, parse_spaces)
            listed = response.outcome
            if isinstance(listed, ApiError):
                all_listed = False
                self._failed(config, "spaces", response, handle)
            else:
                assert isinstance(listed, tuple)
                spaces[handle] = listed
        wants_spaces = any(config.space_filter(configured.get(h)) is not None
                           for h in candidates)
        if wants_spaces and all_listed:
            self._store.discovery_result("spaces", True)
        for handle in set(spaces) - set(candidates):
            del spaces[handle]
        self.last = Discovered(orgs, spaces)
        return self.last

    def _failed(self, config: Config, kind: str, response: ApiResponse[object],
                org: str | None = None) -> None:
        error = response.outcome
        assert isinstance(error, ApiError)
        if not self._store.discovery_result(kind, False):
            return  # already failing: logged once
        fields = {"kind": kind, "org": org or "", "reason": error.reason, "error": error.message}
        wanted = refused_scheme(response.auth_challenge, config.api.auth_scheme)
        if wanted is not None:
            log.warning(
                f"the deployment's {kind} list refuses {config.api.auth_scheme} credentials "
                f"(it asks for {wanted}); configured targets keep polling, and spaces can be "
                "listed explicitly under orgs[].spaces (or set api.auth_scheme)",
                extra={"fields": {**fields, "www_authenticate": response.auth_challenge}})
            return
        log.warning("discovery failed, keeping the last known targets", extra={"fields": fields})


def refused_scheme(challenge: str | None, sent: str) -> str | None:
    """The scheme a 401's WWW-Authenticate asks for, when it is not the one sent."""
    if challenge is None or not challenge.split():
        return None
    wanted = challenge.split()[0]
    return None if wanted.casefold() == sent.casefold() else wanted
