"""The discovery loop alone: a real Discoverer through a real gate against the fake API."""

from __future__ import annotations

import asyncio

import aiohttp

from exporter.clients import ApiClients
from exporter.config import parse_config_text
from exporter.discovery import Discoverer
from exporter.discovery_loop import DiscoveryLoop
from exporter.gate import RequestGate
from exporter.store import SnapshotStore
from exporter.targets import Discovered
from exporter.tokens import TokenReader
from tests.conftest import config_yaml, wait_for
from tests.fakeapi import Fault
from tests.test_discovery import discovery_config


async def started(session: aiohttp.ClientSession, base: str,
                  found: list[Discovered]) -> DiscoveryLoop:
    """A loop of 100 ms rounds listing organizations, after its first round."""
    config = parse_config_text(discovery_config(base, {"interval": "100ms", "orgs": True}))
    clients = ApiClients(session)
    clients.use(config)
    discoverer = Discoverer(gate=RequestGate(concurrency=2), client=clients.analytics,
                            tokens=TokenReader(), store=SnapshotStore(60.0))
    loop = DiscoveryLoop(discoverer, found.append, pending=True)
    assert loop.pending and not found
    loop.restart(config)
    await wait_for(lambda: len(found) >= 1, 3, "a first discovery round")
    assert not loop.pending
    return loop


async def test_rounds_repeat_hand_on_their_lists_and_stop_with_a_config_without_discovery(
        fake_api):
    fake, base = fake_api
    fake.set_analytics("acme")
    found: list[Discovered] = []
    async with aiohttp.ClientSession() as session:
        loop = await started(session, base, found)
        await wait_for(lambda: len(found) >= 3, 3, "three discovery rounds")
        assert found[-1].orgs == ("acme",) and loop.last == found[-1]
        loop.restart(parse_config_text(config_yaml(base, [{"handle": "acme"}])))
        await asyncio.sleep(0)  # the cancelled round ends
        rounds, requests = len(found), len(fake.list_requests)
        await asyncio.sleep(0.3)  # three intervals
        assert (len(found), len(fake.list_requests)) == (rounds, requests)
        await loop.stop()


async def test_a_failed_round_keeps_the_last_lists(fake_api):
    fake, base = fake_api
    fake.set_analytics("acme")
    found: list[Discovered] = []
    async with aiohttp.ClientSession() as session:
        loop = await started(session, base, found)
        fake.set_analytics("globex")
        fake.list_faults["organizations"] = Fault(500, b"oops")
        seen = len(found)
        await wait_for(lambda: len(found) >= seen + 2, 3, "rounds while failing")
        assert found[-1].orgs == ("acme",)  # the last known list, not an empty one
        await loop.stop()
