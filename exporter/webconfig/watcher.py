"""The current web config: re-read when its file, or a certificate file it names, changes;
a broken new version is logged and the last good one keeps serving."""

from __future__ import annotations

import logging
import ssl

from exporter.config import ConfigError
from exporter.files import file_version
from exporter.webconfig.ratelimit import RateLimiter
from exporter.webconfig.schema import WebConfig, read_web_config, referenced_files
from exporter.webconfig.tls import build_ssl_context, sans_allowed

log = logging.getLogger("unpod_exporter.web")


def _load(path: str) -> tuple[WebConfig, ssl.SSLContext | None]:
    config = read_web_config(path)
    if config.tls is None:
        return config, None
    try:
        return config, build_ssl_context(config.tls)
    except ConfigError as exc:
        raise ConfigError(f"--web.config.file {path}: {exc}") from None


def load_web_config(path: str) -> WebConfig:
    """Read and validate a web config as the toolkit's Validate() does: the certificate and
    key must also load together."""
    return _load(path)[0]


class WebConfigWatcher:
    """Each new connection asks for ``context()``, so certificates, versions, suites and the
    client-auth policy all change without a restart; only turning TLS on or off needs one
    (the listener is plain or TLS)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.config, self._context = _load(path)
        self._versions = self._current_versions()
        self.limiter = RateLimiter(self.config.rate_limit) if self.config.rate_limit else None

    @property
    def tls(self) -> bool:
        return self._context is not None

    def _current_versions(self) -> tuple[object, ...]:
        return tuple(file_version(p) for p in [self.path, *referenced_files(self.path)])

    def refresh(self) -> None:
        """Re-read if anything changed; keep the last good config on any error."""
        versions = self._current_versions()
        if versions == self._versions:
            return
        self._versions = versions
        try:
            config, context = _load(self.path)
            if (config.tls is None) != (self.config.tls is None):
                raise ConfigError("turning TLS on or off needs a restart")
        except ConfigError as exc:
            log.error("web config change rejected, keeping the last good one",
                      extra={"fields": {"error": str(exc)}})
            return
        if config.rate_limit != self.config.rate_limit:
            self.limiter = RateLimiter(config.rate_limit) if config.rate_limit else None
        self.config, self._context = config, context
        log.info("web config reloaded", extra={"fields": {"path": self.path}})

    def context(self) -> ssl.SSLContext:
        """The TLS context for a new connection (only when TLS is on)."""
        self.refresh()
        assert self._context is not None
        return self._context

    def accepts(self, sslobj: ssl.SSLObject) -> bool:
        """Whether a finished handshake's client may stay (client_allowed_sans)."""
        return self.config.tls is None or sans_allowed(self.config.tls, sslobj)
