"""``--web.config.file``: Prometheus exporter-toolkit web config (TLS, basic auth, headers).

The whole exporter-toolkit schema is parsed; keys it has that are not honoured here are refused
with ``KEY: not supported`` rather than silently ignored. The file, and the certificate files it
names, are re-read when they change: a broken new version keeps the last good one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hashlib
import hmac
import logging
import re
import secrets
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from aiohttp import web

from exporter.config import ConfigError
from exporter.files import file_version

log = logging.getLogger("unpod_exporter.web")

UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})  # kubelet probes carry no password
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH_TYPES = {"NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"}
SUPPORTED_CLIENT_AUTH = {"NoClientCert", "RequireAndVerifyClientCert"}
HEADERS = {"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
           "X-XSS-Protection", "Strict-Transport-Security"}
_TLS_KEYS = {"cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
             "client_ca_file", "client_allowed_sans", "min_version", "max_version",
             "cipher_suites", "prefer_server_cipher_suites", "curve_preferences"}
_TLS_UNSUPPORTED = {"cipher_suites", "curve_preferences", "client_allowed_sans"}
_BCRYPT_RE = re.compile(rb"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")
MAX_PASSWORD_BYTES = 72  # bcrypt ignores what follows; refuse instead of truncating
REALM = 'Basic realm="unpod-exporter", charset="UTF-8"'


@dataclass(frozen=True)
class TlsServerConfig:
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    client_ca_pem: bytes | None = field(repr=False)
    require_client_cert: bool
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    prefer_server_cipher_suites: bool


@dataclass(frozen=True)
class WebConfig:
    tls: TlsServerConfig | None = None
    headers: tuple[tuple[str, str], ...] = ()
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)


def _mapping(value: object, key: str, allowed: set[str], unsupported: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key or 'web config'}: expected a mapping")
    for name in value:
        where = f"{key}.{name}" if key else str(name)
        if name in unsupported:
            raise ConfigError(f"{where}: not supported")
        if name not in allowed:
            raise ConfigError(f"{where}: unknown")
    return value


def _pem(raw: dict[str, Any], inline: str, file_key: str, base: Path) -> bytes | None:
    key = f"tls_server_config.{inline}"
    if inline in raw and file_key in raw:
        raise ConfigError(f"{key}: give either {inline} or {file_key}, not both")
    if inline in raw:
        if not isinstance(raw[inline], str) or not raw[inline].strip():
            raise ConfigError(f"{key}: expected PEM text")
        return str(raw[inline]).encode()
    if file_key not in raw:
        return None
    path = raw[file_key]
    if not isinstance(path, str) or not path:
        raise ConfigError(f"tls_server_config.{file_key}: expected a file name")
    try:
        return (base / path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"tls_server_config.{file_key}: cannot read {path}: "
                          f"{exc.strerror}") from None


def _version(raw: dict[str, Any], name: str, default: str) -> ssl.TLSVersion:
    value = raw.get(name, default)
    if value not in TLS_VERSIONS:
        raise ConfigError(f"tls_server_config.{name}: expected one of "
                          f"{', '.join(TLS_VERSIONS)}, got {value!r}")
    return TLS_VERSIONS[value]


def _tls(value: object, base: Path) -> TlsServerConfig | None:
    if value is None:
        return None
    raw = _mapping(value, "tls_server_config", _TLS_KEYS, _TLS_UNSUPPORTED)
    if not raw:
        return None
    auth = raw.get("client_auth_type", "NoClientCert")
    if auth not in CLIENT_AUTH_TYPES:
        raise ConfigError(f"tls_server_config.client_auth_type: unknown value {auth!r}")
    if auth not in SUPPORTED_CLIENT_AUTH:
        raise ConfigError(f"tls_server_config.client_auth_type: {auth} not supported "
                          f"(use NoClientCert or RequireAndVerifyClientCert)")
    min_version = _version(raw, "min_version", "TLS12")
    max_version = _version(raw, "max_version", "TLS13")
    cert = _pem(raw, "cert", "cert_file", base)
    key = _pem(raw, "key", "key_file", base)
    if cert is None or key is None:
        raise ConfigError("tls_server_config.cert_file: a certificate and key are required")
    client_ca = _pem(raw, "client_ca", "client_ca_file", base)
    require = auth == "RequireAndVerifyClientCert"
    if require and client_ca is None:
        raise ConfigError("tls_server_config.client_ca_file: required with "
                          "RequireAndVerifyClientCert")
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise ConfigError("tls_server_config.prefer_server_cipher_suites: expected true or false")
    config = TlsServerConfig(cert, key, client_ca, require, min_version, max_version, prefer)
    if config.min_version > config.max_version:
        raise ConfigError("tls_server_config.min_version: above max_version")
    build_ssl_context(config)  # a key that does not match its certificate fails here
    return config


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    raw = _mapping(value, "http_server_config", {"headers"}, {"http2"})
    headers = _mapping(raw.get("headers"), "http_server_config.headers", HEADERS, set())
    result = []
    for name, text in headers.items():
        key = f"http_server_config.headers.{name}"
        if not isinstance(text, str):
            raise ConfigError(f"{key}: expected a string")
        if not text:
            continue
        if name == "X-Frame-Options" and text.lower() not in ("deny", "sameorigin"):
            raise ConfigError(f"{key}: expected deny or sameorigin")
        if name == "X-Content-Type-Options" and text.lower() != "nosniff":
            raise ConfigError(f"{key}: expected nosniff")
        result.append((name, text))
    return tuple(result)


def _users(value: object) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("basic_auth_users: expected a mapping of user names to bcrypt hashes")
    users = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise ConfigError(f"basic_auth_users.{user}: invalid user name")
        encoded = hashed.encode() if isinstance(hashed, str) else b""
        if not _BCRYPT_RE.fullmatch(encoded):
            raise ConfigError(f"basic_auth_users.{user}: not a bcrypt hash "
                              "(make one with htpasswd -nBC 10 \"\" | tr -d ':\\n')")
        users[user] = encoded
    return users


def parse_web_config(text: str, base: Path) -> WebConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"web config: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    top = _mapping(raw, "", {"tls_server_config", "http_server_config", "basic_auth_users"},
                   {"rate_limit"})
    return WebConfig(tls=_tls(top.get("tls_server_config"), base),
                     headers=_headers(top.get("http_server_config")),
                     users=_users(top.get("basic_auth_users")))


def load_web_config(path: str) -> WebConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--web.config.file {path}: cannot read: {reason}") from None
    try:
        return parse_web_config(text, Path(path).resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"--web.config.file {path}: {exc}") from None


def build_ssl_context(tls: TlsServerConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = tls.min_version
    context.maximum_version = tls.max_version
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    # ssl only loads a chain from files: a private temporary directory holds them for a moment.
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(tls.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(tls.key_pem)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise ConfigError(f"tls_server_config.cert_file: cannot use certificate and key: "
                              f"{exc.reason or exc}") from None
    if tls.require_client_cert and tls.client_ca_pem is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_verify_locations(cadata=tls.client_ca_pem.decode("ascii", "replace"))
        except ssl.SSLError as exc:
            raise ConfigError(f"tls_server_config.client_ca_file: invalid CA: "
                              f"{exc.reason or exc}") from None
    return context


def _listener_settings(config: WebConfig) -> tuple[object, ...]:
    tls = config.tls
    if tls is None:
        return ()
    return (tls.require_client_cert, tls.min_version, tls.max_version,
            tls.prefer_server_cipher_suites)


class WebConfigWatcher:
    """The current web config, re-read when its file or any file it names changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.config = load_web_config(path)
        self._files = self._referenced_files()
        self._versions = self._current_versions()
        self.context = build_ssl_context(self.config.tls) if self.config.tls else None

    def _referenced_files(self) -> list[str]:
        try:
            raw = yaml.safe_load(Path(self.path).read_text(encoding="utf-8")) or {}
            tls = raw.get("tls_server_config") or {}
            base = Path(self.path).resolve().parent
            return [str(base / tls[k]) for k in ("cert_file", "key_file", "client_ca_file")
                    if isinstance(tls.get(k), str)]
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
            return []

    def _current_versions(self) -> tuple[object, ...]:
        return tuple(file_version(p) for p in [self.path, *self._files])

    def refresh(self) -> None:
        """Re-read if anything changed; keep the last good config on any error."""
        if self._current_versions() == self._versions:
            return
        self._files = self._referenced_files()
        self._versions = self._current_versions()
        try:
            config = load_web_config(self.path)
            if _listener_settings(config) != _listener_settings(self.config):
                raise ConfigError("TLS on/off, versions and client_auth_type change only "
                                  "with a restart")
            context = build_ssl_context(config.tls) if config.tls else None
        except ConfigError as exc:
            log.error("web config change rejected, keeping the last good one",
                      extra={"fields": {"error": str(exc)}})
            return
        self.config, self.context = config, context
        log.info("web config reloaded", extra={"fields": {"path": self.path}})

    def server_context(self) -> ssl.SSLContext | None:
        """The listening context: each handshake switches to the current one."""
        if self.context is None:
            return None
        base = build_ssl_context(self.config.tls) if self.config.tls else self.context

        def pick(sslobj: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
            self.refresh()
            if self.context is not None:
                sslobj.context = self.context

        base.sni_callback = pick
        return base


class AuthBusy(Exception):
    """Too many password checks are queued: answer 429 at once instead of queueing more."""


def bcrypt_cost(hashed: bytes) -> int:
    return int(hashed[4:6])


class BasicAuth:
    """bcrypt checks on a small pool of their own (never the default executor, which the
    exposition's assembly uses), at most ``max_pending`` queued; successes cached under a
    keyed hash, failures never. An unknown user is checked against a dummy hash of the same
    cost as the configured ones, so timing does not reveal user names."""

    def __init__(self, watcher: WebConfigWatcher, cache_size: int = 1024, workers: int = 1,
                 max_pending: int = 8) -> None:
        self._watcher = watcher
        self._key = secrets.token_bytes(32)
        self._cache: set[bytes] = set()
        self._cache_size = cache_size
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "bcrypt")
        self._max_pending = max_pending
        self._pending = 0
        self._dummies: dict[int, bytes] = {}

    def _verify(self, password: bytes, stored: bytes | None,
                users: Mapping[str, bytes]) -> bool:
        """In the pool. An unknown user is checked against a hash of the highest cost in use
        (made once per cost): it costs what the slowest real one does."""
        if stored is None:
            cost = max((bcrypt_cost(h) for h in users.values()), default=4)
            if cost not in self._dummies:
                self._dummies[cost] = bcrypt.hashpw(secrets.token_bytes(16),
                                                    bcrypt.gensalt(cost))
            stored = self._dummies[cost]
        return bcrypt.checkpw(password, stored)

    async def check(self, user: str, password: bytes) -> bool:
        users = self._watcher.config.users
        stored = users.get(user)
        if len(password) > MAX_PASSWORD_BYTES:
            return False
        fingerprint = hmac.new(self._key, b"\0".join([user.encode(), password, stored or b""]),
                               hashlib.sha256).digest()
        if stored is not None and fingerprint in self._cache:
            return True
        if self._pending >= self._max_pending:
            raise AuthBusy
        self._pending += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._verify, password, stored, users)
        finally:
            self._pending -= 1
        if ok and stored is not None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache.add(fingerprint)
            return True
        return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _credentials(header: str | None) -> tuple[str, bytes] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


def install(app: web.Application, watcher: WebConfigWatcher) -> None:
    """Basic auth on every path but the probes, and the configured response headers."""
    auth = BasicAuth(watcher)

    @web.middleware
    async def require_credentials(request: web.Request, handler: Any) -> web.StreamResponse:
        watcher.refresh()
        if watcher.config.users and request.path not in UNAUTHENTICATED_PATHS:
            credentials = _credentials(request.headers.get("Authorization"))
            try:
                ok = credentials is not None and await auth.check(*credentials)
            except AuthBusy:
                return web.Response(status=429, text="Too many authentication attempts\n",
                                    headers={"Retry-After": "1"})
            if not ok:
                return web.Response(status=401, text="Unauthorized\n",
                                    headers={"WWW-Authenticate": REALM})
        response: web.StreamResponse = await handler(request)
        return response

    async def add_headers(_: web.Request, response: web.StreamResponse) -> None:
        for name, value in watcher.config.headers:
            response.headers[name] = value

    async def close_pool(_: web.Application) -> None:
        auth.close()

    app.middlewares.append(require_credentials)
    app.on_response_prepare.append(add_headers)
    app.on_cleanup.append(close_pool)
