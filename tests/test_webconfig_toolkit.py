"""Prometheus exporter-toolkit's own test cases for the web config, ported.

Source: github.com/prometheus/exporter-toolkit, ``web/tls_config_test.go`` (TestYAMLFiles,
TestServerBehaviour, TestConfigReloading, TestUsers, TestTLSConfigIsEnabled) and
``web/handler_test.go``. The YAML files are the toolkit's ``web/testdata/`` files with the
same content; the certificates are regenerated (trustme) under the same names, and the inline
ones in the ``*_tlsInline``/``*keyinline`` files are ours. Each case keeps the toolkit's
expectation (loads, or the error of its ErrorMap), except the few that docs/security.md lists as
refused at start, which expect that refusal (REFUSED below). The server is the toolkit's
"Hello World!" handler behind this project's listener and web-config middleware.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web

from exporter.config import ConfigError
from exporter.listener import run_web
from exporter.webconfig import WebConfigWatcher, install, load_web_config
from exporter.webconfig.schema import tls_enabled

RSA = trustme.KeyType.RSA

# --- web/testdata, same content (PEM blocks of the inline files are filled in below) --------
TESTDATA: dict[str, dict[str, Any] | str | None] = {
    "tls_config_noAuth.requireandverifyclientcert.good.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": "client_selfsigned.pem"}},
    "tls_config_noAuth.requireanyclientcert.good.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "RequireAnyClientCert"}},
    "tls_config_noAuth.requireanyclientcertkeyinline.good.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key": "<server.key>",
        "client_auth_type": "RequireAnyClientCert"}},
    "web_config_auth_clientCAs_invalid.bad.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key", "client_ca_file": "somefile"}},
    "web_config_auth_clientCAs_missing.bad.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "RequireAndVerifyClientCert"}},
    "web_config_auth_client_san.bad.yaml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": "client2_selfsigned.pem", "client_allowed_sans": ["bad"]}},
    "web_config_auth_client_san.good.yaml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": "client2_selfsigned.pem",
        "client_allowed_sans": ["one", "test3", "two"]}},
    "web_config_auth_user_list_invalid.bad.yml": {
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
        "basic_auth_users": {"john": "doe"}},
    "web_config_empty.yml": None,
    "web_config_headers.good.yml": (
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        "    Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
        "    X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1\n"
        "    Content-Security-Policy: \"default-src 'self' *.test.example.net\"\n"),
    "web_config_headers_content_type_options.bad.yml": {
        "http_server_config": {"headers": {"X-Content-Type-Options": "sniff"}}},
    "web_config_headers_extra_header.bad.yml": {
        "http_server_config": {"headers": {"Content-Type": "foo"}}},
    "web_config_headers_frame_options.bad.yml": {
        "http_server_config": {"headers": {"X-Frame-Options": "foo"}}},
    "web_config_junk.yml": "hWkNKCp3fvIx3jKnsaBI\nTuEjdwNS8A2vYdFbiKqr\nay3RiOtykgt4m6m3KOol\n",
    "web_config_junk_key.yml": {"tls_server_config": {"cert_filse": "server.crt"}},
    "web_config_noAuth.bad.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key", "client_ca_file": "/dev/null"}},
    "web_config_noAuth.good.blocking.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "RequireAndVerifyClientCert"}},
    "web_config_noAuth.good.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "VerifyClientCertIfGiven"}},
    "web_config_noAuth_allCiphers.good.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "VerifyClientCertIfGiven", "cipher_suites": [
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"]}},
    "web_config_noAuth_allCurves.good.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "VerifyClientCertIfGiven",
        "curve_preferences": ["CurveP256", "CurveP384", "CurveP521", "X25519"]}},
    "web_config_noAuth_certPath_empty.bad.yml": {"tls_server_config": {
        "cert_file": "", "key_file": "server.key"}},
    "web_config_noAuth_certPath_invalid.bad.yml": {"tls_server_config": {
        "cert_file": "somefile", "key_file": "server.key"}},
    "web_config_noAuth_certPath_keyPath_empty.bad.yml": {"tls_server_config": {
        "cert_file": "", "key_file": "", "client_auth_type": "x"}},
    "web_config_noAuth_certPath_keyPath_invalid.bad.yml": {"tls_server_config": {
        "cert_file": "somefile", "key_file": "somefile"}},
    "web_config_noAuth_cert_empty.bad.yml": {"tls_server_config": {
        "cert": "", "key_file": "server.key"}},
    "web_config_noAuth_inventedCiphers.bad.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "VerifyClientCertIfGiven",
        "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048"]}},
    "web_config_noAuth_inventedCurves.bad.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "VerifyClientCertIfGiven", "curve_preferences": ["CurveP257"]}},
    "web_config_noAuth_keyPath_empty.bad.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": ""}},
    "web_config_noAuth_keyPath_invalid.bad.yml": {"tls_server_config": {
        "cert_file": "server.cert", "key_file": "somefile"}},
    "web_config_noAuth_key_empty.bad.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key": ""}},
    "web_config_noAuth_noHTTP2.good.yml": {
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                              "client_auth_type": "VerifyClientCertIfGiven",
                              "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"],
                              "max_version": "TLS12"},
        "http_server_config": {"http2": False}},
    "web_config_noAuth_noHTTP2Cipher.bad.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "VerifyClientCertIfGiven",
        "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"], "max_version": "TLS12"}},
    "web_config_noAuth_someCiphers.good.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "VerifyClientCertIfGiven",
        "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                          "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"],
        "min_version": "TLS12", "max_version": "TLS12"}},
    "web_config_noAuth_someCiphers_noOrder.good.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "VerifyClientCertIfGiven",
        "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                          "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
        "prefer_server_cipher_suites": False, "min_version": "TLS12", "max_version": "TLS12"}},
    "web_config_noAuth_someCurves.good.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "VerifyClientCertIfGiven", "min_version": "TLS13",
        "curve_preferences": ["CurveP521"]}},
    "web_config_noAuth_tlsInline.good.yml": {"tls_server_config": {
        "cert": "<server.crt>", "key": "<server.key>"}},
    "web_config_noAuth_wrongTLSVersion.bad.yml": {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_auth_type": "VerifyClientCertIfGiven", "min_version": "TLS111"}},
    "web_config_rate_limiter_nonblocking.yaml": {"rate_limit": {"interval": 0, "burst": 0}},
    "web_config_rate_limiter_one_second.yaml": {"rate_limit": {"interval": "1s", "burst": 0}},
    "web_config_users.good.yml": {
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
        "basic_auth_users": {
            "alice": "$2y$12$1DpfPeqF9HzHJt.EWswy1exHluGfbhnn3yXhR7Xes6m3WJqFg0Wby",
            "bob": "$2y$18$4VeFDzXIoPHKnKTU3O3GH.N.vZu06CVqczYZ8WvfzrddFU6tGqjR.",
            "carol": "$2y$10$qRTBuFoULoYNA7AQ/F3ck.trZBPyjV64.oA4ZsSBCIWvXuvQlQTuu",
            "dave": "$2y$10$2UXri9cIDdgeKjBo4Rlpx.U3ZLDV8X1IxKmsfOvhcM5oXQt/mLmXq"}},
}
TESTDATA["web_config_users_noTLS.good.yml"] = {
    "basic_auth_users": TESTDATA["web_config_users.good.yml"]["basic_auth_users"]}  # type: ignore[index]

# The toolkit's ErrorMap, as this project words the same errors.
ERRORS = {
    "No such file": r"no such file",
    "YAML error": r"yaml|unknown",
    "Invalid Cert or CertPath": r"missing one of cert or cert_file",
    "Invalid Key or KeyPath": r"missing one of key or key_file",
    "ClientCA set without policy": r"client CA's have been configured without a Client Auth "
                                   r"Policy",
    "Bad password": r"hashedSecret too short to be a bcrypted password",
    "Unknown cipher": r"unknown cipher",
    "Unknown curve": r"unknown curve",
    "Unknown TLS version": r"unknown TLS version",
    "No HTTP2 cipher": r"TLSConfig\.CipherSuites is missing an HTTP/2-required",
    "Invalid value": r"invalid value for",
    "Invalid header": r'HTTP header ".*" can not be configured',
    # client-side outcomes
    "HTTP Response to HTTPS": "tls-to-plain",
    "HTTP Request to HTTPS server": "plain-to-tls",
    "Incompatible TLS version": "handshake",
    "Handshake failure": "handshake",
    "Invalid client cert": "rejected",
    "Unauthorized": "401",
    "Too Many Requests": "429",
}
# Cases Go serves and Python's ssl cannot: refused at start with the reason (docs/security.md).
REFUSED = {
    "web_config_noAuth_allCurves.good.yml": "curve_preferences: not supported",
    "web_config_noAuth_someCurves.good.yml": "curve_preferences: not supported",
    "tls_config_noAuth.requireanyclientcert.good.yml": "RequireAnyClientCert not supported",
    "tls_config_noAuth.requireanyclientcertkeyinline.good.yml":
        "RequireAnyClientCert not supported",
}


@pytest.fixture(scope="module")
def testdata(tmp_path_factory) -> Path:
    """web/testdata with regenerated certificates: a server certificate (RSA, for the ECDHE-RSA
    suites) from the CA of tls-ca-chain.pem, and two client identities, each with its CA under
    the toolkit's file name (client2's certificate carries the SAN test3)."""
    out = tmp_path_factory.mktemp("testdata")
    ca = trustme.CA(key_type=RSA)
    ca.cert_pem.write_to_path(str(out / "tls-ca-chain.pem"))
    server = ca.issue_cert("localhost", "127.0.0.1", key_type=RSA)
    server.cert_chain_pems[0].write_to_path(str(out / "server.crt"))
    server.private_key_pem.write_to_path(str(out / "server.key"))
    for name, identities in (("client_selfsigned", ("client",)),
                             ("client2_selfsigned", ("test3", "test4"))):
        client_ca = trustme.CA(key_type=RSA)
        client_ca.cert_pem.write_to_path(str(out / f"{name}.pem"))
        leaf = client_ca.issue_cert(*identities, key_type=RSA)
        leaf.cert_chain_pems[0].write_to_path(str(out / f"{name}.leaf.pem"))
        leaf.private_key_pem.write_to_path(str(out / f"{name}.key"))
    inline = {"<server.crt>": (out / "server.crt").read_text(),
              "<server.key>": (out / "server.key").read_text()}
    for file_name, content in TESTDATA.items():
        if isinstance(content, dict):
            tls = content.get("tls_server_config", {})
            content = yaml.safe_dump({**content, "tls_server_config": {
                k: inline.get(v, v) if isinstance(v, str) else v for k, v in tls.items()}}
                if tls else content)
        (out / file_name).write_text(content or "")
    return out


def load(path: Path) -> str | None:
    """The toolkit's Validate(): None when the file loads, else the error text."""
    try:
        load_web_config(str(path))
    except ConfigError as exc:
        return str(exc)
    return None


