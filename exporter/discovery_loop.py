"""The discovery loop: one round of ``Discoverer.run`` every discovery interval, in a task of
its own, each round's lists handed on to whoever applies them (the exporter's wiring). Listing
itself (requests, parsing, failing soft) is ``exporter.discovery``'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from exporter.config import Config
from exporter.discovery import Discoverer
from exporter.targets import Discovered

log = logging.getLogger("unpod_exporter")


class DiscoveryLoop:
    """Re-reads the organization and space lists every ``config.discovery.interval``."""

    def __init__(self, discoverer: Discoverer, found: Callable[[Discovered], None], *,
                 pending: bool) -> None:
        self._discoverer = discoverer
        self._found = found
        self._task: asyncio.Task[None] | None = None
        # True until the first round ends: readiness waits for it (a reload that adds
        # discovery does not make a ready exporter unready again).
        self.pending = pending
        self.last = Discovered()

    def restart(self, config: Config) -> None:
        """Start over with this config (at start and on every reload): the round under way,
        if any, is cancelled; no loop when the config has no discovery section."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if config.discovery is not None:
            self._task = asyncio.create_task(self._run(config), name="discovery")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self, config: Config) -> None:
        discovery = config.discovery
        assert discovery is not None
        while True:
            try:
                self.last = await self._discoverer.run(config)
            except Exception:  # a bug must not stop discovery for good
                log.exception("discovery crashed; keeping the last known targets")
            self.pending = False
            self._found(self.last)
            await asyncio.sleep(discovery.interval)
