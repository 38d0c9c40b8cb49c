"""The webhook receiver on a real listener, fed deliveries shaped as Unpod's source sends
them: counted once, re-sends and forgeries refused as the platform needs, nothing personal
kept, logged or exported."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from exporter.config import ConfigError, Place, WebhookConfig, parse_config, parse_config_text
from exporter.targets import TargetKey
from exporter.tokens import TokenReader
from exporter.webconfig.ratelimit import RateLimiter
from exporter.webconfig.schema import RateLimit
from exporter.webhook import PollTrigger, WebhookService
from exporter.webhook.events import TaskFinished, call_duration, outcome
from tests.conftest import (
    EXE,
    config_yaml,
    free_port,
    parse_metrics,
    value,
    wait_for,
    write_tls,
)
from tests.unpod_webhooks import PERSONAL, call_event, cron_task, task_document

SECRET = "whs-7Q2p9xK4"
HEADER = "X-Unpod-Webhook-Secret"
AGENT = "space-agent-8qmk42"
GOOD = {HEADER: SECRET}


class Hook:
    def __init__(self, service: WebhookService, session: aiohttp.ClientSession) -> None:
        self.service = service
        self.session = session
        self.url = f"http://127.0.0.1:{service.port}/webhook"
        self.events: list[Place] = []

    async def post(self, payload: Any = None, headers: dict[str, str] | None = None,
                   data: bytes | None = None) -> tuple[int, str, str]:
        body = data if data is not None else json.dumps(payload).encode()
        async with self.session.post(self.url, data=body,
                                     headers=GOOD if headers is None else headers) as resp:
            return resp.status, resp.content_type, await resp.text()

    def series(self) -> dict[Any, float]:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.service.metrics)
        return parse_metrics(generate_latest(registry).decode())

    def requests(self, result: str) -> float | None:
        return value(self.series(), "unpod_webhook_requests_total", result=result)


def parse_webhook(raw: object) -> WebhookConfig | None:
    """The section as the whole config's parser reads it."""
    return parse_config({"orgs": [{"handle": "acme"}], "webhook": raw}).webhook


def webhook_config(**extra: Any) -> dict[str, Any]:
    """A section for a test; a key given as None is left out."""
    config = {"listen_address": "127.0.0.1:0", "secret_env": "TEST_WEBHOOK_SECRET",
              "agents": {AGENT: {"org": "acme", "space": "outbound-sales"}}, **extra}
    return {key: item for key, item in config.items() if item is not None}


@pytest.fixture
async def start_hook(monkeypatch) -> AsyncIterator[Callable[..., Awaitable[Hook]]]:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    started: list[Hook] = []

    async def start(**extra: Any) -> Hook:
        config = parse_webhook(webhook_config(**extra))
        assert config is not None
        hook: Hook
        service = WebhookService(config, TokenReader(), lambda place: hook.events.append(place))
        await service.start()
        hook = Hook(service, aiohttp.ClientSession())
        started.append(hook)
        return hook

    yield start
    for hook in started:
        await hook.session.close()
        await hook.service.stop()


@pytest.fixture
async def hook(start_hook) -> Hook:
    return await start_hook()


# --- accepted, counted once -----------------------------------------------------------------

async def test_a_task_document_is_counted_once_and_answered_with_json(hook):
    assert await hook.post(task_document()) == (200, "application/json", "{}")
    series = hook.series()
    assert value(series, "unpod_webhook_tasks_finished_total", org="acme",
                 space="outbound-sales", agent=AGENT, status="completed",
                 outcome="call_back") == 1
    assert value(series, "unpod_webhook_last_event_timestamp_seconds", org="acme",
                 space="outbound-sales", agent=AGENT) is not None
    assert hook.events == [Place("acme", "outbound-sales")]
    # the handler's re-send, and the calls cron's subset of the same task: one delivery
    assert await hook.post(task_document()) == (200, "application/json", "{}")
    assert await hook.post(cron_task()) == (200, "application/json", "{}")
    series = hook.series()
    assert value(series, "unpod_webhook_tasks_finished_total", org="acme",
                 space="outbound-sales", agent=AGENT, status="completed",
                 outcome="call_back") == 1
    assert hook.requests("accepted") == 1 and hook.requests("duplicate") == 2
    assert len(hook.events) == 1


