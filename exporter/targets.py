"""What gets polled: one target per organization (org-wide) and per configured space."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.config import Config, TokenSource

ORG_WIDE = ""  # the `space` label value of the org-wide target (i.e. no space label)


@dataclass(frozen=True)
class Target:
    org: str
    space: str  # configured space name, or ORG_WIDE
    space_token: str | None = field(repr=False)
    token: TokenSource
    interval: float  # configured interval, before the request budget stretches it

    @property
    def key(self) -> tuple[str, str]:
        return (self.org, self.space)

    def describe(self) -> str:
        return f"org={self.org} space={self.space or '(org-wide)'}"


def build_targets(config: Config) -> tuple[Target, ...]:
    targets: list[Target] = []
    for org in config.orgs:
        token = config.token_for(org)
        interval = config.interval_for(org)
        if org.org_wide:
            targets.append(Target(org.handle, ORG_WIDE, None, token, interval))
        targets.extend(
            Target(org.handle, space.name, space.space_token, token, interval)
            for space in org.spaces
        )
    return tuple(targets)
