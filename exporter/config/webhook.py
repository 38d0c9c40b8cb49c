"""The ``webhook:`` section: Unpod's per-agent webhooks, off unless given. Where the receiver
listens, how it authenticates (a shared-secret header: the platform signs nothing), and which
org and space each agent calls for."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.address import split_address
from exporter.config.fields import (
    ConfigError,
    label_value,
    matching,
    org_handle,
    string,
    type_name,
)
from exporter.config.section import join, keys, option, parse_section, required
from exporter.config.sources import TokenSource

SECRET_KEYS = ("secret_env", "secret_file")
_HEADER_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # an HTTP token (RFC 9110)
_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]{0,200}")
_AGENT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the name rule: an agent is a label value


@dataclass(frozen=True)
class Place:
    """Where an agent calls for: an org, and one of its spaces ("" for the org itself)."""

    org: str = required(org_handle)
    space: str = option("", label_value)


def _secret(raw: Mapping[str, Any], key: str) -> TokenSource:
    given = [name for name in SECRET_KEYS if name in raw]
    if len(given) != 1:
        raise ConfigError(f"{key}: exactly one of secret_env, secret_file is required")
    where = join(key, given[0])
    value = raw[given[0]]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string")
    if given[0] == "secret_env":
        return TokenSource("token_env", value.strip(), where)
    return TokenSource("token_file", value.strip(), where)


def _address(value: object, key: str) -> str:
    text = string(value, key)
    try:
        split_address(text, key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return text


def _agents(value: object, key: str) -> tuple[tuple[str, Place], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping of agent handles, got {type_name(value)}")
    agents = []
    for handle, item in value.items():
        where = join(key, str(handle))
        if not isinstance(handle, str) or not _AGENT_RE.fullmatch(handle):
            raise ConfigError(f"{where}: an agent handle must match [A-Za-z0-9_.-]{{1,64}}")
        agents.append((handle, parse_section(Place, item, where)))
    return tuple(agents)


@dataclass(frozen=True)
class WebhookConfig:
    # required: _secret raises when neither key is given, so the default is never used
    secret: TokenSource = keys(SECRET_KEYS, _secret,
                               TokenSource("token_env", "UNPOD_WEBHOOK_SECRET",
                                           "webhook.secret_env"))
    listen_address: str = option(":9878", _address)  # a listener of its own
    path: str = option("/webhook", matching(_PATH_RE))
    secret_header: str = option("X-Unpod-Webhook-Secret", matching(_HEADER_RE))
    web_config_file: str | None = option(None, string)  # TLS, exporter-toolkit format
    agents: tuple[tuple[str, Place], ...] = option((), _agents)  # handle -> place

    @property
    def address(self) -> tuple[str | None, int]:
        return split_address(self.listen_address, "webhook.listen_address")

    def places(self) -> dict[str, Place]:
        return dict(self.agents)
