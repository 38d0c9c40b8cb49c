"""Discovery against the fake API's organizations/ and spaces/ lists."""

from __future__ import annotations

import hashlib
import logging

import pytest
import yaml

from exporter.config import ConfigError, parse_config_text
from tests.conftest import TOKEN, wait_for
from tests.fakeapi import Fault


def discovery_config(base: str, discovery: dict, orgs: list | None = None, **poll) -> str:
    doc = {"api": {"base_url": base, "token": TOKEN, "timeout": "2s",
                   "max_requests_per_minute": 0},
           "poll": {"interval": "60s", **poll}, "discovery": discovery}
    if orgs is not None:
        doc["orgs"] = orgs
    return yaml.safe_dump(doc)


def labels(m, name="unpod_up") -> set[tuple[str, str]]:
    return {(dict(lab)["org"], dict(lab).get("space", "")) for (n, lab) in m if n == name}


def suffix(name: str, token: str) -> str:
    return f"{name}~{hashlib.sha256(token.encode()).hexdigest()[:4]}"


async def test_orgs_and_spaces_are_discovered_with_filters(fake_api, start_exporter):
    fake, base = fake_api
    for org in ("acme", "acme-test", "globex", "initech"):
        fake.set_analytics(org)
    fake.add_space("acme", "Sales", "t1")
    fake.add_space("acme", "Sales", "t2")  # same name twice: both get a suffix
    fake.add_space("acme", "test-dry-run", "t3")
    fake.add_space("acme", "Renewals", "t4")
    fake.add_space("globex", "Renewals", "t5")
    running = await start_exporter(discovery_config(
        base, {"orgs": {"include": "acme.*|globex", "exclude": ".*-test"},
               "spaces": {"exclude": "test-.*"}}))
    await running.wait_ready()
    m = await running.metrics()
    assert labels(m) == {("acme", ""), ("globex", ""), ("acme", suffix("Sales", "t1")),
                         ("acme", suffix("Sales", "t2")), ("acme", "Renewals"),
                         ("globex", "Renewals")}
    assert m[("unpod_exporter_discovery_success", frozenset({("kind", "orgs")}))] == 1
    assert m[("unpod_exporter_discovery_success", frozenset({("kind", "spaces")}))] == 1
    assert ("unpod_exporter_discovery_last_success_timestamp_seconds",
            frozenset({("kind", "orgs")})) in m
    assert m[("unpod_exporter_targets", frozenset())] == 6
    assert ("acme-test", None) not in {(r.org, r.space_token) for r in fake.requests}


async def test_explicit_config_wins_over_discovery(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.add_space("acme", "Outbound", "t1")  # configured under another name: dropped
    fake.add_space("acme", "Sales", "t2")  # its name is configured for another token
    fake.set_analytics("acme", "t9")
    orgs = [{"handle": "acme", "interval": "30s",
             "spaces": [{"name": "outbound", "space_token": "t1"},
                        {"name": "Sales", "space_token": "t9"}]}]
    running = await start_exporter(discovery_config(base, {"orgs": True, "spaces": True},
                                                    orgs))
    await running.wait_ready()
    m = await running.metrics()
    assert labels(m) == {("acme", ""), ("acme", "outbound"), ("acme", "Sales"),
                         ("acme", suffix("Sales", "t2"))}
    assert m[("unpod_exporter_poll_interval_seconds", frozenset({("org", "acme")}))] == 30


async def test_per_org_discover_spaces_overrides(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.set_analytics("globex")
    fake.add_space("acme", "A", "ta")
    fake.add_space("globex", "G", "tg")
    orgs = [{"handle": "acme", "discover_spaces": True}, {"handle": "globex"}]
    running = await start_exporter(discovery_config(base, {"spaces": False}, orgs))
    await running.wait_ready()
    assert labels(await running.metrics()) == {("acme", ""), ("acme", "A"), ("globex", "")}
    assert ("spaces", "globex") not in fake.list_requests


async def test_discovery_failure_keeps_targets_and_refresh_finds_new_ones(
        fake_api, start_exporter, caplog):
    fake, base = fake_api
    fake.set_analytics("acme")
    caplog.set_level(logging.WARNING)
    running = await start_exporter(discovery_config(
        base, {"interval": "300ms", "orgs": True}, interval="200ms", max_staleness="1m"))
    await running.wait_ready()
    assert labels(await running.metrics()) == {("acme", "")}
    fake.list_faults["organizations"] = Fault(500, b"<html>oops</html>")
    fake.set_analytics("globex")  # appears, but discovery is failing

    async def failed() -> bool:
        m = await running.metrics()
        return m.get(("unpod_exporter_discovery_success", frozenset({("kind", "orgs")}))) == 0
    await wait_for(failed, 3, "discovery failure to show")
    polls = fake.count("acme")
    await wait_for(lambda: fake.count("acme") > polls + 2, 3, "acme still polled")
    assert labels(await running.metrics()) == {("acme", "")}
    failures = [r for r in caplog.records if r.getMessage().startswith("discovery failed")]
    assert len(failures) == 1 and failures[0].fields["reason"] == "server_error"

    del fake.list_faults["organizations"]

    async def found() -> bool:
        return labels(await running.metrics()) == {("acme", ""), ("globex", "")}
    await wait_for(found, 3, "globex discovered after recovery")


async def test_readiness_waits_for_the_first_discovery(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.list_faults["organizations"] = Fault(200, b"{}", delay=1.0)
    running = await start_exporter(discovery_config(base, {"orgs": True}))
    assert (await running.client.get("/-/ready")).status == 503
    await running.wait_ready(timeout=5)  # ready once discovery answered (here: a bad body)
    assert fake.list_requests[0] == ("organizations", None)


@pytest.mark.parametrize("discovery, message", [
    ({"orgs": {"include": "("}}, r"discovery\.orgs\.include: invalid regular expression"),
    ({"orgs": "yes"}, r"discovery\.orgs: expected true, false"),
    ({"orgs": {"only": "x"}}, r"discovery\.orgs\.only: unknown key"),
    ({"interval": "soon"}, r"discovery\.interval: invalid duration"),
])
def test_discovery_config_errors(discovery, message):
    with pytest.raises(ConfigError, match=message):
        parse_config_text(discovery_config("http://x", discovery))


def test_orgs_may_be_omitted_only_with_org_discovery():
    assert parse_config_text(discovery_config("http://x", {"orgs": True})).orgs == ()
    with pytest.raises(ConfigError, match="orgs: required"):
        parse_config_text(discovery_config("http://x", {"spaces": True}))