async def test_a_new_status_of_the_same_task_is_a_new_delivery(hook):
    await hook.post(task_document(status="failed"))
    await hook.post(task_document(status="completed"))
    assert hook.requests("accepted") == 2
    assert value(hook.series(), "unpod_webhook_tasks_finished_total", org="acme",
                 space="outbound-sales", agent=AGENT, status="failed", outcome="unknown") == 1


async def test_an_unmapped_agent_counts_with_empty_org_and_space(hook):
    assert (await hook.post(task_document(assignee="other-agent-1", outcome="Not Connected"))
            )[0] == 200
    assert value(hook.series(), "unpod_webhook_tasks_finished_total", org="", space="",
                 agent="other-agent-1", status="completed", outcome="not_connected") == 1
    assert hook.events == []  # nothing to poll sooner


async def test_call_events_and_durations_from_hang_ups_only(hook):
    start, end = "2025-01-31 10:00:00.120000", "2025-01-31 10:02:05.620000"
    assert (await hook.post(call_event("call_started", start_time=start)))[0] == 200
    assert (await hook.post(call_event("call_hang_up", start_time=start, end_time=end)))[0] == 200
    assert (await hook.post(call_event("call_hang_up", start_time=start, end_time=end)))[0] == 200
    assert (await hook.post(call_event("sms_sent", start_time=start, end_time=end)))[0] == 200
    assert (await hook.post(call_event("call_missed", call_id="TH2")))[0] == 200
    series = hook.series()
    who = {"org": "acme", "space": "outbound-sales", "agent": AGENT}
    for event in ("call_started", "call_hang_up", "sms_sent", "call_missed"):
        assert value(series, "unpod_webhook_call_events_total", event=event, **who) == 1
    assert value(series, "unpod_webhook_call_duration_seconds_count", **who) == 1
    assert value(series, "unpod_webhook_call_duration_seconds_sum", **who) == 125.5
    assert value(series, "unpod_webhook_call_duration_seconds_bucket", le="120.0", **who) == 0
    assert value(series, "unpod_webhook_call_duration_seconds_bucket", le="180.0", **who) == 1
    assert hook.requests("duplicate") == 1


@pytest.mark.parametrize(("raw", "expected"), [
    ("Call Back", "call_back"), ("Not Connected", "not_connected"), ("Interested", "interested"),
    ("send-details!", "send_details_"), (None, "unknown"), ("", "unknown"), (3, "unknown"),
    ("x" * 65, "other"),
])
def test_outcomes_are_normalised(raw, expected):
    assert outcome(raw) == expected


@pytest.mark.parametrize(("start", "end", "seconds"), [
    ("2025-01-31 10:00:00", "2025-01-31 10:01:00", 60.0),
    ("2025-01-31T10:00:00Z", "2025-01-31T10:00:30+00:00", 30.0),
    ("2025-01-31 10:00:00", "None", None),  # the call never ended
    ("2025-01-31 10:05:00", "2025-01-31 10:00:00", None),  # now() against utcnow()
    ("2025-01-31 10:00:00", "2025-01-31T10:01:00+00:00", None),  # naive against aware
    ("2025-01-01 10:00:00", "2025-01-03 10:00:00", None),  # two days: not a call
    (1738317600, 1738317690.5, 90.5), (True, 5, None), ("1e400", "x" * 100, None),
])
def test_call_durations(start, end, seconds):
    assert call_duration(start, end) == seconds


# --- refused as the platform needs ----------------------------------------------------------

async def test_a_missing_or_wrong_secret_is_401_and_counts_nothing(hook):
    for headers in ({}, {HEADER: "wrong"}, {HEADER: SECRET + "x"}, {HEADER: SECRET[:-1]},
                    {"X-Other": SECRET}):
        status, content_type, _ = await hook.post(task_document(), headers=headers)
        assert (status, content_type) == (401, "application/json")
    assert hook.requests("unauthorized") == 5 and hook.requests("accepted") == 0
    assert value(hook.series(), "unpod_webhook_tasks_finished_total", org="acme",
                 space="outbound-sales", agent=AGENT, status="completed",
                 outcome="call_back") is None


