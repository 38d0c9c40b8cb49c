"""Named cross-checks: rules that relate keys, run once the whole document has its shape.

Each check is a function of the parsed config (and of the top-level keys the file gave, for
"required unless" rules) that raises ConfigError naming the key at fault. They run in the
order of ``CHECKS``; a section added later appends its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from exporter.config.fields import ConfigError
from exporter.config.model import Config
from exporter.config.orgs import OrgConfig

Check = Callable[[Config, frozenset[str]], None]


def _orgs(config: Config) -> Iterator[tuple[str, OrgConfig]]:
    for index, org in enumerate(config.orgs):
        yield f"orgs[{index}]", org


def tls_key_needs_cert(config: Config, given: frozenset[str]) -> None:
    tls = config.api.tls
    if tls.key_file and not tls.cert_file:
        raise ConfigError("api.tls.key_file: given without api.tls.cert_file")


def idle_interval_not_below_interval(config: Config, given: frozenset[str]) -> None:
    poll = config.poll
    if poll.idle_interval < poll.interval:
        raise ConfigError(f"poll.idle_interval: {poll.idle_interval:g}s is below poll.interval "
                          f"({poll.interval:g}s); it must be at least the interval")


def orgs_listed(config: Config, given: frozenset[str]) -> None:
    """Organizations come from ``orgs`` or from discovery; one of them must give some."""
    if config.discovers_orgs():
        return
    if "orgs" not in given:
        raise ConfigError("orgs: required (a list of organizations to poll)")
    if not config.orgs:
        raise ConfigError("orgs: at least one organization is required "
                          "(or discovery.orgs: true)")


def org_handles_unique(config: Config, given: frozenset[str]) -> None:
    first: dict[str, int] = {}
    for index, org in enumerate(config.orgs):
        if org.handle in first:
            raise ConfigError(f"orgs[{index}].handle: duplicate org handle {org.handle!r} "
                              f"(also orgs[{first[org.handle]}])")
        first[org.handle] = index


def spaces_unique(config: Config, given: frozenset[str]) -> None:
    """Within an org, no two spaces share a name (the label) or a space token."""
    for key, org in _orgs(config):
        names: dict[str, int] = {}
        tokens: dict[str, int] = {}
        for index, space in enumerate(org.spaces):
            if space.name in names:
                raise ConfigError(f"{key}.spaces[{index}].name: duplicate space name "
                                  f"{space.name!r} (also {key}.spaces[{names[space.name]}])")
            if space.space_token in tokens:
                raise ConfigError(f"{key}.spaces[{index}].space_token: same space_token as "
                                  f"{key}.spaces[{tokens[space.space_token]}]")
            names.setdefault(space.name, index)
            tokens.setdefault(space.space_token, index)


def org_intervals_fit(config: Config, given: frozenset[str]) -> None:
    """An org's own interval is at most the idle interval and the staleness limit."""
    poll = config.poll
    for key, org in _orgs(config):
        if org.interval is None:
            continue
        if org.interval > poll.idle_interval:
            raise ConfigError(
                f"{key}.interval: {org.interval:g}s exceeds poll.idle_interval "
                f"({poll.idle_interval:g}s); the idle interval must be at least the interval")
        if org.interval > poll.max_staleness:
            raise ConfigError(
                f"{key}.interval: {org.interval:g}s exceeds poll.max_staleness "
                f"({poll.max_staleness:g}s); its series would vanish between polls")


def poll_interval_fits(config: Config, given: frozenset[str]) -> None:
    """``poll.interval`` within the staleness limit, where an org uses it."""
    poll = config.poll
    for key, org in _orgs(config):
        if org.interval is None and poll.interval > poll.max_staleness:
            raise ConfigError(
                f"poll.interval: {poll.interval:g}s (used by {key}) exceeds "
                f"poll.max_staleness ({poll.max_staleness:g}s); series would vanish between polls")


def orgs_poll_something(config: Config, given: frozenset[str]) -> None:
    for key, org in _orgs(config):
        if not org.org_wide and not org.spaces and not org.discover_spaces:
            raise ConfigError(f"{key}: org_wide is false and no spaces are listed: "
                              "nothing to poll")


CHECKS: tuple[Check, ...] = (
    tls_key_needs_cert,
    idle_interval_not_below_interval,
    orgs_listed,
    org_handles_unique,
    spaces_unique,
    org_intervals_fit,
    poll_interval_fits,
    orgs_poll_something,
)


def run_checks(config: Config, given: frozenset[str]) -> None:
    for check in CHECKS:
        check(config, given)
