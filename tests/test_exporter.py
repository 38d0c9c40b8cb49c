"""End to end in one process: fake Unpod API -> exporter -> /metrics, parsed for real."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import logging
import socket

import pytest
import trustme
import yaml

from exporter.app import Exporter
from exporter.client import REASONS
from exporter.config import parse_config_text
from tests.conftest import TOKEN, config_yaml, free_port, parse_metrics, value, wait_for
from tests.fakeapi import Fault

ORGS = [
    {"handle": "acme", "spaces": [{"name": "outbound-sales", "space_token": "sp_sales_1"},
                                  {"name": "renewals", "space_token": "sp_renew_2"}]},
    {"handle": "globex", "spaces": [{"name": "survey", "space_token": "sp_survey_3"}]},
]


def seed(fake):
    fake.set_analytics("acme", None, calls=1250, completed=1100, failed=150, avg=45.3,
                       tasks=500, breakdown={"pending": 20, "running": 5, "completed": 450,
                                             "failed": 25})
    fake.set_analytics("acme", "sp_sales_1", calls=800, completed=700, failed=100, avg=50.0,
                       tasks=300)
    fake.set_analytics("acme", "sp_renew_2", calls=0, completed=0, failed=0, avg=0, tasks=0,
                       breakdown={})
    fake.set_analytics("globex", None, calls=10, completed=4, failed=6, avg=12, tasks=3,
                       breakdown={"in_progress": 2, "scheduled": 1})
    fake.set_analytics("globex", "sp_survey_3", calls=10, completed=4, failed=6, avg=12,
                       tasks=3, breakdown={"pending": 1})


@pytest.fixture
async def seeded(fake_api, start_exporter):
    """The exporter polling ORGS against the fake API seeded with seed(), ready."""
    fake, base = fake_api
    seed(fake)
    running = await start_exporter(config_yaml(base, ORGS))
    await running.wait_ready()
    return fake, running


async def test_values_equal_what_the_api_served(seeded):
    _fake, running = seeded
    m = await running.metrics()

    org = {"org": "acme"}
    assert value(m, "unpod_org_calls", **org) == 1250
    assert value(m, "unpod_org_calls_completed", **org) == 1100
    assert value(m, "unpod_org_calls_failed", **org) == 150
    assert value(m, "unpod_org_call_success_ratio", **org) == pytest.approx(1100 / 1250)
    assert value(m, "unpod_org_call_average_duration_seconds", **org) == 45.3
    assert value(m, "unpod_org_tasks", **org) == 500
    assert value(m, "unpod_org_tasks_by_status", status="pending", **org) == 20
    assert value(m, "unpod_org_tasks_by_status", status="failed", **org) == 25

    sales = {"org": "acme", "space": "outbound-sales"}
    assert value(m, "unpod_calls", **sales) == 800
    assert value(m, "unpod_call_success_ratio", **sales) == pytest.approx(700 / 800)
    assert value(m, "unpod_up", **sales) == 1
    assert value(m, "unpod_up", org="globex") == 1
    # no calls yet: no ratio (0/0 is not a ratio), but the counts are there
    renew = {"org": "acme", "space": "renewals"}
    assert value(m, "unpod_calls", **renew) == 0
    assert value(m, "unpod_call_success_ratio", **renew) is None
    assert value(m, "unpod_exporter_targets") == 5
    assert value(m, "unpod_api_requests_total", org="acme", endpoint="analytics",
                 outcome="ok") == 3


async def test_labels_are_exactly_org_and_space(seeded):
    _fake, running = seeded
    m = await running.metrics()
    label_sets = {labels for (name, labels) in m if name == "unpod_calls"}
    assert label_sets == {  # spaces only: sum(unpod_calls) never counts a call twice
        frozenset({("org", "acme"), ("space", "outbound-sales")}),
        frozenset({("org", "acme"), ("space", "renewals")}),
        frozenset({("org", "globex"), ("space", "survey")}),
    }
    org_sets = {labels for (name, labels) in m if name == "unpod_org_calls"}
    assert org_sets == {frozenset({("org", "acme")}), frozenset({("org", "globex")})}
    text = await (await running.client.get("/metrics")).text()
    for secret in (TOKEN, "sp_sales_1", "sp_renew_2", "sp_survey_3"):
        assert secret not in text


async def test_unknown_statuses_pass_through_and_documented_ones_are_always_there(
        fake_api, start_exporter):
    fake, base = fake_api
    seed(fake)
    running = await start_exporter(config_yaml(base, ORGS))
    await running.wait_ready()
    m = await running.metrics()
    statuses = {dict(labels)["status"]: v for (name, labels), v in m.items()
                if name == "unpod_org_tasks_by_status" and dict(labels) == {
                    "org": "globex", "status": dict(labels)["status"]}}
    assert statuses == {"pending": 0, "running": 0, "completed": 0, "failed": 0,
                        "in_progress": 2, "scheduled": 1}


@pytest.mark.parametrize("fault, reason", [
    ("missing_org_handle", "bad_request"),
    ("no_credentials", "unauthorized"),
    ("expired_token", "unauthorized"),
    ("invalid_org", "forbidden"),
    ("org_not_found", "not_found"),
    ("invalid_space_token", "not_found"),  # HTTP 206, classified by its message
    ("invalid_org_handle_206", "not_found"),
    ("no_space_access", "forbidden"),
    ("other_206", "invalid_response"),
    ("invalid_token", "unauthorized"),
    ("rate_limited", "rate_limited"),
    ("drf_throttled", "rate_limited"),
    ("server_error_html", "server_error"),
    ("view_exception", "server_error"),
    ("not_json", "invalid_response"),
    ("wrong_shape", "invalid_response"),
    ("half_platform_shape", "invalid_response"),
    ("negative_value", "invalid_response"),
    ("non_numeric_value", "invalid_response"),
    (Fault(200, b"", delay=1.0), "timeout"),
])
async def test_each_api_error_is_classified_and_isolated(fake_api, start_exporter, caplog,
                                                         fault, reason):
    fake, base = fake_api
    seed(fake)
    fake.fail("acme", "sp_sales_1", fault)
    caplog.set_level(logging.DEBUG)
    running = await start_exporter(config_yaml(base, ORGS, api={"timeout": "300ms"}))
    await running.wait_ready(timeout=10)
    m = await running.metrics()
    sales = {"org": "acme", "space": "outbound-sales"}
    assert value(m, "unpod_up", **sales) == 0
    assert value(m, "unpod_calls", **sales) is None
    for other in REASONS:
        expected = 1 if other == reason else 0
        assert value(m, "unpod_poll_errors_total", reason=other, **sales) == expected, other
    # timeouts, connection errors and 5xx are retried (every attempt counted); others are not
    attempts = 3 if reason in ("timeout", "server_error") else 1
    assert fake.count("acme", "sp_sales_1") == attempts
    assert value(m, "unpod_api_requests_total", org="acme", endpoint="analytics",
                 outcome=reason) == attempts
    # the other targets are untouched
    assert value(m, "unpod_up", org="acme") == 1
    assert value(m, "unpod_org_calls", org="acme") == 1250
    assert value(m, "unpod_calls", org="acme", space="renewals") == 0
    assert value(m, "unpod_up", org="globex", space="survey") == 1
    # one log line names the target and reason, and carries no secret
    down = [r for r in caplog.records if r.getMessage() == "target down"]
    assert len(down) == 1
    assert down[0].fields["reason"] == reason
    assert down[0].fields["space"] == "outbound-sales"
    for record in caplog.records:
        if record.name == "aiohttp.access":
            continue  # the fake API's own access log, not the exporter's
        line = logging.Formatter().format(record) + repr(getattr(record, "fields", ""))
        assert TOKEN not in line and "sp_sales_1" not in line


async def test_refused_connection_is_a_connection_error(start_exporter):
    from tests.conftest import free_port
    base = f"http://127.0.0.1:{free_port()}/api/v2/platform"
    running = await start_exporter(config_yaml(base, [{"handle": "acme"}]))
    await running.wait_ready()
    m = await running.metrics()
    assert value(m, "unpod_up", org="acme") == 0
    assert value(m, "unpod_poll_errors_total", org="acme", reason="connection_error") == 1


async def test_readiness_waits_for_the_first_attempt(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake)
    fake.fail("globex", None, Fault(200, b"", delay=1.0))
    running = await start_exporter(config_yaml(base, ORGS))
    assert (await running.client.get("/-/ready")).status == 503
    assert (await running.client.get("/-/healthy")).status == 200
    await running.wait_ready(timeout=5)
    m = await running.metrics()
    assert value(m, "unpod_poll_errors_total", org="globex", reason="timeout") == 0
    assert value(m, "unpod_poll_errors_total", org="globex", reason="invalid_response") == 1


async def test_openmetrics_and_gzip(seeded):
    _fake, running = seeded
    response = await running.client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0",
                             "Accept-Encoding": "gzip"}, auto_decompress=False)
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    text = gzip.decompress(await response.read()).decode()
    assert text.endswith("# EOF\n")
    assert 'unpod_org_calls{org="acme"} 1250.0' in text
    plain = await running.client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "Content-Encoding" not in plain.headers
    assert 'unpod_org_calls{org="acme"} 1250.0' in await plain.text()


async def test_stale_analytics_disappear_but_health_stays(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake)
    orgs = [{"handle": "acme"}]
    running = await start_exporter(config_yaml(base, orgs, interval="200ms", max_staleness="1s"))
    await running.wait_ready()
    assert value(await running.metrics(), "unpod_org_calls", org="acme") == 1250
    fake.fail("acme", None, "server_error_html")

    async def withdrawn() -> bool:
        return value(await running.metrics(), "unpod_org_calls", org="acme") is None
    await wait_for(withdrawn, 4, "analytics withdrawn")
    m = await running.metrics()
    assert value(m, "unpod_up", org="acme") == 0
    assert value(m, "unpod_last_success_timestamp_seconds", org="acme") is not None
    assert value(m, "unpod_poll_errors_total", org="acme", reason="server_error") >= 1
    fake.fail("acme", None, None)

    async def back() -> bool:
        return value(await running.metrics(), "unpod_org_calls", org="acme") == 1250
    await wait_for(back, 4, "analytics back")


async def test_progress_timestamp_moves_only_when_finished_tasks_grow(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme", None, breakdown={"pending": 5, "completed": 10, "failed": 2})
    running = await start_exporter(config_yaml(base, [{"handle": "acme", "interval": "200ms"}],
                                               max_staleness="5s"))
    await running.wait_ready()
    first = value(await running.metrics(), "unpod_org_tasks_last_progress_timestamp_seconds",
                  org="acme")
    assert first is not None
    polls = fake.count("acme")
    await wait_for(lambda: fake.count("acme") >= polls + 2, 3, "two more polls")
    same = value(await running.metrics(), "unpod_org_tasks_last_progress_timestamp_seconds",
                 org="acme")
    assert same == first  # pending alone does not count as progress
    fake.set_analytics("acme", None, breakdown={"pending": 4, "completed": 11, "failed": 2})

    async def moved() -> bool:
        m = await running.metrics()
        progress = value(m, "unpod_org_tasks_last_progress_timestamp_seconds", org="acme")
        return (progress or 0) > first
    await wait_for(moved, 3, "progress timestamp to move")


async def test_polls_are_spread_over_the_interval(fake_api, start_exporter):
    fake, base = fake_api
    orgs = [{"handle": f"org{i}", "interval": "1s"} for i in range(10)]
    for i in range(10):
        fake.set_analytics(f"org{i}")
    running = await start_exporter(config_yaml(base, orgs, concurrency=10))
    await running.wait_ready()
    await wait_for(lambda: len(fake.requests) >= 30, 5, "three rounds")
    later = sorted(r.at for r in fake.requests[10:30])
    gaps = [b - a for a, b in itertools.pairwise(later)]
    # ten targets in a 1 s interval: one poll about every 100 ms, never a burst of ten
    assert max(gaps) < 0.35
    assert sum(1 for g in gaps if g < 0.01) <= 3
    per_target = [r.at for r in fake.requests if r.org == "org3"]
    assert all(0.45 <= b - a <= 1.6 for a, b in itertools.pairwise(per_target))


async def test_landing_page_escapes_and_lists_targets(fake_api, start_exporter):
    fake, base = fake_api
    seed(fake)
    orgs = [{"handle": "acme", "spaces": [{"name": "<b>bold</b>", "space_token": "sp_x"}]}]
    running = await start_exporter(config_yaml(base, orgs))
    await running.wait_ready()
    page = await (await running.client.get("/")).text()
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    assert 'href="/metrics"' in page
    assert "sp_x" not in page and TOKEN not in page


async def test_user_agent_and_headers_sent(seeded):
    fake, _running = seeded
    from exporter import __version__
    assert {r.user_agent for r in fake.requests} == {f"unpod-exporter/{__version__}"}
    assert {r.authorization for r in fake.requests} == {f"Token {TOKEN}"}
    assert {(r.org, r.space_token) for r in fake.requests} == {
        ("acme", None), ("acme", "sp_sales_1"), ("acme", "sp_renew_2"),
        ("globex", None), ("globex", "sp_survey_3")}


async def test_metrics_parse_and_carry_exporter_metrics(seeded):
    _fake, running = seeded
    text = await (await running.client.get("/metrics")).text()
    m = parse_metrics(text)
    from exporter import __version__
    assert value(m, "unpod_exporter_build_info", version=__version__) == 1
    assert value(m, "unpod_exporter_config_last_reload_successful") == 1
    assert value(m, "unpod_exporter_poll_interval_seconds", org="acme") == 60
    assert any(name.startswith("process_") for name, _ in m)
    assert any(name.startswith("python_") for name, _ in m)


# --- lifecycle -------------------------------------------------------------------------------

def _webhook_config(base: str, port: int, **api: object) -> str:
    doc = yaml.safe_load(config_yaml(base, [{"handle": "acme"}], api=api))
    doc["webhook"] = {"listen_address": f"127.0.0.1:{port}", "secret_env": "TEST_HOOK_SECRET"}
    return yaml.safe_dump(doc)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_stop_undoes_every_part_in_reverse(fake_api, monkeypatch):
    fake, base = fake_api
    fake.set_analytics("acme")
    monkeypatch.setenv("TEST_HOOK_SECRET", "hook-secret")
    port = free_port()
    exporter = Exporter(parse_config_text(_webhook_config(base, port)))
    before = asyncio.all_tasks()
    await exporter.start()
    assert not _port_free(port)  # the webhook receiver listens
    await wait_for(lambda: fake.count() == 1, 3, "the first poll")
    await exporter.stop()
    assert exporter._session is not None and exporter._session.closed
    assert _port_free(port)
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()
    await exporter.stop()  # twice is harmless


async def test_a_start_that_fails_half_way_undoes_what_it_started(fake_api, monkeypatch,
                                                                  tmp_path):
    fake, base = fake_api
    monkeypatch.setenv("TEST_HOOK_SECRET", "hook-secret")
    port = free_port()
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    exporter = Exporter(parse_config_text(_webhook_config(base, port,
                                                          tls={"ca_file": str(ca)})))
    # replaced by something unusable after the config was read: the API client, made after
    # the webhook receiver and the session started, cannot be built
    ca.write_text("not a certificate\n")
    before = asyncio.all_tasks()
    with pytest.raises(Exception) as failure:
        await exporter.start()
    assert not isinstance(failure.value, AssertionError)
    assert _port_free(port)  # the receiver was stopped again
    assert exporter._session is not None and exporter._session.closed
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()
    assert fake.count() == 0
