"""Config reload (SIGHUP, ``/-/reload``): read the config again, validate it, apply it only
if valid, and record the outcome in the reload metrics. A config that fails keeps the running
one, whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from exporter.budget import AuthBackoff
from exporter.clients import ApiClients
from exporter.config import Config, ConfigError
from exporter.discovery_loop import DiscoveryLoop
from exporter.gate import RequestGate
from exporter.store import SnapshotStore

log = logging.getLogger("unpod_exporter")


class Reloader:
    """Replaces the running config with a newly read one, when it is valid.

    ``adopt`` is the wiring's one place that points the parts at a config (targets, plan);
    what only a reload changes (API clients, concurrency, auth back-off, the discovery loop,
    the reload metrics) is done here."""

    def __init__(self, *, load: Callable[[], Config], clients: ApiClients, gate: RequestGate,
                 auth_backoff: AuthBackoff, discovery: DiscoveryLoop, store: SnapshotStore,
                 adopt: Callable[[Config], None]) -> None:
        self._load = load
        self._clients = clients
        self._gate = gate
        self._auth_backoff = auth_backoff
        self._discovery = discovery
        self._store = store
        self._adopt = adopt

    def reload(self, running: Config) -> str | None:
        """Re-read the config; apply it only if valid. Returns the error text, or None."""
        try:
            config = self._load()
            self._clients.use(config)  # CA files may be new
        except ConfigError as exc:
            self._store.mark_reload(False)
            log.error("config reload failed, keeping the running config",
                      extra={"fields": {"error": str(exc)}})
            return str(exc)
        if config.webhook != running.webhook:
            log.warning("the webhook section changed: it applies at the next restart")
        if config.poll.concurrency != running.poll.concurrency:
            self._gate.set_concurrency(config.poll.concurrency)
        self._auth_backoff.reset()  # new credentials get their chance at once
        self._adopt(config)
        self._discovery.restart(config)
        self._store.mark_reload(True)
        log.info("config reloaded", extra={"fields": {"targets": len(self._store.states())}})
        return None
