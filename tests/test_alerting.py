"""Alerts delivered for real: fake API -> exporter -> Prometheus (the mixin's rules, windows
shortened through its config) -> Alertmanager (monitoring/alertmanager.example.yaml, receivers
pointed at a webhook of this test) -> the webhook. Also the example's routes with amtool."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import TOKEN, config_yaml, wait_for
from tests.fakebacklog import PERSONAL
from tests.prometheus import Alertmanager, Prometheus

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
EXAMPLE = MONITORING / "alertmanager.example.yaml"
sys.path.insert(0, str(MONITORING))
import mixin  # noqa: E402

# target_down_for stays above the auth alert's own delay (two failures a back-off apart), as
# 10m is in production: an inhibition can only silence what starts after its source.
FAST = {"stuckAfterSeconds": 4, "stuckFor": "2s", "targetDownFor": "8s",
        "authWindow": "1m", "exporterDownFor": "1s", "inProgressAfterSeconds": 60,
        "inProgressFor": "2s"}


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("amtool")
    assert binary, "amtool missing: scripts/test.sh installs prometheus-alertmanager"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


def test_example_config_is_valid():
    result = amtool("check-config", str(EXAMPLE))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    assert "2 inhibit rules" in result.stdout


@pytest.mark.parametrize("labels, receiver", [
    (["alertname=UnpodExporterDown", "severity=critical"], "page"),
    (["alertname=UnpodAuthenticationFailing", "severity=critical", "org=acme"], "page"),
    (["alertname=UnpodTasksStuck", "severity=warning", "org=acme", "space=survey"], "ticket"),
    (["alertname=UnpodTargetDown", "severity=warning", "org=acme"], "ticket"),
    (["alertname=SomethingElse"], "ticket"),
])
def test_example_routes_by_severity(labels, receiver):
    result = amtool("config", "routes", "test", "--config.file", str(EXAMPLE), *labels)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


class Webhook:
    """The receiving end of Alertmanager's webhook_configs: every notification, in order."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.notifications.append(await request.json())
        return web.Response(text="ok")

    def alerts(self, status: str | None = None, **labels: str) -> list[dict[str, Any]]:
        return [alert for note in self.notifications for alert in note["alerts"]
                if (status is None or alert["status"] == status)
                and all(alert["labels"].get(k) == v for k, v in labels.items())]


def alertmanager_config(url: str) -> dict[str, Any]:
    """The example, as a user deploys it, with its receivers pointed at the test's webhook and
    its waits shortened."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"{url}/{receiver['name']}"
    return config


@pytest.fixture
async def chain(fake_api, start_exporter, tmp_path):
    fake, base = fake_api
    webhook = Webhook()
    app = web.Application()
    app.router.add_post("/{receiver}", webhook.handle)
    hook_server = TestServer(app, host="127.0.0.1")
    await hook_server.start_server()
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("alerts.yaml", "rules.yaml"):
        (rules / name).write_text(mixin.render(FAST)[name])
    am = Alertmanager(tmp_path, alertmanager_config(str(hook_server.make_url(""))))
    started: list[Any] = [am]
    try:
        await asyncio.to_thread(am.wait_ready)

        async def start(config_text: str) -> Prometheus:
            running = await start_exporter(config_text)
            await running.wait_ready()
            prom = Prometheus(tmp_path, scrape={"unpod-exporter": "127.0.0.1:"
                                                f"{running.client.server.port}"},
                              rule_files=[rules / "rules.yaml", rules / "alerts.yaml"],
                              alertmanager=am.address)
            started.append(prom)
            await asyncio.to_thread(prom.wait_ready)
            return prom

        yield fake, base, start, am, webhook
    finally:
        for process in started:
            process.stop()
        await hook_server.close()


async def test_alerts_reach_alertmanager_rendered_routed_inhibited_and_resolved(chain):
    fake, base, start, am, webhook = chain
    stuck_tasks = {"pending": 7, "running": 2, "completed": 10, "failed": 1}
    fake.set_analytics("acme", "sp_stuck", breakdown=stuck_tasks)
    fake.set_analytics("globex")  # its token is refused

    async def healthy_space_works() -> None:
        """sp_healthy finishes a task every half second; the org-wide figures are the sum of
        both spaces, as Unpod's are, so the org as a whole makes progress too."""
        done = 40
        while True:
            healthy = {"pending": 3, "running": 1, "completed": done, "failed": 0}
            fake.set_analytics("acme", "sp_healthy", breakdown=healthy)
            fake.set_analytics("acme", breakdown={k: stuck_tasks[k] + healthy[k]
                                                  for k in healthy})
            done += 1
            await asyncio.sleep(0.5)

    worker = asyncio.create_task(healthy_space_works())
    try:
        await check_the_chain(fake, base, start, am, webhook)
    finally:
        worker.cancel()


