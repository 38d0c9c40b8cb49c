"""Real-world networks: proxies, private CAs, client certificates, token rotation, /probe."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme
import yaml
from aiohttp import web

from exporter.config import ConfigError, parse_config_text
from exporter.probe import probe_wait
from tests.conftest import TOKEN, config_yaml, parse_metrics, value, wait_for
from tests.fakeapi import FakeUnpod, Fault
from tests.proxy import Proxy


@pytest.fixture
async def proxy():
    server = Proxy()
    url = await server.start()
    yield server, url
    await server.stop()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_api(ca, tmp_path):
    """The fake API over HTTPS with a certificate from a test CA (optionally mTLS)."""
    runners = []

    async def start(client_ca: trustme.CA | None = None) -> tuple[FakeUnpod, str]:
        fake = FakeUnpod()
        fake.set_analytics("acme", calls=321)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            client_ca.configure_trust(context)
        runner = web.AppRunner(fake.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return fake, f"https://127.0.0.1:{port}/api/v2/platform"

    ca.cert_pem.write_to_path(str(tmp_path / "api-ca.pem"))
    yield start
    for runner in runners:
        await runner.cleanup()


async def up_and_errors(running, org: str = "acme") -> tuple[float | None, float]:
    m = await running.metrics()
    errors = sum(v for (name, labels), v in m.items()
                 if name == "unpod_poll_errors_total" and ("org", org) in labels)
    return value(m, "unpod_up", org=org), errors


# --- proxies ---------------------------------------------------------------------------------

async def test_proxy_url_carries_the_requests(fake_api, proxy, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme", calls=77)
    server, url = proxy
    running = await start_exporter(config_yaml(base, [{"handle": "acme"}],
                                               api={"proxy_url": url}))
    await running.wait_ready()
    assert value(await running.metrics(), "unpod_org_calls", org="acme") == 77
    assert server.log == [("GET", f"{base}/organisation/analytics/")]


async def test_https_proxy_from_environment_and_no_proxy(tls_api, proxy, start_exporter,
                                                         tmp_path, monkeypatch):
    _fake, base = await tls_api()
    server, url = proxy
    monkeypatch.setenv("HTTPS_PROXY", url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    api = {"tls": {"ca_file": str(tmp_path / "api-ca.pem")}}
    running = await start_exporter(config_yaml(base, [{"handle": "acme"}], api=api))
    await running.wait_ready()
    assert value(await running.metrics(), "unpod_org_calls", org="acme") == 321
    host = base.split("//")[1].split("/")[0]
    assert server.log == [("CONNECT", host)]  # tunnelled: the proxy never sees the token

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    again = await start_exporter(config_yaml(base, [{"handle": "acme"}], api=api))
    await again.wait_ready()
    assert value(await again.metrics(), "unpod_up", org="acme") == 1
    assert len(server.log) == 1


# --- TLS to the API --------------------------------------------------------------------------

async def test_private_ca_refused_without_ca_file_accepted_with_it(tls_api, start_exporter,
                                                                  tmp_path, caplog):
    _fake, base = await tls_api()
    plain = await start_exporter(config_yaml(base, [{"handle": "acme"}]))
    await plain.wait_ready()
    m = await plain.metrics()
    assert value(m, "unpod_poll_errors_total", org="acme", reason="connection_error") == 1

    trusted = await start_exporter(config_yaml(base, [{"handle": "acme"}], api={
        "tls": {"ca_file": str(tmp_path / "api-ca.pem")}}))
    await trusted.wait_ready()
    assert value(await trusted.metrics(), "unpod_org_calls", org="acme") == 321

    caplog.set_level(logging.WARNING)
    insecure = await start_exporter(config_yaml(base, [{"handle": "acme"}], api={
        "tls": {"insecure_skip_verify": True}}))
    await insecure.wait_ready()
    assert value(await insecure.metrics(), "unpod_org_calls", org="acme") == 321
    assert any("insecure_skip_verify" in r.getMessage() for r in caplog.records)


async def test_client_certificate_to_the_api(tls_api, start_exporter, tmp_path):
    client_ca = trustme.CA()
    _fake, base = await tls_api(client_ca=client_ca)
    cert = client_ca.issue_cert("unpod-exporter")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "client.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    tls = {"ca_file": str(tmp_path / "api-ca.pem")}
    without = await start_exporter(config_yaml(base, [{"handle": "acme"}], api={"tls": tls}))
    await without.wait_ready()
    assert value(await without.metrics(), "unpod_up", org="acme") == 0
    with_cert = await start_exporter(config_yaml(base, [{"handle": "acme"}], api={"tls": {
        **tls, "cert_file": str(tmp_path / "client.crt"),
        "key_file": str(tmp_path / "client.key")}}))
    await with_cert.wait_ready()
    assert value(await with_cert.metrics(), "unpod_org_calls", org="acme") == 321


@pytest.mark.parametrize("api, message", [
    ({"tls": {"ca_file": "/nonexistent/ca.pem"}}, r"api\.tls\.ca_file: cannot use"),
    ({"tls": {"cert_file": "/nonexistent/c.pem"}}, r"api\.tls\.cert_file: cannot use"),
    ({"tls": {"key_file": "/x"}}, r"api\.tls\.key_file: given without"),
    ({"tls": {"insecure_skip_verify": "yes"}}, r"api\.tls\.insecure_skip_verify: expected"),
    ({"tls": {"verify": False}}, r"api\.tls\.verify: unknown key"),
    ({"proxy_url": "socks5://proxy:1080"}, r"api\.proxy_url: expected an http"),
])
def test_network_config_errors_name_the_key(api, message):
    with pytest.raises(ConfigError, match=message):
        parse_config_text(yaml.safe_dump({"api": {"token": "t", **api},
                                          "orgs": [{"handle": "a"}]}))


def test_bad_pem_is_a_config_error(tmp_path):
    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    with pytest.raises(ConfigError, match=r"api\.tls\.ca_file: cannot use"):
        parse_config_text(yaml.safe_dump({"api": {"token": "t", "tls": {
            "ca_file": str(tmp_path / "bad.pem")}}, "orgs": [{"handle": "a"}]}))


def test_config_check_warns_and_hides_proxy_credentials(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"api": {
        "token": "t", "proxy_url": "http://user:pa55word@proxy.internal:3128",
        "tls": {"insecure_skip_verify": True}}, "orgs": [{"handle": "a"}]}))
    result = subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(config),
                             "--config.check"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "insecure_skip_verify" in result.stderr
    assert "http://proxy.internal:3128" in result.stdout
    assert "pa55word" not in result.stdout + result.stderr


# --- credentials -----------------------------------------------------------------------------

def kubernetes_secret(root: Path, token: str, generation: int) -> None:
    """Write the token the way the kubelet updates a mounted Secret: new timestamped dir,
    then an atomic swap of the ``..data`` symlink."""
    data = root / f"..2026_11_28_{generation:02d}"
    data.mkdir()
    (data / "token").write_text(token)
    link = root / "..data_tmp"
    link.symlink_to(data.name)
    os.replace(link, root / "..data")
    if not (root / "token").is_symlink():
        (root / "token").symlink_to("..data/token")


async def test_token_rotation_without_a_failed_poll(fake_api, start_exporter, tmp_path):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.tokens = {"token-one"}
    secret = tmp_path / "secret"
    secret.mkdir()
    kubernetes_secret(secret, "token-one\n", 1)
    text = config_yaml(base, [{"handle": "acme", "token_file": str(secret / "token")}],
                       interval="100ms", max_staleness="5s")
    running = await start_exporter(text)
    await running.wait_ready()
    await wait_for(lambda: fake.count("acme") >= 5, 3, "polls with the first token")
    kubernetes_secret(secret, "token-two\n", 2)
    fake.tokens = {"token-two"}  # same moment, no await in between
    await wait_for(lambda: sum(r.authorization == "Token token-two" for r in fake.requests) >= 5,
                   3, "polls with the rotated token")
    up, errors = await up_and_errors(running)
    assert up == 1 and errors == 0


async def test_empty_token_file_keeps_the_last_good_token(fake_api, start_exporter, tmp_path,
                                                         caplog):
    fake, base = fake_api
    fake.set_analytics("acme")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    running = await start_exporter(config_yaml(
        base, [{"handle": "acme", "token_file": str(token_file)}], interval="100ms",
        max_staleness="5s"))
    await running.wait_ready()
    caplog.set_level(logging.WARNING)
    token_file.write_text("")
    polls = fake.count("acme")
    await wait_for(lambda: fake.count("acme") >= polls + 5, 3, "polls after emptying")
    assert await up_and_errors(running) == (1, 0)
    unusable = [r for r in caplog.records if "unusable" in r.getMessage()]
    assert len(unusable) == 1 and TOKEN not in unusable[0].getMessage()


async def test_per_org_interval(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("fast")
    fake.set_analytics("slow")
    running = await start_exporter(config_yaml(
        base, [{"handle": "fast", "interval": "100ms"}, {"handle": "slow"}], interval="1s",
        max_staleness="5s"))
    await running.wait_ready()
    await asyncio.sleep(2)
    assert fake.count("fast") >= 12 and fake.count("slow") <= 3
    m = await running.metrics()
    assert value(m, "unpod_exporter_poll_interval_seconds", org="fast") == 0.1
    assert value(m, "unpod_exporter_poll_interval_seconds", org="slow") == 1


# --- /probe ----------------------------------------------------------------------------------

async def probe(running, query: str, scrape_timeout: str | None = None) -> tuple[int, str]:
    headers = {} if scrape_timeout is None else {
        "X-Prometheus-Scrape-Timeout-Seconds": scrape_timeout}
    response = await running.client.get(f"/probe?{query}", headers=headers)
    return response.status, await response.text()


def test_probe_waits_for_budget_as_long_as_the_scrape_timeout_allows():
    assert probe_wait(None) == 10.0 and probe_wait("") == 10.0  # no header: ten seconds
    assert probe_wait("3") == 2.5 and probe_wait("0.75") == 0.25  # half a second to answer
    assert probe_wait("30") == 10.0  # never over ten seconds
    assert probe_wait("0.2") == 0.0  # too short to wait at all: only an admission at once
    for junk in ("soon", "nan", "inf", "-1", "0", "1e999"):
        assert probe_wait(junk) == 10.0, junk


async def test_a_probe_gives_up_on_budget_before_prometheus_gives_up_on_it(fake_api,
                                                                          start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme")
    throttled: list[float] = []

    def once() -> Fault | None:
        if not throttled:
            throttled.append(time.monotonic())
            return Fault(429, {"detail": "throttled"}, {"Retry-After": "2"})
        return None

    fake.fail("acme", None, once)  # the first poll: the API asks for two seconds' pause
    running = await start_exporter(config_yaml(base, [{"handle": "acme"}]))
    await running.wait_ready()
    started = time.monotonic()
    status, _ = await probe(running, "org=acme", scrape_timeout="1.5")
    assert status == 503  # a second to wait, the pause lasts longer: said at once
    assert time.monotonic() - started < 0.5 and fake.count() == 1
    status, text = await probe(running, "org=acme", scrape_timeout="4")
    assert status == 200 and value(parse_metrics(text), "unpod_up", org="acme") == 1
    assert time.monotonic() >= throttled[0] + 2  # sent after the pause, within 3.5 s
    assert fake.count() == 2


async def test_probe_polls_one_target_now(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme", calls=10)
    fake.set_analytics("acme", "sp_1", calls=5)
    fake.set_analytics("globex", calls=1)
    orgs = [{"handle": "acme", "spaces": [{"name": "sales", "space_token": "sp_1"}]},
            {"handle": "globex"}]
    running = await start_exporter(config_yaml(base, orgs))
    await running.wait_ready()
    fake.set_analytics("acme", "sp_1", calls=6)
    status, text = await probe(running, "org=acme&space=sales")
    assert status == 200
    m = parse_metrics(text)
    assert value(m, "unpod_calls", org="acme", space="sales") == 6
    assert value(m, "unpod_up", org="acme", space="sales") == 1
    assert {labels for (name, labels) in m if name == "unpod_calls"} == {
        frozenset({("org", "acme"), ("space", "sales")})}  # that target alone
    assert value(m, "unpod_exporter_targets") is None
    assert fake.count("acme", "sp_1") == 2
    status, text = await probe(running, "org=globex")
    assert status == 200 and value(parse_metrics(text), "unpod_org_calls", org="globex") == 1
    for query in ("org=nobody", "org=acme&space=nope", "", "space=sales", "org=acme&space=",
                  "org=acme&org=globex", "org=acme&target=http://evil.example/",
                  "org=globex&space=sales"):
        assert (await probe(running, query))[0] == 400, query
    assert len(fake.requests) == 5  # nothing sent for the refused probes


async def test_probe_respects_budget_and_back_off(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme")
    fake.set_analytics("locked")
    fake.fail("locked", None, "expired_token")
    running = await start_exporter(config_yaml(
        base, [{"handle": "acme"}, {"handle": "locked"}], api={"max_requests_per_minute": 3}))
    running.exporter.probe_budget_wait = 0.3
    await running.wait_ready()
    assert (await probe(running, "org=acme"))[0] == 200  # third request of the minute
    assert (await probe(running, "org=acme"))[0] == 503  # budget spent
    assert fake.count() == 3
    status, text = await probe(running, "org=locked")  # 401 back-off: nothing is sent
    assert status == 200 and value(parse_metrics(text), "unpod_up", org="locked") == 0
    assert fake.count("locked") == 1