async def test_bodies_over_1_mib_are_413_by_length_or_as_they_arrive(hook):
    padded = task_document()
    padded["output"]["notes"] = "n" * (1024 * 1024)
    body = json.dumps(padded).encode()
    assert (await hook.post(data=body))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]
    async with hook.session.post(hook.url, data=chunks(), headers=GOOD) as resp:
        assert resp.status == 413
    assert hook.requests("too_large") == 2
    # exactly 1 MiB is still a delivery
    fitting = json.dumps(task_document()).encode()
    fitting = fitting[:-1] + b"," + b'"pad":"' + b"p" * (1024 * 1024 - len(fitting) - 9) + b'"}'
    assert len(fitting) == 1024 * 1024
    assert (await hook.post(data=fitting))[0] == 200


@pytest.mark.parametrize("body", [
    b"", b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"null", b'{"hello": "world"}',
    b'{"task_id": "T1"}', b'{"task_id": 7, "status": "completed"}',
    b'{"task_id": "T1", "status": ["completed"]}', b'{"event": 5, "data": {}}',
    b'{"event": "", "data": {}}', b"[" * 100_000 + b"]" * 100_000,
])
async def test_malformed_bodies_are_400(hook, body):
    status, content_type, text = await hook.post(data=body)
    assert (status, content_type) == (400, "application/json")
    assert "error" in json.loads(text)
    assert hook.requests("invalid") == 1


async def test_a_body_that_does_not_decode_is_400_with_the_secret_and_401_without(hook):
    """aiohttp raises on a Content-Encoding the body does not follow; that is the sender's
    fault, answered and counted, never a 500 with a traceback."""
    garbled = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with hook.session.post(hook.url, data=b"not gzip at all",
                                 headers={**GOOD, **garbled}) as resp:
        assert resp.status == 400
    async with hook.session.post(hook.url, data=b"not gzip at all", headers=garbled) as resp:
        assert resp.status == 401
    assert hook.requests("invalid") == 1 and hook.requests("unauthorized") == 1


async def test_a_time_too_large_for_a_float_leaves_the_duration_out(hook):
    event = call_event("call_hang_up", start_time=10 ** 400, end_time=10 ** 400 + 5)
    assert (await hook.post(event))[0] == 200
    assert hook.requests("accepted") == 1


async def test_past_its_own_rate_limit_deliveries_get_429(hook):
    limiter = RateLimiter(RateLimit(interval=60, burst=2))
    hook.service.receiver._limiter = lambda: limiter
    statuses = [(await hook.post(task_document(task_id=f"T{i}")))[0] for i in range(4)]
    assert statuses == [200, 200, 429, 429]
    assert hook.requests("rate_limited") == 2


async def test_the_webhook_web_config_may_set_the_rate_limit(start_hook, tmp_path: Path):
    web = tmp_path / "webhook-web.yml"
    web.write_text(yaml.safe_dump({"rate_limit": {"interval": "1m", "burst": 1}}))
    hook = await start_hook(web_config_file=str(web))
    assert (await hook.post(task_document("T1")))[0] == 200
    status, content_type, _ = await hook.post(task_document("T2"))
    assert (status, content_type) == (429, "application/json")  # answered and counted here
    assert hook.requests("rate_limited") == 1
    assert (await hook.post(task_document("T3"), headers={HEADER: "x"}))[0] == 401


async def test_other_paths_and_methods_are_not_the_receiver(hook):
    async with hook.session.get(hook.url, headers=GOOD) as resp:
        assert resp.status == 405
    async with hook.session.post(hook.url.replace("/webhook", "/metrics"), headers=GOOD,
                                 data=b"{}") as resp:
        assert resp.status == 404


# --- labels: name rule and caps ---------------------------------------------------------------