async def check_the_chain(fake, base, start, am, webhook) -> None:
    orgs = [{"handle": "acme", "spaces": [{"name": "stuck", "space_token": "sp_stuck"},
                                          {"name": "healthy", "space_token": "sp_healthy"}]},
            {"handle": "globex", "token": "revoked-token"}]
    await start(config_yaml(base, orgs, interval="1s", max_staleness="1m"))

    # the stuck-task alert arrives for exactly the stuck space, rendered, at the ticket route
    await wait_for(lambda: bool(webhook.alerts("firing", alertname="UnpodTasksStuck")), 40,
                   "UnpodTasksStuck at the webhook")
    stuck = webhook.alerts("firing", alertname="UnpodTasksStuck")
    assert {(a["labels"]["org"], a["labels"].get("space")) for a in stuck} == {("acme", "stuck")}
    annotations = stuck[0]["annotations"]
    assert annotations["summary"] == "Unpod tasks are stuck."
    assert annotations["description"].startswith("9 tasks are pending or running in acme/stuck")
    assert annotations["runbook_url"].endswith("docs/alerts.md#unpodtasksstuck")
    receivers = {note["receiver"] for note in webhook.notifications
                 if any(a["labels"]["alertname"] == "UnpodTasksStuck" for a in note["alerts"])}
    assert receivers == {"ticket"}

    # the auth alert arrives for the refused org, and pages
    await wait_for(lambda: bool(webhook.alerts("firing",
                                               alertname="UnpodAuthenticationFailing")),
                   30, "UnpodAuthenticationFailing at the webhook")
    auth = webhook.alerts("firing", alertname="UnpodAuthenticationFailing")
    assert {a["labels"]["org"] for a in auth} == {"globex"}
    assert {note["receiver"] for note in webhook.notifications
            if note["commonLabels"].get("alertname") == "UnpodAuthenticationFailing"} == {"page"}
    assert TOKEN not in json.dumps(webhook.notifications)
    assert "revoked-token" not in json.dumps(webhook.notifications)

    # the refused org's targets are down too, but that alert is inhibited by the auth alert
    def globex_down_inhibited() -> bool:
        return any(a["labels"]["alertname"] == "UnpodTargetDown"
                   and a["labels"].get("org") == "globex" and a["status"]["inhibitedBy"]
                   for a in am.alerts())
    await wait_for(lambda: asyncio.to_thread(globex_down_inhibited), 20,
                   "UnpodTargetDown of globex inhibited in Alertmanager")
    await asyncio.sleep(2.5)  # more than group_wait + group_interval
    assert not webhook.alerts(alertname="UnpodTargetDown", org="globex")

    # the stuck space's tasks move again: a resolved notification arrives
    fake.set_analytics("acme", "sp_stuck", breakdown={"pending": 0, "running": 0,
                                                      "completed": 19, "failed": 1})
    await wait_for(lambda: bool(webhook.alerts("resolved", alertname="UnpodTasksStuck",
                                               space="stuck")), 30, "the resolved notification")