# --- TestYAMLFiles ---------------------------------------------------------------------------

YAML_FILES = [
    ("path to config yml invalid", "somefile", "No such file"),
    ("empty config yml", "web_config_empty.yml", None),
    ("invalid config yml (invalid structure)", "web_config_junk.yml", "YAML error"),
    ("invalid config yml (invalid key)", "web_config_junk_key.yml", "YAML error"),
    ("invalid config yml (cert path empty)", "web_config_noAuth_certPath_empty.bad.yml",
     "Invalid Cert or CertPath"),
    ("invalid config yml (cert empty)", "web_config_noAuth_cert_empty.bad.yml",
     "Invalid Cert or CertPath"),
    ("invalid config yml (key path empty)", "web_config_noAuth_keyPath_empty.bad.yml",
     "Invalid Key or KeyPath"),
    ("invalid config yml (key empty)", "web_config_noAuth_key_empty.bad.yml",
     "Invalid Key or KeyPath"),
    ("invalid config yml (cert path and key path empty)",
     "web_config_noAuth_certPath_keyPath_empty.bad.yml", "Invalid Cert or CertPath"),
    ("invalid config yml (cert path invalid)", "web_config_noAuth_certPath_invalid.bad.yml",
     "No such file"),
    ("invalid config yml (key path invalid)", "web_config_noAuth_keyPath_invalid.bad.yml",
     "No such file"),
    ("invalid config yml (cert path and key path invalid)",
     "web_config_noAuth_certPath_keyPath_invalid.bad.yml", "No such file"),
    ("invalid config yml (invalid ClientAuth)", "web_config_noAuth.bad.yml",
     "ClientCA set without policy"),
    ("invalid config yml (invalid ClientCAs filepath)",
     "web_config_auth_clientCAs_invalid.bad.yml", "No such file"),
    ("invalid config yml (invalid user list)", "web_config_auth_user_list_invalid.bad.yml",
     "Bad password"),
    ("invalid config yml (bad cipher)", "web_config_noAuth_inventedCiphers.bad.yml",
     "Unknown cipher"),
    ("invalid config yml (bad curves)", "web_config_noAuth_inventedCurves.bad.yml",
     "Unknown curve"),
    ("invalid config yml (bad TLS version)", "web_config_noAuth_wrongTLSVersion.bad.yml",
     "Unknown TLS version"),
]


