"""The API clients of the running config, over one session: the polls' and discovery's, and
the backlog scan's (whose answers may be larger). Made again on every reload (a CA file may
be new), with the same SSL context while the TLS settings and their files are unchanged:
aiohttp pools connections per context, so a new one on every reload would open a new pool."""

from __future__ import annotations

import logging
import ssl

import aiohttp

from exporter.backlog.parse import MAX_BODY_BYTES as BACKLOG_MAX_BODY
from exporter.client import MAX_BODY_BYTES, UnpodClient, environment_proxy
from exporter.config import ApiTlsConfig, Config
from exporter.files import file_version

log = logging.getLogger("unpod_exporter")


class ApiClients:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._tls_cache: tuple[object, ssl.SSLContext | bool] | None = None
        self._analytics: UnpodClient | None = None
        self._backlog: UnpodClient | None = None

    def use(self, config: Config) -> None:
        """Clients for this config (raises ConfigError when its TLS files are unusable)."""
        api = config.api
        if api.tls.insecure_skip_verify:
            log.warning("api.tls.insecure_skip_verify is set: the Unpod API's certificate is "
                        "not verified, so the API token can be intercepted")
        proxy = api.proxy_url or environment_proxy(api.base_url)
        context = self._ssl_context(api.tls)
        self._analytics, self._backlog = (
            UnpodClient(self._session, api.base_url, api.timeout, limit, proxy=proxy,
                        ssl_context=context, auth_scheme=api.auth_scheme)
            for limit in (MAX_BODY_BYTES, BACKLOG_MAX_BODY))

    def analytics(self) -> UnpodClient:
        """The client of polls, discovery and probes."""
        assert self._analytics is not None, "use() first"
        return self._analytics

    def backlog(self) -> UnpodClient:
        """The client of the backlog scan (8 MiB answers)."""
        assert self._backlog is not None, "use() first"
        return self._backlog

    def _ssl_context(self, tls: ApiTlsConfig) -> ssl.SSLContext | bool:
        files = tuple(file_version(path) for path in (tls.ca_file, tls.cert_file, tls.key_file))
        if self._tls_cache is None or self._tls_cache[0] != (tls, files):
            self._tls_cache = ((tls, files), tls.ssl_context())
        return self._tls_cache[1]
