"""Loading and validating the YAML config into frozen, typed objects.

Every error names the key at fault (``orgs[0].spaces[1].name: ...``) so that a user can fix a
config without reading the source. Nothing here talks to the network.
"""

from __future__ import annotations

import math
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml

DEFAULT_CONFIG_PATH = "/etc/unpod-exporter/config.yaml"
DEFAULT_BASE_URL = "https://unpod.ai/api/v2/platform"

T = TypeVar("T")
TokenKind = Literal["token", "token_env", "token_file"]
TOKEN_KINDS: tuple[TokenKind, ...] = ("token", "token_env", "token_file")


class ConfigError(Exception):
    """A config problem; the message starts with the key at fault."""


@dataclass(frozen=True)
class TokenSource:
    """Where an API token comes from. The secret itself is never part of ``repr``."""

    kind: TokenKind
    ref: str = field(repr=False)  # the token itself, an environment variable, or a path
    key: str = field(compare=False)  # config key, for error messages

    def describe(self) -> str:
        if self.kind == "token":
            return "inline token"
        return f"{self.kind} {self.ref}"

    def read(self) -> str:
        """Return the current token; raises ConfigError naming the key when unusable."""
        if self.kind == "token":
            token = self.ref
        elif self.kind == "token_env":
            token = os.environ.get(self.ref, "")
            if not token.strip():
                raise ConfigError(f"{self.key}: environment variable {self.ref} is unset or empty")
        else:
            try:
                token = Path(self.ref).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ConfigError(f"{self.key}: cannot read {self.ref}: {reason}") from None
            if not token.strip():
                raise ConfigError(f"{self.key}: file {self.ref} is empty")
        token = token.strip()
        if not token or any(c.isspace() or not c.isprintable() for c in token):
            raise ConfigError(f"{self.key}: token must be one printable word without spaces")
        return token


@dataclass(frozen=True)
class ApiTlsConfig:
    """How the exporter trusts the upstream API (and proves itself to it)."""

    ca_file: str | None = None  # trusted in addition to the system store
    insecure_skip_verify: bool = False
    cert_file: str | None = None
    key_file: str | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The ``ssl`` argument for aiohttp; raises ConfigError naming the key at fault."""
        if not (self.ca_file or self.cert_file):
            return not self.insecure_skip_verify  # aiohttp's default verification, or none
        context = ssl.create_default_context()
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.ca_file:
            try:
                context.load_verify_locations(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"api.tls.ca_file: cannot use {self.ca_file}: "
                                  f"{_ssl_reason(exc)}") from None
        if self.cert_file:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"api.tls.cert_file: cannot use {self.cert_file} with "
                                  f"{self.key_file or 'its key'}: {_ssl_reason(exc)}") from None
        return context


def _ssl_reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return exc.strerror or type(exc).__name__


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = DEFAULT_BASE_URL
    token: TokenSource = TokenSource("token_env", "UNPOD_API_TOKEN", "api.token_env")
    timeout: float = 10.0
    max_requests_per_minute: int = 60
    max_requests_per_day: int | None = None
    proxy_url: str | None = field(default=None, repr=False)  # may carry credentials
    tls: ApiTlsConfig = ApiTlsConfig()
    auth_scheme: str = "Token"  # the word before the token in Authorization

    def proxy_display(self) -> str:
        """The proxy without its user info, for logs."""
        if not self.proxy_url:
            return "environment (HTTPS_PROXY/HTTP_PROXY/NO_PROXY)"
        parts = urlsplit(self.proxy_url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        return f"{parts.scheme}://{host}"


@dataclass(frozen=True)
class PollConfig:
    interval: float = 60.0
    concurrency: int = 8
    max_staleness: float = 300.0
    change_driven: bool = True  # spaces of an unchanged org are confirmed, not polled
    idle_interval: float = 600.0  # ... until this long after their last poll


@dataclass(frozen=True)
class SpaceConfig:
    name: str
    space_token: str = field(repr=False)


@dataclass(frozen=True)
class NameFilter:
    """Anchored include/exclude regular expressions (exclude wins), as Prometheus matches."""

    include: re.Pattern[str] | None = None
    exclude: re.Pattern[str] | None = None

    def matches(self, name: str) -> bool:
        if self.exclude is not None and self.exclude.fullmatch(name):
            return False
        return self.include is None or self.include.fullmatch(name) is not None


@dataclass(frozen=True)
class DiscoveryConfig:
    interval: float = 600.0
    orgs: NameFilter | None = None  # None: organizations are not discovered
    spaces: NameFilter | None = None  # None: spaces are not discovered (unless per org)


@dataclass(frozen=True)
class OrgConfig:
    handle: str
    token: TokenSource | None = None
    interval: float | None = None
    org_wide: bool = True
    spaces: tuple[SpaceConfig, ...] = ()
    discover_spaces: NameFilter | bool | None = None  # None: as discovery.spaces says


@dataclass(frozen=True)
class Config:
    api: ApiConfig
    poll: PollConfig
    orgs: tuple[OrgConfig, ...]
    discovery: DiscoveryConfig | None = None

    def space_filter(self, org: OrgConfig | None) -> NameFilter | None:
        """The filter for discovering this org's spaces (None: do not discover them)."""
        own = org.discover_spaces if org is not None else None
        if isinstance(own, NameFilter):
            return own
        if own is True:
            return NameFilter()
        if own is False:
            return None
        return self.discovery.spaces if self.discovery else None

    def token_for(self, org: OrgConfig) -> TokenSource:
        return org.token or self.api.token

    def interval_for(self, org: OrgConfig) -> float:
        return org.interval or self.poll.interval


