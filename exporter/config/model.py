"""The root section: the list of sections a config file has, and the lookups across them."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config.api import ApiConfig
from exporter.config.backlog import BacklogConfig
from exporter.config.discovery import DiscoveryConfig, NameFilter
from exporter.config.orgs import OrgConfig
from exporter.config.poll import PollConfig
from exporter.config.section import list_of, option, optional_section, section
from exporter.config.sources import TokenSource
from exporter.config.webhook import WebhookConfig


@dataclass(frozen=True)
class Config:
    """The whole file. Each field is a top-level key; a new section is one more line here
    (with a default, after the others, so that positional construction keeps working)."""

    api: ApiConfig = option(ApiConfig(), section(ApiConfig))
    poll: PollConfig = option(PollConfig(), section(PollConfig))
    orgs: tuple[OrgConfig, ...] = option((), list_of(OrgConfig))
    discovery: DiscoveryConfig | None = option(None, optional_section(DiscoveryConfig))
    backlog: BacklogConfig = option(BacklogConfig(), section(BacklogConfig))
    webhook: WebhookConfig | None = option(None, optional_section(WebhookConfig))

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

    def scans_backlog(self, org: OrgConfig | None) -> bool:
        """Whether the backlog scan covers this org's spaces (None: a discovered org)."""
        return self.backlog.enabled and (org is None or org.backlog)

    def discovers_orgs(self) -> bool:
        return self.discovery is not None and self.discovery.orgs is not None