async def test_agents_and_outcomes_are_capped_but_mapped_agents_keep_theirs(hook):
    for i in range(105):
        await hook.post(task_document(task_id=f"A{i}", assignee=f"agent-{i}"))
    for i in range(35):
        await hook.post(task_document(task_id=f"O{i}", assignee="agent-0", outcome=f"Mood {i}"))
    await hook.post(task_document(task_id="M1"))  # the mapped agent, after the cap
    await hook.post(task_document(task_id="N1", assignee="bad agent/name"))
    series = hook.series()
    agents = {dict(labels)["agent"] for name, labels in series
              if name == "unpod_webhook_tasks_finished_total"}
    assert {f"agent-{i}" for i in range(100)} <= agents and "agent-100" not in agents
    assert AGENT in agents and "other" in agents and "bad agent/name" not in agents
    outcomes = {dict(labels)["outcome"] for name, labels in series
                if name == "unpod_webhook_tasks_finished_total"}
    assert len(outcomes - {"other"}) == 32 and "other" in outcomes
    assert value(series, "unpod_webhook_tasks_finished_total", org="", space="", agent="other",
                 status="completed", outcome="call_back") == 6  # agent-100..104, bad name


async def test_a_value_equal_to_the_secret_is_never_exported(hook):
    tokens = TokenReader()
    config = parse_webhook(webhook_config())
    assert config is not None
    tokens.get(config.secret)
    service = WebhookService(config, tokens)
    service.metrics.record(TaskFinished(task_id="T1", agent=SECRET, status=SECRET,
                                        outcome=SECRET.lower()))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(service.metrics)
    assert SECRET.casefold() not in generate_latest(registry).decode().casefold()


# --- personal data stays out ----------------------------------------------------------------

async def test_personal_data_is_never_logged_kept_or_exported(hook, caplog):
    caplog.set_level(logging.DEBUG)
    await hook.post(task_document())
    await hook.post(task_document())
    await hook.post(call_event("call_hang_up", end_time="2025-01-31 10:02:05.620000"))
    await hook.post(task_document(), headers={HEADER: "wrong"})
    await hook.post(data=json.dumps(task_document())[:-3].encode())  # broken JSON
    await hook.post({"task_id": "T9", "status": {"contact": PERSONAL[0]}})
    exported = generate_latest_text(hook)
    kept = repr(vars(hook.service.receiver)) + repr(list(hook.service.receiver._dedup._seen))
    for text in (caplog.text, exported, kept):
        for personal in PERSONAL:
            assert personal.casefold() not in text.casefold()
    assert hook.requests("accepted") == 2 and hook.requests("invalid") == 2


def generate_latest_text(hook: Hook) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(hook.service.metrics)
    return generate_latest(registry).decode()


# --- the secret from a file, re-read on change ------------------------------------------------

async def test_a_secret_file_is_reread_when_it_changes(start_hook, tmp_path: Path):
    secret = tmp_path / "secret"
    secret.write_text("first-secret\n")
    hook = await start_hook(secret_file=str(secret), secret_env=None)
    assert (await hook.post(task_document("T1"), headers={HEADER: "first-secret"}))[0] == 200
    replacement = tmp_path / "secret.new"
    replacement.write_text("second-secret")
    os.replace(replacement, secret)  # as a kubelet swaps a Secret's file
    await asyncio.sleep(1.1)  # the file is looked at once a second
    assert (await hook.post(task_document("T2"), headers={HEADER: "first-secret"}))[0] == 401
    assert (await hook.post(task_document("T3"), headers={HEADER: "second-secret"}))[0] == 200
    secret.unlink()  # broken later: the last good secret stays
    await asyncio.sleep(1.1)
    assert (await hook.post(task_document("T4"), headers={HEADER: "second-secret"}))[0] == 200


# --- config --------------------------------------------------------------------------------------

def test_the_section_is_off_unless_given_and_read_whole_when_given():
    assert parse_config({"orgs": [{"handle": "acme"}]}).webhook is None
    assert parse_webhook(None) is None
    config = parse_webhook({"listen_address": "[::]:9443", "path": "/hooks/unpod",
                            "secret_file": " /run/secrets/hook ", "secret_header": "X-Hook",
                            "web_config_file": "hook-web.yml",
                            "agents": {AGENT: {"org": "acme", "space": "outbound-sales"},
                                       "org-agent": {"org": "acme"}}})
    assert config is not None
    assert (config.address, config.path, config.secret_header, config.web_config_file) == (
        ("::", 9443), "/hooks/unpod", "X-Hook", "hook-web.yml")
    assert (config.secret.kind, config.secret.ref) == ("token_file", "/run/secrets/hook")
    assert config.places() == {AGENT: Place("acme", "outbound-sales"),
                               "org-agent": Place("acme", "")}
    assert SECRET not in repr(config)