# --- YAML ------------------------------------------------------------------------------------


if TYPE_CHECKING or not getattr(yaml, "__with_libyaml__", False):
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = yaml.CSafeLoader


class _StrictLoader(_SafeLoader):
    """SafeLoader (libyaml's when there: 10,000 targets load 10x faster) that refuses
    duplicate keys, which plain YAML silently overwrites."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            line = key_node.start_mark.line + 1
            raise ConfigError(f"line {line}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate a config file, including its token sources."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"config file {path}: cannot read: {reason}") from None
    return parse_config_text(text, str(path))


def parse_config_text(text: str, source: str = "config") -> Config:
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{source}:{where}: invalid YAML: {problem}") from None
    config = parse_config(raw)
    check_token_sources(config)
    return config


def check_token_sources(config: Config) -> None:
    """Raise ConfigError for the first token source that cannot give a token now."""
    sources = {config.token_for(org) for org in config.orgs}
    if config.discovery is not None:
        sources.add(config.api.token)  # discovered orgs use the api token
    for source in sources:
        source.read()


# --- validation ------------------------------------------------------------------------------

_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_LABEL_VALUE_RE = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_HANDLE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def parse_duration(value: object, key: str) -> float:
    """Prometheus-style duration (``90s``, ``1m30s``, ``500ms``) or a bare number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration such as 30s, got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        match = _DURATION_RE.match(text)
        if text and match:
            parts = zip(match.groups(), _DURATION_UNITS, strict=True)
            seconds = sum(int(g) * unit for g, unit in parts if g)
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise ConfigError(
                    f"{key}: invalid duration {value!r} (use e.g. 500ms, 30s, 5m, 1h)"
                ) from None
    else:
        raise ConfigError(f"{key}: expected a duration such as 30s, got {_type_name(value)}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{key}: duration must be greater than zero, got {value!r}")
    return seconds


def _type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _mapping(value: object, key: str, allowed: set[str]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key or 'config'}: expected a mapping, got {_type_name(value)}")
    for name in value:
        if not isinstance(name, str) or name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise ConfigError(f"{where}: unknown key (allowed: {', '.join(sorted(allowed))})")
    return value


