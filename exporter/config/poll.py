"""The ``poll:`` section: how often targets are polled and how long figures stay."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config.fields import at_least, boolean, parse_duration
from exporter.config.section import option


@dataclass(frozen=True)
class PollConfig:
    interval: float = option(60.0, parse_duration)
    concurrency: int = option(8, at_least(1))
    max_staleness: float = option(300.0, parse_duration)
    # spaces of an unchanged org are confirmed, not polled ...
    change_driven: bool = option(True, boolean)
    # ... until this long after their last poll
    idle_interval: float = option(600.0, parse_duration)
