"""The shared secret of the webhook: the platform signs nothing, so a static header Unpod's
dashboard adds to each delivery is all the authentication there is."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from exporter.config import TokenSource
from exporter.tokens import TokenReader

RECHECK = 1.0  # seconds between two looks at the secret's file (one stat each)


class SecretCheck:
    """Compares a header with the current secret in constant time: both sides are reduced
    to a keyed digest first, so neither the secret's content nor its length leaks through
    timing. The secret file is re-read when it changes (TokenReader); a file that breaks
    later keeps the last good secret."""

    def __init__(self, source: TokenSource, reader: TokenReader,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._reader = reader
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._checked = -RECHECK
        self._expected = b""
        self._refresh()  # raises ConfigError when no secret can be read at all

    def _mac(self, value: bytes) -> bytes:
        return hmac.new(self._key, value, hashlib.sha256).digest()

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked >= RECHECK:
            self._checked = now
            self._expected = self._mac(self._reader.get(self._source).encode())

    def matches(self, given: str | None) -> bool:
        self._refresh()
        if given is None:
            return False
        return hmac.compare_digest(self._mac(given.encode("utf-8", "surrogateescape")),
                                   self._expected)
