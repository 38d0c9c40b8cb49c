"""The ``discovery:`` section, and the include/exclude filters it and ``orgs[]`` use."""

from __future__ import annotations

import re
from dataclasses import dataclass

from exporter.config.fields import ConfigError, parse_duration, regex, type_name
from exporter.config.section import option, parse_section


@dataclass(frozen=True)
class NameFilter:
    """Anchored include/exclude regular expressions (exclude wins), as Prometheus matches."""

    include: re.Pattern[str] | None = option(None, regex)
    exclude: re.Pattern[str] | None = option(None, regex)

    def matches(self, name: str) -> bool:
        if self.exclude is not None and self.exclude.fullmatch(name):
            return False
        return self.include is None or self.include.fullmatch(name) is not None


def name_filter(value: object, key: str) -> NameFilter | bool:
    """``true``/``false``, or ``{include: REGEX, exclude: REGEX}``."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected true, false or {{include, exclude}}, "
                          f"got {type_name(value)}")
    return parse_section(NameFilter, value, key)


def filter_or_off(value: object, key: str) -> NameFilter | None:
    """A filter where ``true`` is "everything" and ``false`` is None ("not discovered")."""
    parsed = name_filter(value, key)
    if isinstance(parsed, NameFilter):
        return parsed
    return NameFilter() if parsed else None


@dataclass(frozen=True)
class DiscoveryConfig:
    interval: float = option(600.0, parse_duration)
    orgs: NameFilter | None = option(None, filter_or_off)  # None: orgs are not discovered
    # None: spaces are not discovered (unless per org)
    spaces: NameFilter | None = option(None, filter_or_off)
