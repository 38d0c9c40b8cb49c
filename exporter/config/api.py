"""The ``api:`` section: where the Unpod API is and how the exporter talks to it."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from exporter.config.fields import (
    at_least,
    base_url,
    boolean,
    one_of,
    parse_duration,
    proxy_url,
    string,
)
from exporter.config.section import keys, option, section
from exporter.config.sources import TOKEN_KINDS, TokenSource, client_ssl_context, token_source

DEFAULT_BASE_URL = "https://unpod.ai/api/v2/platform"
AUTH_SCHEMES = ("Token", "JWT", "Bearer")  # the word before the token in Authorization


@dataclass(frozen=True)
class ApiTlsConfig:
    """``api.tls``: how the exporter trusts the upstream API (and proves itself to it)."""

    ca_file: str | None = option(None, string)  # trusted in addition to the system store
    insecure_skip_verify: bool = option(False, boolean)
    cert_file: str | None = option(None, string)
    key_file: str | None = option(None, string)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The ``ssl`` argument for aiohttp (reads the files); raises ConfigError naming the
        key at fault."""
        return client_ssl_context("api.tls", self.ca_file, self.insecure_skip_verify,
                                  self.cert_file, self.key_file)


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = option(DEFAULT_BASE_URL, base_url)
    token: TokenSource = keys(TOKEN_KINDS, token_source,
                              TokenSource("token_env", "UNPOD_API_TOKEN", "api.token_env"))
    timeout: float = option(10.0, parse_duration)
    max_requests_per_minute: int = option(60, at_least(0))
    max_requests_per_day: int | None = option(None, at_least(1))
    proxy_url: str | None = option(None, proxy_url, shown=False)  # may carry credentials
    tls: ApiTlsConfig = option(ApiTlsConfig(), section(ApiTlsConfig))
    auth_scheme: str = option("Token", one_of(AUTH_SCHEMES))

    def proxy_display(self) -> str:
        """The proxy without its user info, for logs."""
        if not self.proxy_url:
            return "environment (HTTPS_PROXY/HTTP_PROXY/NO_PROXY)"
        parts = urlsplit(self.proxy_url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        return f"{parts.scheme}://{host}"
