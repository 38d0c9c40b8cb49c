"""The reloader alone: a config file read again, refused whole when invalid, adopted when
valid, with the reload metrics' state in a real store."""

from __future__ import annotations

import aiohttp

from exporter.budget import AuthBackoff
from exporter.client import ApiError
from exporter.clients import ApiClients
from exporter.config import Config, load_config
from exporter.discovery import Discoverer
from exporter.discovery_loop import DiscoveryLoop
from exporter.gate import RequestGate
from exporter.reasons import Reason
from exporter.reload import Reloader
from exporter.store import SnapshotStore
from exporter.tokens import TokenReader
from tests.conftest import config_yaml, wait_for
from tests.test_discovery import discovery_config


async def test_an_invalid_config_is_refused_whole_and_a_valid_one_adopted(fake_api, tmp_path):
    fake, base = fake_api
    fake.set_analytics("acme")
    path = tmp_path / "config.yml"
    path.write_text(config_yaml(base, [{"handle": "acme"}]))
    running = load_config(path)
    store, gate, backoff = SnapshotStore(60.0), RequestGate(concurrency=2), AuthBackoff()
    token = running.api.token
    backoff.failed("acme", token, ApiError(Reason.UNAUTHORIZED, "401"), 60.0)
    adopted: list[Config] = []
    async with aiohttp.ClientSession() as session:
        clients = ApiClients(session)
        clients.use(running)
        discovery = DiscoveryLoop(Discoverer(gate=gate, client=clients.analytics,
                                             tokens=TokenReader(), store=store),
                                  lambda _: None, pending=False)
        reloader = Reloader(load=lambda: load_config(path), clients=clients, gate=gate,
                            auth_backoff=backoff, discovery=discovery, store=store,
                            adopt=adopted.append)

        path.write_text(config_yaml(base, [{"handle": "acme"}], interval="-1s"))
        error = reloader.reload(running)
        assert error is not None and error.startswith("poll.interval:")
        assert (adopted, store.reload_successful) == ([], False)
        assert backoff.blocked("acme", token) is not None  # nothing applied

        path.write_text(discovery_config(base, {"orgs": True}, [{"handle": "acme"}]))
        assert reloader.reload(running) is None
        assert store.reload_successful and len(adopted) == 1
        assert adopted[0].discovery is not None
        assert backoff.blocked("acme", token) is None  # new credentials get their chance
        await wait_for(lambda: ("organizations", None) in fake.list_requests, 3,
                       "discovery restarted with the new config")
        await discovery.stop()