@pytest.mark.parametrize("name, file_name, expected", YAML_FILES,
                         ids=[case[0] for case in YAML_FILES])
def test_yaml_files(testdata, name, file_name, expected):
    error = load(testdata / file_name)
    if expected is None:
        assert error is None, error
    else:
        assert error is not None and re.search(ERRORS[expected], error), (name, error)


# --- TestServerBehaviour, TestUsers: a real server, a real client ------------------------------

@dataclass
class Case:
    name: str
    config: str  # file name in testdata, or "" for no web config
    expected: str | None = None  # an ERRORS key, or None for "Hello World!"
    tls_client: bool = False
    client_max_tls: ssl.TLSVersion | None = None
    ciphers: list[str] = field(default_factory=list)  # OpenSSL names, client's order
    actual_cipher: str | None = None
    client_cert: str | None = None
    user: str | None = None
    password: str = ""
    requests: int = 0  # the toolkit makes requests + 1 of them


SERVER_BEHAVIOUR = [
    Case("empty string YAMLConfigPath and default client", ""),
    Case("empty string YAMLConfigPath and TLS client", "", "HTTP Response to HTTPS",
         tls_client=True),
    Case("valid tls config yml and default client", "web_config_noAuth.good.yml",
         "HTTP Request to HTTPS server"),
    Case("valid tls config yml and tls client", "web_config_noAuth.good.yml", tls_client=True),
    Case("valid tls config yml (cert and key inline) and tls client",
         "web_config_noAuth_tlsInline.good.yml", tls_client=True),
    Case("valid tls config yml with TLS 1.1 client", "web_config_noAuth.good.yml",
         "Incompatible TLS version", tls_client=True,
         client_max_tls=ssl.TLSVersion.TLSv1_1),
    Case("valid tls config yml with all ciphers", "web_config_noAuth_allCiphers.good.yml",
         tls_client=True),
    Case("valid tls config yml with some ciphers", "web_config_noAuth_someCiphers.good.yml",
         tls_client=True, ciphers=["ECDHE-RSA-AES128-GCM-SHA256"]),
    Case("valid tls config yml with no common cipher",
         "web_config_noAuth_someCiphers.good.yml", "Handshake failure", tls_client=True,
         ciphers=["ECDHE-RSA-AES256-SHA"]),
    Case("valid tls config yml with multiple client ciphers",
         "web_config_noAuth_someCiphers.good.yml", tls_client=True,
         ciphers=["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"],
         actual_cipher="ECDHE-RSA-AES128-GCM-SHA256"),
    Case("valid tls config yml with multiple client ciphers, client chooses cipher",
         "web_config_noAuth_someCiphers_noOrder.good.yml", tls_client=True,
         ciphers=["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"],
         actual_cipher="ECDHE-RSA-AES128-GCM-SHA256"),
    Case("valid tls config yml with all curves", "web_config_noAuth_allCurves.good.yml",
         tls_client=True),
    Case("valid tls config yml with some curves", "web_config_noAuth_someCurves.good.yml",
         tls_client=True),
    Case("valid tls config yml with no common curves", "web_config_noAuth_someCurves.good.yml",
         "Handshake failure", tls_client=True),
    Case("valid tls config yml with non-http2 ciphers", "web_config_noAuth_noHTTP2.good.yml",
         tls_client=True),
    Case("valid tls config yml with non-http2 ciphers but http2 enabled",
         "web_config_noAuth_noHTTP2Cipher.bad.yml", "No HTTP2 cipher", tls_client=True),
    Case("valid headers config", "web_config_headers.good.yml"),
    Case("invalid X-Content-Type-Options headers config",
         "web_config_headers_content_type_options.bad.yml", "Invalid value"),
    Case("invalid X-Frame-Options headers config",
         "web_config_headers_frame_options.bad.yml", "Invalid value"),
    Case("HTTP header that can not be overridden", "web_config_headers_extra_header.bad.yml",
         "Invalid header"),
    Case("valid tls config yml and tls client with RequireAnyClientCert (present certificate)",
         "tls_config_noAuth.requireanyclientcert.good.yml", tls_client=True,
         client_cert="client_selfsigned"),
    Case("valid tls config yml (cert from file, key inline) and tls client with "
         "RequireAnyClientCert (present certificate)",
         "tls_config_noAuth.requireanyclientcertkeyinline.good.yml", tls_client=True,
         client_cert="client_selfsigned"),
    Case("valid tls config yml and tls client with RequireAndVerifyClientCert (present "
         "certificate)", "tls_config_noAuth.requireandverifyclientcert.good.yml",
         tls_client=True, client_cert="client_selfsigned"),
    Case("valid tls config yml and tls client with VerifyPeerCertificate (present good SAN DNS "
         "entry)", "web_config_auth_client_san.good.yaml", tls_client=True,
         client_cert="client2_selfsigned"),
    Case("valid tls config yml and tls client with VerifyPeerCertificate (present invalid SAN "
         "DNS entries)", "web_config_auth_client_san.bad.yaml", "Invalid client cert",
         tls_client=True, client_cert="client2_selfsigned"),
    Case("valid rate limiter (no rate limiter set up) that doesn't block",
         "web_config_rate_limiter_nonblocking.yaml", requests=10),
    Case("valid rate limiter with an interval of one second",
         "web_config_rate_limiter_one_second.yaml", "Too Many Requests", requests=10),
]
USERS = [
    Case("without basic auth", "web_config_users_noTLS.good.yml", "Unauthorized"),
    Case("with correct basic auth", "web_config_users_noTLS.good.yml", user="dave",
         password="dave123"),
    Case("without basic auth and TLS", "web_config_users.good.yml", "Unauthorized",
         tls_client=True),
    Case("with correct basic auth and TLS", "web_config_users.good.yml", tls_client=True,
         user="dave", password="dave123"),
    Case("with another correct basic auth and TLS", "web_config_users.good.yml",
         tls_client=True, user="carol", password="carol123"),
    Case("with bad password and TLS", "web_config_users.good.yml", "Unauthorized",
         tls_client=True, user="dave", password="bad"),
    Case("with bad username and TLS", "web_config_users.good.yml", "Unauthorized",
         tls_client=True, user="nonexistent", password="nonexistent"),
]


