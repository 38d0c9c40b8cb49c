"""The exporter-toolkit web config file: parsed and validated as Prometheus's Go toolkit does.

Every key of the toolkit's schema is either honoured or refused with ``KEY: not supported
(why)``; unknown keys are refused with ``KEY: unknown``. Defaults, the order of checks and
what counts as "TLS on" follow ``web/tls_config.go`` and ``web/handler.go``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.config import ConfigError, parse_duration

# Go's names of TLS 1.2 cipher suites (crypto/tls CipherSuites()) and OpenSSL's. The TLS 1.3
# suites are accepted and, as in Go, not configurable (always all three).
TLS12_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
TLS13_CIPHERS = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                           "TLS_CHACHA20_POLY1305_SHA256"})
# Go's net/http refuses an HTTP/2 server whose TLS 1.2 suites lack both of these.
HTTP2_REQUIRED = frozenset({"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"})
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")
TLS_VERSIONS = ("TLS10", "TLS11", "TLS12", "TLS13")
CLIENT_AUTH = {"": "NoClientCert", "NoClientCert": "NoClientCert",
               "RequestClientCert": "RequestClientCert",
               "RequireAnyClientCert": "RequireAnyClientCert",
               "RequireClientCert": "RequireAnyClientCert",  # Go's old name, kept by the toolkit
               "VerifyClientCertIfGiven": "VerifyClientCertIfGiven",
               "RequireAndVerifyClientCert": "RequireAndVerifyClientCert"}
# Policies Python's ssl cannot express: it verifies every certificate it accepts.
UNSUPPORTED_CLIENT_AUTH = {
    "RequestClientCert": "Python's ssl module cannot ask for a client certificate without "
                         "verifying it; use VerifyClientCertIfGiven",
    "RequireAnyClientCert": "Python's ssl module cannot accept a client certificate without "
                            "verifying it; use RequireAndVerifyClientCert with client_ca_file",
}
# Response headers that may be set, and the values allowed where the toolkit fixes them
# (exact, case-sensitive, as Go compares).
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (), "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": (),
    "Content-Security-Policy": ()}
_TLS_KEYS = {"cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
             "client_ca_file", "client_allowed_sans", "min_version", "max_version",
             "cipher_suites", "prefer_server_cipher_suites", "curve_preferences"}
_BCRYPT_BODY = re.compile(rb"[./A-Za-z0-9]{53}")
_BCRYPT_MIN_SIZE = 59  # golang.org/x/crypto/bcrypt minHashSize


@dataclass(frozen=True)
class TlsSettings:
    """``tls_server_config`` once TLS is on: PEM data read, names checked."""

    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    client_ca_pem: bytes | None = field(repr=False)
    client_auth: str  # one of the CLIENT_AUTH values Python can serve
    min_version: str
    max_version: str
    ciphers: tuple[str, ...]  # OpenSSL names of the TLS 1.2 suites, in order; () = defaults
    prefer_server_cipher_suites: bool
    client_allowed_sans: tuple[str, ...] | None


@dataclass(frozen=True)
class RateLimit:
    interval: float  # seconds between tokens
    burst: int


@dataclass(frozen=True)
class WebConfig:
    tls: TlsSettings | None = None
    headers: tuple[tuple[str, str], ...] = ()
    users: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    rate_limit: RateLimit | None = None
    http2: bool = True  # accepted; this server speaks HTTP/1.1 (README)


def _mapping(value: object, key: str, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key or 'web config'}: expected a mapping")
    for name in value:
        if name not in allowed:
            raise ConfigError(f"{key + '.' if key else ''}{name}: unknown")
    return value


def _text(raw: Mapping[str, Any], name: str, key: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{key}.{name}: expected a string")
    return value


def _pem(raw: Mapping[str, Any], inline: str, file_key: str, base: Path) -> bytes | None:
    path, text = _text(raw, file_key, "tls_server_config"), _text(raw, inline,
                                                                  "tls_server_config")
    if path:  # the file wins over inline text, as in Go
        try:
            return (base / path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"tls_server_config.{file_key}: cannot read {path}: "
                              f"{(exc.strerror or 'error').lower()}") from None
    return text.encode() if text else None


def tls_enabled(raw: Mapping[str, Any]) -> bool:
    """Go's TLSConfig.IsEnabled: a certificate, key, client CA or client auth type is set.
    Other keys alone (versions, suites) leave TLS off."""
    return any(raw.get(k) for k in ("cert", "key", "cert_file", "key_file", "client_ca",
                                    "client_ca_file", "client_auth_type"))


def _version(raw: Mapping[str, Any], name: str, default: str) -> str:
    value = raw.get(name, default)
    if value not in TLS_VERSIONS:
        raise ConfigError(f"tls_server_config.{name}: unknown TLS version: {value}")
    if value in ("TLS10", "TLS11"):
        raise ConfigError(f"tls_server_config.{name}: {value} not supported (this Python's "
                          "OpenSSL serves TLS 1.2 and 1.3 only at its security level)")
    return str(value)


def _ciphers(raw: Mapping[str, Any]) -> tuple[str, ...]:
    names = raw.get("cipher_suites") or []
    if not isinstance(names, list):
        raise ConfigError("tls_server_config.cipher_suites: expected a list")
    for name in names:
        if name not in TLS12_CIPHERS and name not in TLS13_CIPHERS:
            raise ConfigError(f"tls_server_config.cipher_suites: unknown cipher: {name}")
    return tuple(names)


def _curves(raw: Mapping[str, Any]) -> None:
    names = raw.get("curve_preferences") or []
    if not isinstance(names, list):
        raise ConfigError("tls_server_config.curve_preferences: expected a list")
    for name in names:
        if name not in CURVES:
            raise ConfigError(f"tls_server_config.curve_preferences: unknown curve: {name}")
    if names:
        raise ConfigError("tls_server_config.curve_preferences: not supported (Python's ssl "
                          "module sets one ECDH curve for TLS 1.2 and none of the TLS 1.3 "
                          "groups; remove it to use OpenSSL's defaults)")


def _sans(raw: Mapping[str, Any]) -> tuple[str, ...] | None:
    sans = raw.get("client_allowed_sans")
    if sans is None:
        return None
    if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
        raise ConfigError("tls_server_config.client_allowed_sans: expected a list of strings")
    return tuple(sans)


def _tls(value: object, base: Path) -> tuple[TlsSettings | None, tuple[str, ...]]:
    """TLS settings (None: TLS off) and the configured cipher suite names."""
    raw = _mapping(value, "tls_server_config", _TLS_KEYS)
    # Parsing errors first (as Go's YAML decoding does), then Go's order of checks.
    min_version = _version(raw, "min_version", "TLS12")
    max_version = _version(raw, "max_version", "TLS13")
    names = _ciphers(raw)
    _curves(raw)
    sans = _sans(raw)
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise ConfigError("tls_server_config.prefer_server_cipher_suites: expected true or false")
    if not tls_enabled(raw):
        return None, names
    if not (_text(raw, "cert_file", "tls_server_config") or _text(raw, "cert",
                                                                  "tls_server_config")):
        raise ConfigError("tls_server_config: missing one of cert or cert_file")
    if not (_text(raw, "key_file", "tls_server_config") or _text(raw, "key",
                                                                 "tls_server_config")):
        raise ConfigError("tls_server_config: missing one of key or key_file")
    cert = _pem(raw, "cert", "cert_file", base)
    key = _pem(raw, "key", "key_file", base)
    assert cert is not None and key is not None
    client_ca = _pem(raw, "client_ca", "client_ca_file", base)
    auth_name = _text(raw, "client_auth_type", "tls_server_config")
    if auth_name not in CLIENT_AUTH:
        raise ConfigError(f"tls_server_config.client_auth_type: invalid ClientAuth: {auth_name}")
    auth = CLIENT_AUTH[auth_name]
    if client_ca is not None and auth == "NoClientCert":
        raise ConfigError("tls_server_config.client_ca_file: client CA's have been configured "
                          "without a Client Auth Policy (set client_auth_type)")
    if auth in UNSUPPORTED_CLIENT_AUTH:
        raise ConfigError(f"tls_server_config.client_auth_type: {auth_name} not supported "
                          f"({UNSUPPORTED_CLIENT_AUTH[auth]})")
    if TLS_VERSIONS.index(min_version) > TLS_VERSIONS.index(max_version):
        raise ConfigError("tls_server_config.min_version: above max_version")
    settings = TlsSettings(cert, key, client_ca, auth, min_version, max_version,
                           tuple(TLS12_CIPHERS[n] for n in names if n in TLS12_CIPHERS),
                           prefer, sans)
    return settings, names


def _http(value: object, header_texts: Mapping[str, str]) -> tuple[tuple[tuple[str, str], ...],
                                                                   bool]:
    raw = _mapping(value, "http_server_config", {"headers", "http2"})
    http2 = raw.get("http2", True)
    if not isinstance(http2, bool):
        raise ConfigError("http_server_config.http2: expected true or false")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        raise ConfigError("http_server_config.headers: expected a mapping")
    result = []
    for name in headers:
        if name not in HEADERS:
            raise ConfigError(f'http_server_config.headers: HTTP header "{name}" can not be '
                              "configured")
        text = header_texts.get(name, "")  # the scalar as written: X-XSS-Protection: 1 is "1"
        allowed = HEADERS[name]
        if allowed and text not in allowed:
            raise ConfigError(f"http_server_config.headers: invalid value for {name}. Expected "
                              f"one of: {list(allowed)}, but got: {text!r}")
        if text:
            result.append((name, text))
    return tuple(result), http2


def bcrypt_hash(user: str, value: object) -> bytes:
    """A stored hash checked as golang.org/x/crypto/bcrypt's Cost() does, plus what the
    Python bcrypt module can verify."""
    key = f"basic_auth_users.{user}"
    hashed = str(value).encode() if isinstance(value, str) else b""
    if len(hashed) < _BCRYPT_MIN_SIZE:
        raise ConfigError(f"{key}: crypto/bcrypt: hashedSecret too short to be a bcrypted "
                          "password (make one with htpasswd -nBC 10 \"\" | tr -d ':\\n')")
    if hashed[:1] != b"$" or hashed[1:2] != b"2":
        raise ConfigError(f"{key}: not a bcrypt hash (it must start with $2)")
    if hashed[2:3] == b"$":
        raise ConfigError(f"{key}: $2$ hashes not supported (Python's bcrypt module reads "
                          "$2a$, $2b$, $2x$ and $2y$; make a new one with htpasswd -B)")
    if hashed[3:4] != b"$" or hashed[2:3] not in (b"a", b"b", b"x", b"y"):
        raise ConfigError(f"{key}: not a bcrypt hash (unknown version)")
    cost_text = hashed[4:6].decode(errors="replace")
    if not cost_text.isdigit() or not 4 <= int(cost_text) <= 31:
        raise ConfigError(f"{key}: crypto/bcrypt: cost {cost_text} is outside 4..31")
    if hashed[6:7] != b"$" or not _BCRYPT_BODY.fullmatch(hashed[7:]):
        raise ConfigError(f"{key}: not a bcrypt hash (bad salt or hash)")
    return hashed


def _users(value: object) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("basic_auth_users: expected a mapping of user names to bcrypt hashes")
    users = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise ConfigError(f"basic_auth_users.{user}: invalid user name")
        users[user] = bcrypt_hash(user, hashed)
    return users


def _rate_limit(value: object) -> RateLimit | None:
    raw = _mapping(value, "rate_limit", {"interval", "burst"})
    interval_raw = raw.get("interval", 0)
    interval = 0.0 if interval_raw in (0, "0", None) else parse_duration(
        interval_raw, "rate_limit.interval")
    burst = raw.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        raise ConfigError("rate_limit.burst: expected a whole number, 0 or more")
    if interval == 0 or not math.isfinite(interval):
        return None  # the toolkit: no limiter without an interval
    return RateLimit(interval, burst)


def _header_texts(text: str) -> dict[str, str]:
    """http_server_config.headers as written in the file: Go decodes scalars into strings
    verbatim, so ``X-XSS-Protection: 1`` is the header value "1", not an error."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    found: dict[str, str] = {}
    node: yaml.Node | None = root
    for name in ("http_server_config", "headers"):
        if not isinstance(node, yaml.MappingNode):
            return found
        node = next((v for k, v in node.value if getattr(k, "value", None) == name), None)
    if isinstance(node, yaml.MappingNode):
        for key, item in node.value:
            if isinstance(key, yaml.ScalarNode) and isinstance(item, yaml.ScalarNode):
                found[key.value] = "" if item.tag.endswith(":null") else item.value
    return found


