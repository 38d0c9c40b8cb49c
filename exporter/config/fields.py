"""Field parsers: one value and the key it sits at in, the typed value (or ConfigError) out.

Each parser has the shape ``(value, key) -> T`` so that a section's field table can name it
directly; parsers that need a parameter (a minimum, a pattern) are made by a factory. The
messages start with the key at fault, as every config error does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

Parse = Callable[[Any, str], Any]


class ConfigError(Exception):
    """A config problem; the message starts with the key at fault."""


def type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


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
        raise ConfigError(f"{key}: expected a duration such as 30s, got {type_name(value)}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{key}: duration must be greater than zero, got {value!r}")
    return seconds


def string(value: object, key: str) -> str:
    """A non-blank string."""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {type_name(value)}")
    if not value.strip():
        raise ConfigError(f"{key}: must not be empty")
    return value


def matching(pattern: re.Pattern[str]) -> Callable[[object, str], str]:
    """A non-blank string that the whole of ``pattern`` matches."""

    def parse(value: object, key: str) -> str:
        text = string(value, key)
        if not pattern.fullmatch(text):
            raise ConfigError(f"{key}: invalid value {text!r}")
        return text

    return parse


# An org handle (sent as Org-Handle, the ``org`` label) and a configured label value (a
# space's name): the names by which the rest of the config refers to orgs and spaces.
org_handle = matching(re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"))
label_value = matching(re.compile(r"[^\x00-\x1f\x7f]{1,128}"))


def at_least(minimum: int) -> Callable[[object, str], int]:
    """An integer (not a boolean, not a numeric string) of at least ``minimum``."""

    def parse(value: object, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type_name(value)}")
        if value < minimum:
            raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
        return value

    return parse


def between(minimum: int, maximum: int) -> Callable[[object, str], int]:
    """An integer from ``minimum`` to ``maximum``, both included."""
    lower = at_least(minimum)

    def parse(value: object, key: str) -> int:
        number = lower(value, key)
        if number > maximum:
            raise ConfigError(f"{key}: must be at most {maximum}, got {number}")
        return number

    return parse


def boolean(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {type_name(value)}")
    return value


def one_of(choices: tuple[str, ...]) -> Callable[[object, str], str]:
    """One of ``choices``; the case users write is forgiven, the canonical spelling kept."""

    def parse(value: object, key: str) -> str:
        text = string(value, key)
        for choice in choices:
            if text.casefold() == choice.casefold():
                return choice
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {text!r}")

    return parse


def regex(value: object, key: str) -> re.Pattern[str]:
    text = string(value, key)
    try:
        return re.compile(text)
    except re.error as exc:
        raise ConfigError(f"{key}: invalid regular expression: {exc}") from None


def base_url(value: object, key: str) -> str:
    """An http(s) URL without query or fragment; a trailing slash is dropped."""
    url = string(value, key)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: must not carry a query or fragment")
    return url.rstrip("/")


def proxy_url(value: object, key: str) -> str:
    """An http(s) proxy URL; never echoed, since it may carry credentials."""
    url = string(value, key)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http:// or https:// proxy URL")
    return url
