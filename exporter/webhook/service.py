"""The receiver on a listener of its own: Unpod's servers must reach it, while ``/metrics``
should stay internal, so the two never share a port. TLS (and, if wanted, basic auth and
headers) come from an exporter-toolkit web config of its own."""

from __future__ import annotations

import logging

from aiohttp import web

from exporter.config.webhook import WebhookConfig
from exporter.listener import run_web
from exporter.tokens import TokenReader
from exporter.webconfig import WebConfigWatcher, install
from exporter.webconfig.ratelimit import RateLimiter
from exporter.webhook.metrics import WebhookMetrics
from exporter.webhook.receiver import RATE, OnEvent, Receiver
from exporter.webhook.secret import SecretCheck

log = logging.getLogger("unpod_exporter.webhook")

MAX_CONNECTIONS = 128  # Unpod sends one delivery at a time per call or task


class WebhookService:
    """Built from the config at start (raises ConfigError for an unreadable secret or web
    config); ``start()`` binds the listener (raises OSError)."""

    def __init__(self, config: WebhookConfig, tokens: TokenReader,
                 on_event: OnEvent | None = None) -> None:
        self.config = config
        self.metrics = WebhookMetrics(config.places(), forbidden=tokens.known)
        self.web_config = (WebConfigWatcher(config.web_config_file)
                           if config.web_config_file else None)
        own = RateLimiter(RATE)

        def limiter() -> RateLimiter:
            """The web config's rate_limit when it sets one (followed as it changes)."""
            watcher = self.web_config
            return watcher.limiter if watcher is not None and watcher.limiter else own

        self.receiver = Receiver(SecretCheck(config.secret, tokens), config.secret_header,
                                 self.metrics, on_event, limiter=limiter)
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        assert self._runner is not None, "start() first"
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        app = self.receiver.app(self.config.path)
        watcher = self.web_config
        if watcher is not None:
            install(app, watcher, rate_limit=False)  # the receiver answers 429 itself
        host, port = self.config.address
        self._runner = await run_web(app, host, port, watcher if watcher and watcher.tls
                                     else None, max_connections=MAX_CONNECTIONS,
                                     admit=self.receiver.admits)
        log.info("webhook receiver listening", extra={"fields": {
            "address": self.config.listen_address, "path": self.config.path,
            "tls": bool(watcher and watcher.tls), "agents": len(self.config.agents)}})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