async def hello(_: web.Request) -> web.Response:
    return web.Response(text="Hello World!")


class Server:
    """The toolkit's test server: "Hello World!" behind the web config, on a free port."""

    def __init__(self, config: Path | None) -> None:
        self.app = web.Application()
        self.app.router.add_get("/", hello)
        self.watcher = WebConfigWatcher(str(config)) if config is not None else None
        if self.watcher is not None:
            install(self.app, self.watcher)
        self.runner: web.AppRunner | None = None

    async def __aenter__(self) -> str:
        tls = self.watcher if self.watcher is not None and self.watcher.tls else None
        self.runner = await run_web(self.app, "127.0.0.1", 0, tls)
        port = self.runner.addresses[0][1]
        return f"{'https' if tls else 'http'}://localhost:{port}/", port

    async def __aexit__(self, *_: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def client_context(testdata: Path, case: Case) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(testdata / "tls-ca-chain.pem"))
    if case.client_max_tls is not None:
        with warnings.catch_warnings():  # the point of the case: an old client
            warnings.simplefilter("ignore", DeprecationWarning)
            context.maximum_version = case.client_max_tls
    if case.ciphers:
        context.maximum_version = ssl.TLSVersion.TLSv1_2  # Go's list sets TLS 1.2 suites
        context.set_ciphers(":".join(case.ciphers))
    if case.client_cert:
        context.load_cert_chain(testdata / f"{case.client_cert}.leaf.pem",
                                testdata / f"{case.client_cert}.key")
    return context