def parse_web_config(text: str, base: Path) -> WebConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"web config: yaml: {getattr(exc, 'problem', exc)}") from None
    if isinstance(raw, str):
        raise ConfigError("web config: yaml: expected a mapping of settings, got text")
    top = _mapping(raw, "", {"tls_server_config", "http_server_config", "basic_auth_users",
                             "rate_limit"})
    tls, cipher_names = _tls(top.get("tls_server_config"), base)
    headers, http2 = _http(top.get("http_server_config"), _header_texts(text))
    if tls is not None and http2 and cipher_names and tls.min_version != "TLS13" and not (
            HTTP2_REQUIRED & set(cipher_names)):
        raise ConfigError("tls_server_config.cipher_suites: http2: TLSConfig.CipherSuites is "
                          "missing an HTTP/2-required AES_128_GCM_SHA256 cipher (need "
                          f"{' or '.join(sorted(HTTP2_REQUIRED))}, or http2: false)")
    return WebConfig(tls=tls, headers=headers, users=_users(top.get("basic_auth_users")),
                     rate_limit=_rate_limit(top.get("rate_limit")), http2=http2)


def read_web_config(path: str) -> WebConfig:
    """The file parsed and validated, without building its TLS context."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = (exc.strerror or "error").lower() if isinstance(exc, OSError) \
            else "not UTF-8 text"
        raise ConfigError(f"--web.config.file {path}: cannot read: {reason}") from None
    try:
        return parse_web_config(text, Path(path).resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"--web.config.file {path}: {exc}") from None


def referenced_files(path: str) -> list[str]:
    """The certificate files a web config names (watched for rotation)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        tls = raw.get("tls_server_config") or {}
        base = Path(path).resolve().parent
        return [str(base / tls[k]) for k in ("cert_file", "key_file", "client_ca_file")
                if isinstance(tls.get(k), str) and tls[k]]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return []
