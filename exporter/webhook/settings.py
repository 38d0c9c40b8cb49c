"""The ``webhook:`` section: what the receiver listens on, how it authenticates, and which
space each agent calls for."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.address import split_address

# The config package's own checks, so that every section says the same about the same mistake.
from exporter.config import ConfigError, TokenSource, _mapping

DEFAULT_LISTEN = ":9878"
DEFAULT_PATH = "/webhook"
DEFAULT_HEADER = "X-Unpod-Webhook-Secret"
_HEADER_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # an HTTP token (RFC 9110)
_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]{0,200}")
_AGENT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the name rule: the agent is a label value
_HANDLE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_LABEL_VALUE_RE = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_KEYS = {"listen_address", "path", "secret_env", "secret_file", "secret_header",
         "web_config_file", "agents"}


@dataclass(frozen=True)
class Place:
    """Where an agent calls for: an org and one of its spaces ("" for the org itself)."""

    org: str = ""
    space: str = ""


@dataclass(frozen=True)
class WebhookConfig:
    secret: TokenSource
    listen_address: str = DEFAULT_LISTEN
    path: str = DEFAULT_PATH
    secret_header: str = DEFAULT_HEADER
    web_config_file: str | None = None
    agents: Mapping[str, Place] = field(default_factory=dict)

    @property
    def address(self) -> tuple[str | None, int]:
        return split_address(self.listen_address, "webhook.listen_address")


def _text(raw: Mapping[str, Any], name: str, key: str, default: str,
          pattern: re.Pattern[str]) -> str:
    value = raw.get(name, default)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(f"{key}.{name}: invalid value {value!r}")
    return value


def _secret(raw: Mapping[str, Any], key: str) -> TokenSource:
    given = [name for name in ("secret_env", "secret_file") if name in raw]
    if len(given) != 1:
        raise ConfigError(f"{key}: exactly one of secret_env, secret_file is required")
    value = raw[given[0]]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}.{given[0]}: must be a non-empty string")
    where = f"{key}.{given[0]}"
    if given[0] == "secret_env":
        return TokenSource("token_env", value.strip(), where)
    return TokenSource("token_file", value.strip(), where)


def _agents(value: object, key: str) -> dict[str, Place]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping of agent handles")
    agents: dict[str, Place] = {}
    for handle, item in value.items():
        where = f"{key}.{handle}"
        if not isinstance(handle, str) or not _AGENT_RE.fullmatch(handle):
            raise ConfigError(f"{where}: an agent handle must match [A-Za-z0-9_.-]{{1,64}}")
        raw = _mapping(item, where, {"org", "space"})
        if "org" not in raw:
            raise ConfigError(f"{where}.org: required")
        org = _text(raw, "org", where, "", _HANDLE_RE)
        space = _text(raw, "space", where, "", _LABEL_VALUE_RE) if "space" in raw else ""
        agents[handle] = Place(org, space)
    return agents


def parse_webhook(value: object, key: str = "webhook") -> WebhookConfig | None:
    """The validated section (without reading the secret), None when absent: off."""
    if value is None:
        return None
    raw = _mapping(value, key, _KEYS)
    config = WebhookConfig(
        secret=_secret(raw, key),
        listen_address=_text(raw, "listen_address", key, DEFAULT_LISTEN,
                             re.compile(r"\S{1,300}")),
        path=_text(raw, "path", key, DEFAULT_PATH, _PATH_RE),
        secret_header=_text(raw, "secret_header", key, DEFAULT_HEADER, _HEADER_RE),
        web_config_file=_text(raw, "web_config_file", key, "", re.compile(r".{1,4096}"))
        if "web_config_file" in raw else None,
        agents=_agents(raw.get("agents"), f"{key}.agents"))
    try:
        config.address  # noqa: B018 - validated here, used at start
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return config