def _list(value: object, key: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list, got {_type_name(value)}")
    return value


def _string(value: object, key: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {_type_name(value)}")
    if not value.strip():
        raise ConfigError(f"{key}: must not be empty")
    if pattern is not None and not pattern.fullmatch(value):
        raise ConfigError(f"{key}: invalid value {value!r}")
    return value


def _integer(value: object, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: expected an integer, got {_type_name(value)}")
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
    return value


def _boolean(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {_type_name(value)}")
    return value


def _optional(
    raw: Mapping[str, Any], name: str, key: str, parse: Callable[[Any, str], T], default: T
) -> T:
    return parse(raw[name], f"{key}.{name}") if name in raw else default


def _token_source(raw: Mapping[str, Any], key: str) -> TokenSource | None:
    given = [kind for kind in TOKEN_KINDS if kind in raw]
    if len(given) > 1:
        raise ConfigError(f"{key}: use only one of token, token_env, token_file (got {given})")
    if not given:
        return None
    kind = given[0]
    where = f"{key}.{kind}" if key else kind
    value = raw[kind]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a non-empty string")
    return TokenSource(kind, value.strip() if kind != "token" else value, where)


def _base_url(value: object, key: str) -> str:
    url = _string(value, key)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: must not carry a query or fragment")
    return url.rstrip("/")


def _proxy_url(value: object, key: str) -> str:
    url = _string(value, key)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http:// or https:// proxy URL")
    return url


def _path(value: object, key: str) -> str:
    return _string(value, key)


def _api_tls(value: object) -> ApiTlsConfig:
    raw = _mapping(value, "api.tls", {"ca_file", "insecure_skip_verify", "cert_file", "key_file"})
    tls = ApiTlsConfig(
        ca_file=_optional(raw, "ca_file", "api.tls", _path, None),
        insecure_skip_verify=_optional(raw, "insecure_skip_verify", "api.tls", _boolean, False),
        cert_file=_optional(raw, "cert_file", "api.tls", _path, None),
        key_file=_optional(raw, "key_file", "api.tls", _path, None),
    )
    if tls.key_file and not tls.cert_file:
        raise ConfigError("api.tls.key_file: given without api.tls.cert_file")
    tls.ssl_context()  # unreadable or mismatched files are config errors, found now
    return tls


AUTH_SCHEMES = ("Token", "JWT", "Bearer")


def _auth_scheme(value: object, key: str) -> str:
    text = _string(value, key)
    for scheme in AUTH_SCHEMES:  # the case users write is forgiven; the API's is sent
        if text.casefold() == scheme.casefold():
            return scheme
    raise ConfigError(f"{key}: expected one of {', '.join(AUTH_SCHEMES)}, got {text!r}")


def _api(value: object) -> ApiConfig:
    raw = _mapping(value, "api", {"base_url", "timeout", "max_requests_per_minute",
                                  "max_requests_per_day", "proxy_url", "tls", "auth_scheme",
                                  *TOKEN_KINDS})
    defaults = ApiConfig()
    return ApiConfig(
        proxy_url=_optional(raw, "proxy_url", "api", _proxy_url, None),
        tls=_api_tls(raw.get("tls")),
        base_url=_optional(raw, "base_url", "api", _base_url, defaults.base_url),
        token=_token_source(raw, "api") or defaults.token,
        timeout=_optional(raw, "timeout", "api", parse_duration, defaults.timeout),
        max_requests_per_minute=_optional(
            raw, "max_requests_per_minute", "api", lambda v, k: _integer(v, k, 0),
            defaults.max_requests_per_minute,
        ),
        max_requests_per_day=_optional(
            raw, "max_requests_per_day", "api", lambda v, k: _integer(v, k, 1), None
        ),
        auth_scheme=_optional(raw, "auth_scheme", "api", _auth_scheme, defaults.auth_scheme),
    )


def _poll(value: object) -> PollConfig:
    raw = _mapping(value, "poll", {"interval", "concurrency", "max_staleness", "change_driven",
                                   "idle_interval"})
    defaults = PollConfig()
    poll = PollConfig(
        change_driven=_optional(raw, "change_driven", "poll", _boolean,
                                defaults.change_driven),
        idle_interval=_optional(raw, "idle_interval", "poll", parse_duration,
                                defaults.idle_interval),
        interval=_optional(raw, "interval", "poll", parse_duration, defaults.interval),
        concurrency=_optional(
            raw, "concurrency", "poll", lambda v, k: _integer(v, k, 1), defaults.concurrency
        ),
        max_staleness=_optional(
            raw, "max_staleness", "poll", parse_duration, defaults.max_staleness
        ),
    )
    if poll.idle_interval < poll.interval:
        raise ConfigError(f"poll.idle_interval: {poll.idle_interval:g}s is below poll.interval "
                          f"({poll.interval:g}s); it must be at least the interval")
    return poll


def _space(value: object, key: str) -> SpaceConfig:
    raw = _mapping(value, key, {"name", "space_token"})
    for required in ("name", "space_token"):
        if required not in raw:
            raise ConfigError(f"{key}.{required}: required")
    return SpaceConfig(
        name=_string(raw["name"], f"{key}.name", _LABEL_VALUE_RE),
        space_token=_string(raw["space_token"], f"{key}.space_token"),
    )


def _regex(value: object, key: str) -> re.Pattern[str]:
    text = _string(value, key)
    try:
        return re.compile(text)
    except re.error as exc:
        raise ConfigError(f"{key}: invalid regular expression: {exc}") from None


def _name_filter(value: object, key: str) -> NameFilter | bool:
    """``true``/``false``, or ``{include: REGEX, exclude: REGEX}``."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected true, false or {{include, exclude}}, "
                          f"got {_type_name(value)}")
    raw = _mapping(value, key, {"include", "exclude"})
    return NameFilter(include=_optional(raw, "include", key, _regex, None),
                      exclude=_optional(raw, "exclude", key, _regex, None))


def _as_filter(value: NameFilter | bool) -> NameFilter | None:
    if isinstance(value, NameFilter):
        return value
    return NameFilter() if value else None


def _discovery(value: object) -> DiscoveryConfig | None:
    if value is None:
        return None
    raw = _mapping(value, "discovery", {"interval", "orgs", "spaces"})
    return DiscoveryConfig(
        interval=_optional(raw, "interval", "discovery", parse_duration, 600.0),
        orgs=_as_filter(_name_filter(raw.get("orgs", False), "discovery.orgs")),
        spaces=_as_filter(_name_filter(raw.get("spaces", False), "discovery.spaces")),
    )


def _org(value: object, key: str, poll: PollConfig) -> OrgConfig:
    raw = _mapping(value, key, {"handle", "interval", "org_wide", "spaces", "discover_spaces",
                                *TOKEN_KINDS})
    if "handle" not in raw:
        raise ConfigError(f"{key}.handle: required")
    spaces: list[SpaceConfig] = []
    names: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for index, item in enumerate(_list(raw.get("spaces"), f"{key}.spaces")):
        space_key = f"{key}.spaces[{index}]"
        space = _space(item, space_key)
        if space.name in names:
            raise ConfigError(
                f"{space_key}.name: duplicate space name {space.name!r} "
                f"(also {key}.spaces[{names[space.name]}])"
            )
        if space.space_token in tokens:
            raise ConfigError(
                f"{space_key}.space_token: same space_token as "
                f"{key}.spaces[{tokens[space.space_token]}]"
            )
        names[space.name] = index
        tokens[space.space_token] = index
        spaces.append(space)
    org = OrgConfig(
        handle=_string(raw["handle"], f"{key}.handle", _HANDLE_RE),
        token=_token_source(raw, key),
        interval=_optional(raw, "interval", key, parse_duration, None),
        org_wide=_optional(raw, "org_wide", key, _boolean, True),
        spaces=tuple(spaces),
        discover_spaces=_optional(raw, "discover_spaces", key, _name_filter, None),
    )
    if org.interval is not None and org.interval > poll.idle_interval:
        raise ConfigError(
            f"{key}.interval: {org.interval:g}s exceeds poll.idle_interval "
            f"({poll.idle_interval:g}s); the idle interval must be at least the interval"
        )
    if org.interval is not None and org.interval > poll.max_staleness:
        raise ConfigError(
            f"{key}.interval: {org.interval:g}s exceeds poll.max_staleness "
            f"({poll.max_staleness:g}s); its series would vanish between polls"
        )
    if not org.org_wide and not org.spaces and not org.discover_spaces:
        raise ConfigError(f"{key}: org_wide is false and no spaces are listed: nothing to poll")
    return org


def parse_config(raw: object) -> Config:
    """Validate an already-parsed YAML document (without reading token sources)."""
    top = _mapping(raw, "", {"api", "poll", "orgs", "discovery"})
    api = _api(top.get("api"))
    poll = _poll(top.get("poll"))
    discovery = _discovery(top.get("discovery"))
    discovers_orgs = discovery is not None and discovery.orgs is not None
    if "orgs" not in top and not discovers_orgs:
        raise ConfigError("orgs: required (a list of organizations to poll)")
    orgs: list[OrgConfig] = []
    handles: dict[str, int] = {}
    for index, item in enumerate(_list(top.get("orgs"), "orgs")):
        org = _org(item, f"orgs[{index}]", poll)
        if org.handle in handles:
            raise ConfigError(
                f"orgs[{index}].handle: duplicate org handle {org.handle!r} "
                f"(also orgs[{handles[org.handle]}])"
            )
        handles[org.handle] = index
        orgs.append(org)
        if org.interval is None and poll.interval > poll.max_staleness:
            raise ConfigError(
                f"poll.interval: {poll.interval:g}s (used by orgs[{index}]) exceeds "
                f"poll.max_staleness ({poll.max_staleness:g}s); series would vanish between polls"
            )
    if not orgs and not discovers_orgs:
        raise ConfigError("orgs: at least one organization is required "
                          "(or discovery.orgs: true)")
    return Config(api=api, poll=poll, orgs=tuple(orgs), discovery=discovery)
