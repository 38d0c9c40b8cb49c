"""--web.config.file: real TLS handshakes (trustme), basic auth, headers, rotation, Prometheus."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
import subprocess
import sys

import aiohttp
import bcrypt
import pytest
import trustme
import yaml

from exporter.config import ConfigError
from exporter.webconfig import load_web_config
from tests.conftest import basic, free_port, wait_for, write_tls
from tests.prometheus import Prometheus

PASSWORD = "s3cret-pass"


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def client_context(ca: trustme.CA, **kwargs: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    for name, version in kwargs.items():
        setattr(context, name, version)
    return context


async def fetch(url: str, context: ssl.SSLContext | bool | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.get(
            url, ssl=context if context is not None else True, headers=headers) as response:
        return response.status, dict(response.headers), await response.text()


# --- parsing ---------------------------------------------------------------------------------

CERT = {"cert_file": "server.crt", "key_file": "server.key"}


@pytest.mark.parametrize("web, message", [
    # what Python's ssl cannot do: refused at start with the reason (docs/security.md table)
    ({"tls_server_config": {**CERT, "curve_preferences": ["X25519"]}},
     "tls_server_config.curve_preferences: not supported (Python's ssl module"),
    ({"tls_server_config": {**CERT, "client_auth_type": "RequestClientCert"}},
     "client_auth_type: RequestClientCert not supported (Python's ssl module"),
    ({"tls_server_config": {**CERT, "client_auth_type": "RequireAnyClientCert"}},
     "client_auth_type: RequireAnyClientCert not supported"),
    ({"tls_server_config": {**CERT, "min_version": "TLS10"}},
     "tls_server_config.min_version: TLS10 not supported (this Python's OpenSSL"),
    ({"tls_server_config": {**CERT, "max_version": "TLS11"}},
     "tls_server_config.max_version: TLS11 not supported"),
    ({"basic_auth_users": {"old": "$2$10$" + "a" * 53}}, "basic_auth_users.old: $2$ hashes not "
                                                          "supported (Python's bcrypt"),
    # what the toolkit refuses, refused the same way, naming the key
    ({"basic_auth_users": {"alice": "$2y$03$" + "a" * 53}},
     "basic_auth_users.alice: crypto/bcrypt: cost 03 is outside 4..31"),
    ({"basic_auth_users": {"alice": "$2y$32$" + "a" * 53}}, "cost 32 is outside 4..31"),
    ({"basic_auth_users": {"alice": "$3y$10$" + "a" * 53}}, "not a bcrypt hash"),
    ({"tls_server_config": {"cert_fil": "x"}}, "tls_server_config.cert_fil: unknown"),
    ({"basic_auth_user": {}}, "basic_auth_user: unknown"),
    ({"http_server_config": {"headers": {"X-Powered-By": "me"}}},
     'HTTP header "X-Powered-By" can not be configured'),
    ({"http_server_config": {"headers": {"X-Frame-Options": "DENY"}}},  # exact, as Go
     "invalid value for X-Frame-Options"),
    ({"tls_server_config": {"cert_file": "missing.crt", "key_file": "missing.key"}},
     "tls_server_config.cert_file: cannot read missing.crt: no such file"),
    ({"tls_server_config": {**CERT, "min_version": "TLS14"}}, "unknown TLS version: TLS14"),
    ({"tls_server_config": {**CERT, "min_version": "TLS13", "max_version": "TLS12"}},
     "min_version: above max_version"),
    ({"rate_limit": {"interval": "1s", "burst": -1}}, "rate_limit.burst"),
])
def test_bad_web_configs_name_the_key(tmp_path, ca, web, message):
    write_tls(tmp_path, ca)
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(web))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_web_config(str(path))


def test_client_cert_without_ca_uses_system_roots_and_key_must_match(tmp_path, ca):
    tls = write_tls(tmp_path, ca)
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"tls_server_config": {
        **tls, "client_auth_type": "RequireAndVerifyClientCert"}}))
    assert load_web_config(str(path)).tls.client_ca_pem is None  # as Go: the system's roots
    other = write_tls(tmp_path, trustme.CA(), "other")
    path.write_text(yaml.safe_dump({"tls_server_config": {
        "cert_file": tls["cert_file"], "key_file": other["key_file"]}}))
    with pytest.raises(ConfigError, match="failed to load X509KeyPair"):
        load_web_config(str(path))


@pytest.mark.parametrize("content", ["rate_limit: {burst: x}", "{{{", None])
def test_bad_web_config_file_exits_1(tmp_path, content):
    path = tmp_path / "web.yml"
    if content is not None:
        path.write_text(content)
    result = subprocess.run([sys.executable, "-m", "exporter", "--demo", "--web.config.file",
                             str(path), "--web.listen-address", f"127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "--web.config.file" in result.stderr and "Traceback" not in result.stderr


# --- TLS -------------------------------------------------------------------------------------

async def test_tls_serves_metrics_and_honours_min_version(serve, tmp_path, ca):
    url = await serve({"tls_server_config": {**write_tls(tmp_path, ca), "min_version": "TLS13"}})
    status, _, text = await fetch(url + "/metrics", client_context(ca))
    assert status == 200 and "unpod_up" in text
    with pytest.raises(aiohttp.ClientError):  # the server refuses the handshake
        await fetch(url + "/metrics", client_context(
            ca, maximum_version=ssl.TLSVersion.TLSv1_2))
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await fetch(url + "/metrics", client_context(trustme.CA()))  # server's CA unknown


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls12_minimum_refuses_tls11(serve, tmp_path, ca):
    url = await serve({"tls_server_config": write_tls(tmp_path, ca)})
    context = client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_1,
                             minimum_version=ssl.TLSVersion.TLSv1_1)
    context.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(aiohttp.ClientError):
        await fetch(url + "/metrics", context)
    assert (await fetch(url + "/metrics", client_context(
        ca, maximum_version=ssl.TLSVersion.TLSv1_2)))[0] == 200


async def test_client_certificates_required(serve, tmp_path, ca):
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
    url = await serve({"tls_server_config": {
        **write_tls(tmp_path, ca), "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": "clients.pem"}})
    with pytest.raises(aiohttp.ClientError):
        await fetch(url + "/-/healthy", client_context(ca))  # no client certificate
    good = client_context(ca)
    client_ca.issue_cert("prometheus@example").configure_cert(good)
    assert (await fetch(url + "/metrics", good))[0] == 200
    stranger = client_context(ca)
    trustme.CA().issue_cert("prometheus@example").configure_cert(stranger)
    with pytest.raises(aiohttp.ClientError):
        await fetch(url + "/metrics", stranger)  # signed by a CA the server does not trust


def peer_serial(port: int, ca: trustme.CA) -> int:
    context = client_context(ca)
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(
            raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509
    return x509.load_der_x509_certificate(der).serial_number


async def test_certificate_rotation_without_restart(serve, tmp_path, ca):
    url = await serve({"tls_server_config": write_tls(tmp_path, ca)})
    port = int(url.rsplit(":", 1)[1])
    first = await asyncio.to_thread(peer_serial, port, ca)
    write_tls(tmp_path, ca)  # new certificate and key, same file names
    second = await asyncio.to_thread(peer_serial, port, ca)
    assert first != second
    assert (await fetch(url + "/metrics", client_context(ca)))[0] == 200
    (tmp_path / "server.key").write_text("not a key")  # a broken rotation keeps the last good
    assert await asyncio.to_thread(peer_serial, port, ca) == second


# --- basic auth ------------------------------------------------------------------------------

async def test_basic_auth(serve):
    url = await serve({"basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD)},
                       "http_server_config": {"headers": {"X-Frame-Options": "deny"}}})
    ok = await fetch(url + "/metrics", headers=basic("prometheus", PASSWORD))
    assert ok[0] == 200 and "unpod_up" in ok[2] and ok[1]["X-Frame-Options"] == "deny"
    for headers in (basic("prometheus", "wrong"), basic("mallory", PASSWORD), None,
                    {"Authorization": "Basic !!!notbase64"}, {"Authorization": "Bearer x"},
                    {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()}):
        status, response_headers, _ = await fetch(url + "/metrics", headers=headers)
        assert status == 401, headers
        assert response_headers["WWW-Authenticate"].startswith("Basic realm=")
        assert response_headers["X-Frame-Options"] == "deny"
    for path in ("/", "/-/reload"):
        assert (await fetch(url + path))[0] == 401
    for path in ("/-/healthy", "/-/ready"):
        assert (await fetch(url + path))[0] == 200


async def test_password_over_72_bytes_is_refused(serve):
    long_password = "x" * 72
    url = await serve({"basic_auth_users": {"u": bcrypt_hash(long_password)}})
    assert (await fetch(url + "/metrics", headers=basic("u", long_password)))[0] == 200
    # bcrypt would ignore the 73rd byte and accept this: the exporter refuses it
    assert (await fetch(url + "/metrics", headers=basic("u", long_password + "y")))[0] == 401


async def test_successes_are_cached_and_failures_are_not(serve, tmp_path):
    url = await serve({"basic_auth_users": {"u": bcrypt_hash(PASSWORD)}})
    watcher_path = tmp_path / "web.yml"
    for _ in range(3):
        assert (await fetch(url + "/metrics", headers=basic("u", "nope")))[0] == 401
    for _ in range(3):
        assert (await fetch(url + "/metrics", headers=basic("u", PASSWORD)))[0] == 200
    # a new password in the file: the old one stops working at once, cache or not
    watcher_path.write_text(yaml.safe_dump({"basic_auth_users": {"u": bcrypt_hash("new-one")}}))
    assert (await fetch(url + "/metrics", headers=basic("u", PASSWORD)))[0] == 401
    assert (await fetch(url + "/metrics", headers=basic("u", "new-one")))[0] == 200
    watcher_path.write_text("basic_auth_users: {u: broken}")  # broken: last good kept
    assert (await fetch(url + "/metrics", headers=basic("u", "new-one")))[0] == 200


# --- Prometheus ------------------------------------------------------------------------------

@pytest.mark.parametrize("password, up", [(PASSWORD, 1.0), ("wrong", 0.0)])
async def test_real_prometheus_scrapes_over_tls_with_basic_auth(serve, tmp_path, ca, password,
                                                               up):
    url = await serve({"tls_server_config": write_tls(tmp_path, ca),
                       "basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD)}})
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    prom = Prometheus(prom_dir, scrape={"unpod-exporter": url.split("//")[1]}, rule_files=[],
                      job_options={"scheme": "https",
                                   "tls_config": {"ca_file": str(tmp_path / "ca.pem")},
                                   "basic_auth": {"username": "prometheus",
                                                  "password": password}})
    try:
        await asyncio.to_thread(prom.wait_ready)

        async def scraped() -> bool:
            return bool(await asyncio.to_thread(prom.query, 'up{job="unpod-exporter"}'))
        await wait_for(scraped, 20, "a scrape")
        result = await asyncio.to_thread(prom.query, 'up{job="unpod-exporter"}')
        assert float(result[0]["value"][1]) == up
        if up:
            calls = await asyncio.to_thread(prom.query, 'unpod_org_calls{org="acme"}')
            assert float(calls[0]["value"][1]) == 100
    finally:
        prom.stop()