async def test_exporter_down_inhibits_its_per_target_alerts(chain):
    _fake, _base, _start, am, webhook = chain
    # Straight to the real Alertmanager with the example's rules: an exporter that cannot be
    # scraped, and a per-target alert of the same job that is still firing.
    labels = {"job": "unpod-exporter", "severity": "warning"}
    am.post([{"labels": {"alertname": "UnpodExporterDown", "instance": "x:9877",
                         **labels, "severity": "critical"}},
             {"labels": {"alertname": "UnpodTasksStuck", "org": "acme", "space": "s", **labels}},
             {"labels": {"alertname": "UnpodTasksStuck", "org": "acme", "space": "s",
                         "job": "other-exporter", "severity": "warning"}}])

    def inhibited() -> dict[str, bool]:
        return {a["labels"]["job"]: bool(a["status"]["inhibitedBy"]) for a in am.alerts()
                if a["labels"]["alertname"] == "UnpodTasksStuck"}
    await wait_for(lambda: asyncio.to_thread(
        lambda: inhibited() == {"unpod-exporter": True, "other-exporter": False}), 10,
        "the per-target alert of the down exporter inhibited")
    await wait_for(lambda: bool(webhook.alerts(alertname="UnpodExporterDown")), 10, "page")
    await asyncio.sleep(2.5)
    assert {a["labels"]["job"] for a in webhook.alerts(alertname="UnpodTasksStuck")} == {
        "other-exporter"}


async def test_backlog_alerts_reach_alertmanager(chain):
    """A campaign that never starts (its analytics empty) pages UnpodTasksStuck for exactly
    that space, a healthy busy space with an old backlog does not; a task in progress for an
    hour pages UnpodTasksStuckInProgress; a scan cut by its cap says so."""
    fake, base, start, _am, webhook = chain
    now = time.time()
    backlog = fake.backlog
    fake.set_platform("acme", "sp_recall")
    fake.data[("acme", "sp_recall")] = {"call_analytics": {}, "call_status": {"success_rate": 0}}
    backlog.add_run("sp_recall", ["pending"] * 8, run_status="pending", created=now - 7200,
                    assignee="agent-recall")
    backlog.add_run("sp_busy", ["pending"] * 6 + ["in_progress"], created=now - 7200,
                    last_status_change=now - 30, assignee="agent-busy")
    backlog.add_run("sp_calls", ["in_progress", "completed"], created=now - 7200,
                    last_status_change=now - 3600, assignee="agent-calls")
    backlog.add_run("sp_big", ["pending"] * 45, created=now - 60, assignee="agent-big",
                    transcript_bytes=100)

    async def spaces_work() -> None:
        """busy and calls finish a task every half second, and so does the org."""
        done = 40
        while True:
            for token in ("sp_busy", "sp_calls", "sp_big", None):
                fake.set_analytics("acme", token, breakdown={
                    "pending": 6, "running": 1, "completed": done, "failed": 0})
            done += 1
            await asyncio.sleep(0.5)

    worker = asyncio.create_task(spaces_work())
    try:
        orgs = [{"handle": "acme", "spaces": [
            {"name": name, "space_token": f"sp_{name}"}
            for name in ("recall", "busy", "calls", "big")]}]
        prom = await start(config_yaml(base, orgs, interval="1s", max_staleness="1m")
                           + "backlog: {interval: 1s, page_size: 10, max_requests_per_scan: 3}\n")
        await wait_for(lambda: bool(webhook.alerts("firing", alertname="UnpodTasksStuck")), 40,
                       "UnpodTasksStuck for the campaign that never starts")
        await wait_for(lambda: bool(webhook.alerts("firing",
                                                   alertname="UnpodTasksStuckInProgress")),
                       30, "UnpodTasksStuckInProgress")
        await asyncio.sleep(3)  # the busy space had as long to show up, and did not
        stuck = webhook.alerts("firing", alertname="UnpodTasksStuck")
        assert {(a["labels"]["org"], a["labels"].get("space")) for a in stuck} == {
            ("acme", "recall")}
        assert stuck[0]["annotations"]["description"].startswith(
            "8 tasks are pending or running in acme/recall")
        in_progress = webhook.alerts("firing", alertname="UnpodTasksStuckInProgress")
        assert {a["labels"].get("space") for a in in_progress} == {"calls"}
        assert in_progress[0]["annotations"]["runbook_url"].endswith(
            "docs/alerts.md#unpodtasksstuckinprogress")
        # the cap cut big's scan short (45 tasks at 10 a page), and the series says so
        complete = {r["metric"]["space"]: r["value"][1]
                    for r in await asyncio.to_thread(prom.query, "unpod_backlog_scan_complete")}
        assert complete == {"recall": "1", "busy": "1", "calls": "1", "big": "0"}
        assert not any(secret in json.dumps(webhook.notifications) for secret in PERSONAL)
    finally:
        worker.cancel()
