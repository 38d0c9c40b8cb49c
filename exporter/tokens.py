"""Current API tokens, re-read when their source changes and cached otherwise."""

from __future__ import annotations

import logging
import os

from exporter.config import ConfigError, TokenSource
from exporter.files import file_version

log = logging.getLogger("unpod_exporter.tokens")


class TokenReader:
    """Reads token sources; a source that breaks later keeps its last good token."""

    def __init__(self) -> None:
        self._cache: dict[TokenSource, tuple[object, str]] = {}
        self._broken: set[TokenSource] = set()
        self._known: frozenset[str] | None = None

    @staticmethod
    def _version(source: TokenSource) -> object:
        if source.kind == "token_file":
            return file_version(source.file_path())
        if source.kind == "token_env":
            return os.environ.get(source.ref)
        return source.ref

    def get(self, source: TokenSource) -> str:
        """The current token; raises ConfigError only when no good token was ever read."""
        version = self._version(source)
        cached = self._cache.get(source)
        if cached is not None and cached[0] == version and version is not None:
            return cached[1]
        try:
            token = source.read()
        except ConfigError as exc:
            if cached is None:
                raise
            if source not in self._broken:
                self._broken.add(source)
                log.warning("token source unusable, keeping the last good token",
                            extra={"fields": {"source": source.describe(), "error": str(exc)}})
            return cached[1]
        if source in self._broken:
            self._broken.discard(source)
            log.info("token source readable again", extra={"fields": {"source": source.describe()}})
        self._cache[source] = (version, token)
        self._known = None
        return token

    def known(self) -> frozenset[str]:
        """Every token read so far, case-folded: names an answer must never export."""
        if self._known is None:
            self._known = frozenset(token.casefold() for _, token in self._cache.values())
        return self._known

    def changed(self, source: TokenSource) -> bool:
        """True when the source's file or variable differs from what was last read."""
        cached = self._cache.get(source)
        return cached is None or cached[0] != self._version(source)
