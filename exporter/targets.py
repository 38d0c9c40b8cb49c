"""What gets polled: the org-wide view of each organization and its spaces, configured or
discovered, restricted to this shard."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from exporter.config import Config, NameFilter, OrgConfig, SpaceConfig, TokenSource
from exporter.sharding import Shard

ORG_WIDE = ""  # the `space` label value of the org-wide target (i.e. no space label)


class TargetKey(NamedTuple):
    """A target's identity: its state survives a reload while this stays the same."""

    org: str
    space: str  # ORG_WIDE for the org-wide target


@dataclass(frozen=True, slots=True)
class Target:
    org: str
    space: str  # configured space name, or ORG_WIDE
    space_token: str | None = field(repr=False)
    token: TokenSource
    interval: float  # configured interval, before the request budget stretches it
    # Built once: the store, scheduler, poller, freshness and exposition key their tables by
    # it, and a tuple made per lookup was kept as a key of each (436,000 tuples, 27 MiB, at
    # 50,000 targets).
    key: TargetKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", TargetKey(self.org, self.space))

    def describe(self) -> str:
        return f"org={self.org} space={self.space or '(org-wide)'}"


@dataclass(frozen=True)
class Discovered:
    """Discovery's last known lists; ``orgs`` is None until organizations were listed once."""

    orgs: tuple[str, ...] | None = None
    spaces: dict[str, tuple[SpaceConfig, ...]] = field(default_factory=dict)


def _space_label(name: str) -> str | None:
    label = " ".join(name.split())[:128]
    return label if label and label.isprintable() else None


def discovered_spaces(configured: tuple[SpaceConfig, ...], found: tuple[SpaceConfig, ...],
                      name_filter: NameFilter) -> list[tuple[str, str]]:
    """(label, space token) of the discovered spaces to poll beside the configured ones.

    A space whose token is configured is dropped (configuration wins); every space of a name
    used more than once (configured or discovered) gets ``name~HASH`` from its token's hash,
    so the labels do not depend on the order of the API's list.
    """
    tokens = {space.space_token for space in configured}
    kept = [(label, s.space_token) for s in found
            if s.space_token not in tokens and (label := _space_label(s.name)) is not None
            and name_filter.matches(s.name)]
    counts = Counter([space.name for space in configured] + [label for label, _ in kept])
    return [(f"{label}~{hashlib.sha256(token.encode()).hexdigest()[:4]}"
             if counts[label] > 1 else label, token) for label, token in kept]


def build_targets(config: Config, discovered: Discovered | None = None,
                  shard: Shard | None = None) -> tuple[Target, ...]:
    """Configured targets, then discovered ones; only this shard's."""
    found = discovered or Discovered()
    shard = shard or Shard()
    configured = {org.handle: org for org in config.orgs}
    orgs = [*config.orgs, *(OrgConfig(handle) for handle in found.orgs or ()
                            if handle not in configured)]
    targets: list[Target] = []
    for org in orgs:
        token = config.token_for(org)
        interval = config.interval_for(org)
        if org.org_wide:
            targets.append(Target(org.handle, ORG_WIDE, None, token, interval))
        spaces = [(space.name, space.space_token) for space in org.spaces]
        name_filter = config.space_filter(configured.get(org.handle))
        if name_filter is not None:
            spaces += discovered_spaces(org.spaces, found.spaces.get(org.handle, ()),
                                        name_filter)
        targets.extend(Target(org.handle, label, space_token, token, interval)
                       for label, space_token in spaces)
    return tuple(t for t in targets if shard.owns(t.org, t.space))
