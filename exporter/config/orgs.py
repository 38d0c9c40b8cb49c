"""The ``orgs:`` list: each organization polled, and the spaces listed under it."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config.discovery import NameFilter, name_filter
from exporter.config.fields import boolean, label_value, org_handle, parse_duration, string
from exporter.config.section import keys, list_of, option, required
from exporter.config.sources import TOKEN_KINDS, TokenSource, token_source


@dataclass(frozen=True, slots=True)  # one per space: 45,000 at 50,000 targets
class SpaceConfig:
    name: str = required(label_value)  # the ``space`` label
    space_token: str = required(string, shown=False)


@dataclass(frozen=True)
class OrgConfig:
    handle: str = required(org_handle)  # sent as Org-Handle; the ``org`` label
    token: TokenSource | None = keys(TOKEN_KINDS, token_source, None)  # None: api's token
    interval: float | None = option(None, parse_duration)  # None: poll.interval
    org_wide: bool = option(True, boolean)
    spaces: tuple[SpaceConfig, ...] = option((), list_of(SpaceConfig))
    # None: as discovery.spaces says
    discover_spaces: NameFilter | bool | None = option(None, name_filter)
    backlog: bool = option(True, boolean)  # false: no backlog scan of this org's spaces