@pytest.mark.parametrize(("raw", "error"), [
    ({}, "webhook: exactly one of secret_env, secret_file is required"),
    ({"secret_env": "A", "secret_file": "/b"}, "exactly one of"),
    ({"secret_env": ""}, "webhook.secret_env: must be a non-empty string"),
    ({"secret_env": "A", "listen": ":1"}, "webhook.listen: unknown key"),
    ({"secret_env": "A", "listen_address": "9878"}, "webhook.listen_address: expected host:port"),
    ({"secret_env": "A", "listen_address": "::1:9878"}, "webhook.listen_address: put IPv6"),
    ({"secret_env": "A", "path": "webhook"}, "webhook.path: invalid value"),
    ({"secret_env": "A", "secret_header": "X Bad"}, "webhook.secret_header: invalid value"),
    ({"secret_env": "A", "agents": {"a b": {"org": "acme"}}}, "webhook.agents.a b:"),
    ({"secret_env": "A", "agents": {"a": {"space": "s"}}}, "webhook.agents.a.org: required"),
    ({"secret_env": "A", "agents": {"a": {"org": "acme", "x": 1}}}, "webhook.agents.a.x: unknown"),
    ({"secret_env": "A", "agents": {"a": {"org": "-x"}}}, "webhook.agents.a.org: invalid value"),
    ({"secret_env": "A", "agents": ["a"]}, "webhook.agents: expected a mapping"),
    ("yes", "webhook: expected a mapping"),
])
def test_config_errors_name_the_key(raw, error):
    with pytest.raises(ConfigError, match=error.replace("(", r"\(")):
        parse_webhook(raw)


async def test_an_unset_secret_variable_refuses_to_start(monkeypatch):
    monkeypatch.delenv("TEST_WEBHOOK_SECRET", raising=False)
    config = parse_webhook(webhook_config())
    assert config is not None
    with pytest.raises(ConfigError, match="webhook.secret_env: environment variable"):
        WebhookService(config, TokenReader())
    text = yaml.safe_dump({"api": {"token": "t"}, "orgs": [{"handle": "acme"}],
                           "webhook": webhook_config()})
    with pytest.raises(ConfigError, match="webhook.secret_env: environment variable"):
        parse_config_text(text)  # --config.check says so too


# --- TLS in the exporter-toolkit format -------------------------------------------------------

async def test_tls_from_a_web_config_of_its_own(start_hook, tmp_path: Path, ca):
    web = tmp_path / "webhook-web.yml"
    web.write_text(yaml.safe_dump({"tls_server_config": write_tls(tmp_path, ca)}))
    hook = await start_hook(web_config_file=str(web))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    url = hook.url.replace("http://", "https://")
    async with hook.session.post(url, json=task_document(), headers=GOOD, ssl=context) as resp:
        assert (resp.status, await resp.text()) == (200, "{}")
    with pytest.raises(aiohttp.ClientError):  # no plain HTTP on a TLS listener
        await hook.post(task_document("T2"))


# --- a flood never slows a scrape -------------------------------------------------------------

