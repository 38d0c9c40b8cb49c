"""The ``backlog:`` section: how the backlog scan looks at each space's runs and tasks."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config.fields import ConfigError, at_least, between, boolean, parse_duration
from exporter.config.section import option

MIN_INTERVAL = 1.0  # seconds, as for poll.interval


def scan_interval(value: object, key: str) -> float:
    seconds = parse_duration(value, key)
    if seconds < MIN_INTERVAL:
        raise ConfigError(f"{key}: must be at least 1s, got {value!r}")
    return seconds


@dataclass(frozen=True)
class BacklogConfig:
    # on for every org unless false; orgs[].backlog: false turns it off for one org
    enabled: bool = option(True, boolean)
    # each space's runs are listed at most this often (stretched to the spare budget)
    interval: float = option(600.0, scan_interval)
    # every list request of a scan; never 0, which the platform reads as "everything"
    page_size: int = option(50, between(1, 200))
    # per space and scan, from the runs list's first page on, retries included
    max_requests_per_scan: int = option(20, at_least(1))