async def run_case(testdata: Path, case: Case) -> str | None:
    """The case's outcome: None ("Hello World!" each time), or what went wrong."""
    error = load(testdata / case.config) if case.config else None
    if error is not None:
        return error  # ListenAndServe fails
    async with Server(testdata / case.config if case.config else None) as (url, port):
        scheme_url = url if not case.tls_client else f"https://localhost:{port}/"
        if not case.tls_client:
            scheme_url = f"http://localhost:{port}/"
        headers = {}
        if case.user is not None:
            token = base64.b64encode(f"{case.user}:{case.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        context = client_context(testdata, case) if case.tls_client else None
        async with aiohttp.ClientSession() as session:
            for _ in range(case.requests + 1):
                try:
                    async with session.get(scheme_url, ssl=context if context else False,
                                           headers=headers) as response:
                        body = await response.text()
                        if response.status != 200:
                            return str(response.status)
                        if body != "Hello World!":
                            return body
                except aiohttp.ClientConnectorCertificateError:
                    return "certificate"
                except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
                    text = str(exc)
                    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
                        return "tls-to-plain"
                    return "handshake"
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                    if not case.tls_client:
                        return "plain-to-tls"  # the TLS port drops a plain HTTP request
                    if case.client_cert:
                        return "rejected"  # the handshake passed, the server closed
                    if isinstance(exc, aiohttp.ClientConnectorError):
                        return "handshake"  # connected, then refused during the handshake
                    return f"connection: {exc}"
        if case.actual_cipher is not None:
            _, writer = await asyncio.open_connection("localhost", port, ssl=context,
                                                      server_hostname="localhost")
            cipher = writer.get_extra_info("cipher")
            writer.close()
            if not cipher or cipher[0] != case.actual_cipher:
                return f"cipher {cipher}"
    return None


@pytest.mark.parametrize("case", SERVER_BEHAVIOUR + USERS,
                         ids=[case.name for case in SERVER_BEHAVIOUR + USERS])
async def test_server_behaviour(testdata, case):
    outcome = await run_case(testdata, case)
    if case.config in REFUSED:
        assert outcome is not None and REFUSED[case.config] in outcome, outcome
    elif case.expected is None:
        assert outcome is None, outcome
    else:
        assert outcome is not None and re.search(ERRORS[case.expected], outcome), outcome


def test_the_refused_cases_are_the_readme_ones():
    readme = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text()
    for reason in ("curve_preferences", "RequireAnyClientCert", "RequestClientCert",
                   "TLS10", "TLS11"):
        assert f"`{reason}`" in readme


# --- TestConfigReloading ---------------------------------------------------------------------

async def test_config_reloading(testdata, tmp_path):
    """A stricter client-auth policy, then a looser one, on the same server: no restart."""
    for name in ("server.crt", "server.key"):
        (tmp_path / name).write_bytes((testdata / name).read_bytes())
    config = tmp_path / "web.yml"
    blocking = (testdata / "web_config_noAuth.good.blocking.yml").read_text()
    good = (testdata / "web_config_noAuth.good.yml").read_text()
    config.write_text(blocking)
    context = ssl.create_default_context(cafile=str(testdata / "tls-ca-chain.pem"))
    async with Server(config) as (_, port), aiohttp.ClientSession() as session:
        url = f"https://localhost:{port}/"
        with pytest.raises(aiohttp.ClientError):  # no client certificate: refused
            async with session.get(url, ssl=context) as response:
                await response.text()
        config.write_text(good)
        async with session.get(url, ssl=context) as response:
            assert await response.text() == "Hello World!"


# --- handler_test.go -------------------------------------------------------------------------

async def get_status(session: aiohttp.ClientSession, url: str, user: str, password: str) -> int:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    async with session.get(url, headers={"Authorization": f"Basic {token}"}) as response:
        return response.status


async def test_basic_auth_cache(testdata):
    async with Server(testdata / "web_config_users_noTLS.good.yml") as (url, _), \
            aiohttp.ClientSession() as session:
        assert await get_status(session, url, "alice", "alice123") == 200
        assert await get_status(session, url, "alice", "alice1234") == 401
        results = await asyncio.gather(*[get_status(session, url, "alice", p)
                                         for _ in range(150) for p in ("alice123",
                                                                       "alice1234")])
        assert results == [200, 401] * 150


async def test_basic_auth_with_fake_password(testdata):
    async with Server(testdata / "web_config_users_noTLS.good.yml") as (url, _), \
            aiohttp.ClientSession() as session:
        assert await get_status(session, url, "fakeuser", "fakepassword") == 401
        assert await get_status(session, url, "fakeuser", "fakepassword") == 401


async def test_bypass_basic_auth_vuln(testdata):
    async with Server(testdata / "web_config_users_noTLS.good.yml") as (url, _), \
            aiohttp.ClientSession() as session:
        assert await get_status(
            session, url, "alice$2y$12$1DpfPeqF9HzHJt.EWswy1exHluGfbhnn3yXhR7Xes6m3WJqFg0Wby",
            "fakepassword") == 401
        assert await get_status(
            session, url, "alice",
            "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSifakepassword") == 401


async def test_http_headers(testdata):
    async with Server(testdata / "web_config_headers.good.yml") as (url, _), \
            aiohttp.ClientSession() as session, session.get(url) as response:
        for name, value in {"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
                            "X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
                            "X-XSS-Protection": "1"}.items():
            assert response.headers[name] == value


# --- TestTLSConfigIsEnabled ------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ({}, False),
    ({"min_version": "TLS12", "prefer_server_cipher_suites": True}, False),
    ({"cert_file": "server.crt", "key_file": "server.key"}, True),
    ({"cert": "cert", "key": "key"}, True),
    ({"client_ca_file": "client_ca.crt"}, True),
    ({"client_auth_type": "RequireAndVerifyClientCert"}, True),
], ids=["empty config", "only non-enabling fields set", "cert_file and key_file set",
        "inline cert and key set", "only client CA file set", "only client auth type set"])
def test_tls_config_is_enabled(raw, expected):
    assert tls_enabled(raw) is expected


async def test_tls_keys_without_a_certificate_leave_tls_off(testdata, tmp_path):
    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n  min_version: TLS13\n  cipher_suites: "
                      "[TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n")
    assert load(config) is None
    async with Server(config) as (url, _), aiohttp.ClientSession() as session, \
            session.get(url) as response:
        assert url.startswith("http://") and await response.text() == "Hello World!"
