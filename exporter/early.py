"""A SIGHUP before the exporter has started: kept, not fatal.

``systemctl reload`` right after ``start`` sends SIGHUP while the interpreter imports and the
config loads (seconds for a large one); its default action would end the process. This module
imports nothing heavy, so that the entry point installs the handler before everything else.
"""

from __future__ import annotations

import signal
from types import FrameType


class EarlyReload:
    """Remembers a SIGHUP until the exporter has started and installs its own handler; then
    the config is read again once."""

    def __init__(self) -> None:
        self.asked = False

    @classmethod
    def installed(cls) -> EarlyReload:
        early = cls()
        early.install()
        return early

    def install(self) -> None:
        signal.signal(signal.SIGHUP, self._ask)

    def _ask(self, signum: int, frame: FrameType | None) -> None:
        self.asked = True