async def test_a_flood_of_forged_and_oversized_posts_never_slows_a_scrape(
        hook, fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme")
    running = await start_exporter(config_yaml(base, [{"handle": "acme"}]))
    await running.wait_ready()

    async def scrape() -> float:
        started = time.monotonic()
        response = await running.client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert response.status == 200
        await response.read()
        return time.monotonic() - started

    quiet = [await scrape() for _ in range(20)]
    oversized = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    refused: list[int] = []
    stop = asyncio.Event()

    async def flooder(index: int) -> None:
        while not stop.is_set():
            forged = index % 2 == 0
            try:
                status = (await hook.post(data=json.dumps(task_document()).encode(),
                                          headers={HEADER: f"guess-{index}"}) if forged
                          else await hook.post(data=oversized))[0]
                refused.append(status)
            except aiohttp.ClientError:  # an oversized body cut off mid-send
                refused.append(413)

    flooders = [asyncio.create_task(flooder(i)) for i in range(16)]
    try:
        await asyncio.sleep(0.2)
        flooded = []
        for _ in range(20):
            flooded.append(await scrape())
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.gather(*flooders)
    assert len(refused) > 100 and set(refused) <= {401, 413}
    assert hook.requests("accepted") == 0
    assert hook.requests("unauthorized") + hook.requests("too_large") >= 100
    # Same event loop, same process (and the flooders too): a scrape may slow by the loop's
    # share, never wait behind the flood.
    assert max(flooded) < 1.0, (quiet, flooded)
    assert statistics.median(flooded) < max(0.1, 10 * statistics.median(quiet)), (quiet, flooded)


# --- events drive polling: one trigger per cooldown and space ---------------------------------

async def test_events_make_each_target_due_at_most_once_per_cooldown():
    due: list[list[tuple[str, str]]] = []
    trigger = PollTrigger(lambda keys: due.append(list(keys)), cooldown=lambda key: 0.3)
    sales, survey = Place("acme", "outbound-sales"), Place("acme", "survey")
    trigger(sales)
    assert due == [[("acme", ""), ("acme", "outbound-sales")]]  # at once, org-wide first
    for _ in range(10):
        trigger(sales)  # a burst within the cooldown: one more trigger, at its end
    trigger(survey)  # its space is due at once; the org-wide target shares the cooldown
    assert due[1:] == [[("acme", "survey")]]
    await asyncio.sleep(0.2)
    assert len(due) == 2
    await asyncio.sleep(0.2)
    assert sorted(key for keys in due[2:] for key in keys) == [
        ("acme", ""), ("acme", "outbound-sales")]  # each once, whatever the burst
    count = len(due)
    await asyncio.sleep(0.4)
    assert len(due) == count  # nothing more without events
    trigger(Place("acme", ""))
    assert due[-1] == [("acme", "")]  # quiet for longer than the cooldown: at once again
    trigger(sales)
    trigger.close()  # the pending ones are cancelled
    count = len(due)
    await asyncio.sleep(0.4)
    assert len(due) == count


# --- end to end: an event makes the space's new figures visible within seconds ---------------

ORGS = [{"handle": "acme", "spaces": [{"name": "sales", "space_token": "sp_sales"},
                                      {"name": "survey", "space_token": "sp_survey"}]}]


def seed(fake, sales: int = 5, survey: int = 7) -> None:
    """Org-wide figures that are the sum of the spaces', as Unpod's are."""
    fake.set_analytics("acme", "sp_sales", calls=sales, completed=sales, failed=0)
    fake.set_analytics("acme", "sp_survey", calls=survey, completed=survey, failed=0)
    fake.set_analytics("acme", calls=sales + survey, completed=sales + survey, failed=0)


async def start_with_webhook(fake_api, start_exporter, monkeypatch, orgs: list[dict[str, Any]],
                             space: str) -> tuple[Any, str]:
    """The exporter polling ``orgs`` every minute (seeded), its webhook mapping AGENT to
    ``space``; returns it when ready, with the webhook's URL."""
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    fake, base = fake_api
    seed(fake)
    config = yaml.safe_load(config_yaml(base, orgs, interval="60s", idle_interval="10m"))
    config["webhook"] = webhook_config(agents={AGENT: {"org": "acme", "space": space}})
    running = await start_exporter(yaml.safe_dump(config))
    await running.wait_ready()
    assert running.exporter.webhook is not None
    return running, f"http://127.0.0.1:{running.exporter.webhook.port}/webhook"


async def test_an_event_of_a_mapped_agent_brings_the_new_figures_within_seconds(
        fake_api, start_exporter, monkeypatch):
    fake, _ = fake_api
    running, url = await start_with_webhook(fake_api, start_exporter, monkeypatch, ORGS, "sales")
    assert running.exporter.webhook is not None
    assert running.exporter.webhook.port != running.client.port  # a listener of its own
    polls = fake.count("acme")
    async with aiohttp.ClientSession() as session:
        async def deliver(payload: dict[str, Any], secret: str = SECRET) -> int:
            async with session.post(url, json=payload, headers={HEADER: secret}) as resp:
                return resp.status

        # forged, unmapped and malformed deliveries poll nothing
        assert await deliver(task_document("T0"), secret="guess") == 401
        assert await deliver(task_document("T1", assignee="someone-else")) == 200
        await asyncio.sleep(0.3)
        assert fake.count("acme") == polls

        seed(fake, sales=9)  # a call in sales finished: Unpod recomputed its figures
        assert await deliver(task_document("T2", outcome="Interested")) == 200

        async def shown() -> bool:
            series = await running.metrics()
            return value(series, "unpod_calls", org="acme", space="sales") == 9
        await wait_for(shown, 3, "the new figure on /metrics")
    assert fake.count("acme", None) == 2  # the org-wide target, once more
    assert fake.count("acme", "sp_sales") == 2  # polled after the org-wide answer changed
    series = await running.metrics()  # the receiver's own series on the /metrics listener
    assert value(series, "unpod_webhook_requests_total", result="accepted") == 2
    assert value(series, "unpod_webhook_requests_total", result="unauthorized") == 1
    assert value(series, "unpod_webhook_tasks_finished_total", org="acme", space="sales",
                 agent=AGENT, status="completed", outcome="interested") == 1
    # the webhook listener serves nothing else
    async with aiohttp.ClientSession() as session, session.get(
            url.replace("/webhook", "/metrics")) as resp:
        assert resp.status == 404


async def test_without_an_org_wide_target_the_event_polls_its_space(
        fake_api, start_exporter, monkeypatch):
    fake, _ = fake_api
    running, url = await start_with_webhook(fake_api, start_exporter, monkeypatch,
                                            [{**ORGS[0], "org_wide": False}], "survey")
    seed(fake, survey=8)
    async with aiohttp.ClientSession() as session:
        for event in ("call_started", "call_hang_up"):  # two events, one poll
            async with session.post(url, json=call_event(event), headers=GOOD) as resp:
                assert resp.status == 200

    async def shown() -> bool:
        series = await running.metrics()
        return value(series, "unpod_calls", org="acme", space="survey") == 8
    await wait_for(shown, 3, "the new figure on /metrics")
    await asyncio.sleep(0.3)
    assert fake.count("acme", "sp_survey") == 2 and fake.count("acme", "sp_sales") == 1
    assert fake.count("acme", None) == 0


# --- the real program -------------------------------------------------------------------------

def program_config(tmp_path: Path, base: str, listen: str) -> Path:
    path = tmp_path / "config.yaml"
    secret = tmp_path / "webhook-secret"
    secret.write_text(SECRET + "\n")
    path.write_text(yaml.safe_dump({
        "api": {"base_url": base, "token": "tok-secret-123"},
        "orgs": [{"handle": "acme"}],
        "webhook": {"listen_address": listen, "secret_file": str(secret),
                    "agents": {AGENT: {"org": "acme"}}}}))
    return path


def run_program(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=30)


async def test_the_program_serves_the_webhook_on_its_own_port(fake_api, process, tmp_path):
    fake, base = fake_api
    fake.set_analytics("acme")
    hook_port = free_port()
    exporter = process("--config.file", str(program_config(tmp_path, base,
                                                            f"127.0.0.1:{hook_port}")))
    await asyncio.to_thread(exporter.wait_http)
    url = f"http://127.0.0.1:{hook_port}/webhook"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=task_document(), headers=GOOD) as resp:
            assert (resp.status, await resp.text()) == (200, "{}")
        async with session.get(f"{exporter.base}/metrics") as resp:
            series = parse_metrics(await resp.text())
    assert value(series, "unpod_webhook_requests_total", result="accepted") == 1
    code, err = await asyncio.to_thread(exporter.stop)
    assert code == 0, err
    assert SECRET not in err and PERSONAL[0] not in err


def test_one_port_for_both_listeners_is_refused(tmp_path):
    port = free_port()
    config = program_config(tmp_path, "http://127.0.0.1:9", f":{port}")
    for args in (("--config.check",), ()):
        result = run_program("--config.file", str(config), "--web.listen-address",
                             f"127.0.0.1:{port}", *args)
        assert result.returncode == 1
        assert "webhook.listen_address" in result.stderr and "own" in result.stderr


def test_config_check_reads_the_webhook_secret(tmp_path):
    config = program_config(tmp_path, "http://127.0.0.1:9", "127.0.0.1:0")
    assert run_program("--config.file", str(config), "--config.check").returncode == 0
    (tmp_path / "webhook-secret").unlink()
    result = run_program("--config.file", str(config), "--config.check")
    assert result.returncode == 1 and "webhook.secret_file: cannot read" in result.stderr


@pytest.mark.parametrize(("cap", "polled"), [(3, False), (60, True)])
async def test_under_a_budget_events_spend_only_what_the_schedule_leaves(
        fake_api, start_exporter, monkeypatch, cap, polled):
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    fake, base = fake_api
    seed(fake)
    # three targets polled once a minute: a cap of 3 a minute leaves nothing, 60 plenty
    config = yaml.safe_load(config_yaml(base, ORGS, {"max_requests_per_minute": cap},
                                        interval="60s", change_driven=False))
    config["webhook"] = webhook_config(agents={AGENT: {"org": "acme", "space": "sales"}})
    running = await start_exporter(yaml.safe_dump(config))
    # the budget paces requests (one every 20 s at 3 a minute): wait for the org-wide one
    await wait_for(lambda: fake.count("acme", None) == 1, 5, "the first org-wide poll")
    await asyncio.sleep(0.1)
    assert running.exporter.webhook is not None
    scheduler = running.exporter.scheduler
    url = f"http://127.0.0.1:{running.exporter.webhook.port}/webhook"
    async with aiohttp.ClientSession() as session, session.post(
            url, json=task_document(), headers=GOOD) as resp:
        assert resp.status == 200  # counted all the same
    if polled:
        await wait_for(lambda: fake.count("acme", None) == 2, 3, "the org-wide poll")
    else:  # not made due: no poll waits at the gate for the schedule's budget
        await asyncio.sleep(0.5)
        assert not scheduler.busy(TargetKey("acme", ""))
        assert scheduler._due[TargetKey("acme", "")] > scheduler.clock.now() + 30
        assert fake.count("acme", None) == 1
    assert value(await running.metrics(), "unpod_webhook_requests_total",
                 result="accepted") == 1


@pytest.mark.parametrize(("secret", "status"), [(SECRET, 413), ("guess", 401)])
async def test_a_refused_large_body_is_never_read_and_its_connection_closes(
        hook, secret, status):
    """aiohttp would linger up to 10 s reading the rest: a flood of such posts then held
    every connection the listener allows."""
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.service.port)
    try:
        writer.write(f"POST /webhook HTTP/1.1\r\nHost: x\r\n{HEADER}: {secret}\r\n"
                     f"Content-Length: {2 * 1024 * 1024}\r\n\r\n".encode() + b"{" * 65536)
        await writer.drain()  # ... and the rest never comes
        async with asyncio.timeout(2):
            status_line = await reader.readline()
            assert status_line.split()[1] == str(status).encode()
            while await reader.read(65536):
                pass  # the server closes: EOF well before its 10 s of lingering
    finally:
        writer.close()


async def test_a_small_refused_body_is_dropped_and_the_answer_read(hook):
    for _ in range(3):  # each on a connection of its own, each answered, none reset
        status, _, text = await hook.post(task_document(),
                                          headers={HEADER: "guess"})
        assert (status, json.loads(text)) == (401, {"error": "unauthorized"})


async def test_past_its_refusals_a_second_the_listener_refuses_connections_before_http(hook):
    receiver = hook.service.receiver
    receiver._refusals = RateLimiter(RateLimit(interval=0.5, burst=3))
    for index in range(3):
        assert (await hook.post(task_document(f"T{index}"), headers={HEADER: "guess"}))[0] \
            == 401
    with pytest.raises(aiohttp.ClientError):  # aborted at accept: no HTTP at all
        await hook.post(task_document("T9"))
    assert hook.requests("unauthorized") == 3 and hook.requests("accepted") == 0
    await asyncio.sleep(0.6)  # the refusals' rate fell: deliveries are taken again
    assert (await hook.post(task_document("T10")))[0] == 200
