"""The monitoring mixin: promtool on the rules, and a real Prometheus end to end."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import config_yaml, wait_for
from tests.prometheus import Prometheus, promtool

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
sys.path.insert(0, str(MONITORING))
import mixin  # noqa: E402


def alerts() -> list[dict]:
    doc = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_generated_files_are_up_to_date():
    for name, text in mixin.render().items():
        assert (MONITORING / name).read_text() == text, f"run python monitoring/mixin.py ({name})"


def test_promtool_check_rules_is_clean():
    result = promtool("check", "rules", str(MONITORING / "rules.yaml"),
                      str(MONITORING / "alerts.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_promtool_test_rules():
    result = promtool("test", "rules", "alerts_test.yaml", cwd=MONITORING / "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_documented_and_complete():
    readme = (ROOT / "docs" / "alerts.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"^#+ (.+)$", readme, re.MULTILINE)}
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)) >= 8
    for rule in alerts():
        assert re.fullmatch(r"Unpod[A-Z][A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"]
        anchor = annotations["runbook_url"].split("#")[1]
        assert anchor == rule["alert"].lower() and anchor in headings, anchor


def test_shape_only_panels_say_so():
    shape_only = {"unpod_calls_completed": "Published shape only",
                  "unpod_call_success_ratio": "Published shape only",
                  "unpod_call_average_duration_seconds": "Published shape only",
                  "unpod_calls_by_outcome": "Platform shape only"}
    dashboard = json.loads((MONITORING / "dashboards/unpod.json").read_text())
    seen = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for metric, note in shape_only.items():
                if re.search(rf"\b{metric}\b", target["expr"]):
                    seen.add(metric)
                    assert note in panel["description"], panel["title"]
    assert {"unpod_call_success_ratio", "unpod_calls_by_outcome"} <= seen


def test_rules_never_rate_a_gauge():
    gauges = ("unpod_calls", "unpod_tasks")
    text = (MONITORING / "rules.yaml").read_text() + (MONITORING / "alerts.yaml").read_text()
    text += (MONITORING / "dashboards/unpod.json").read_text()
    for func in ("rate", "increase", "irate"):
        for call in re.findall(rf"\b{func}\(([a-z_:]+)", text):
            assert not call.startswith(gauges), f"{func}({call}) reads a fall as a reset"


async def test_promtool_check_metrics_on_real_output(fake_api, start_exporter):
    fake, base = fake_api
    fake.set_analytics("acme", breakdown={"pending": 1, "in_progress": 2})
    running = await start_exporter(config_yaml(base, [{"handle": "acme"}, {"handle": "gone"}]))
    await running.wait_ready()
    text = await (await running.client.get("/metrics")).text()
    result = await asyncio.to_thread(promtool_stdin, text)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def promtool_stdin(text: str):
    import shutil
    import subprocess
    return subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"],
                          input=text, capture_output=True, text=True, timeout=60)


def grafana_to_promql(expr: str) -> str:
    for variable in ("$job", "$instance", "$org", "$space"):
        expr = expr.replace(variable, ".+")
    return expr.replace("$__rate_interval", "1m")


@pytest.fixture
def prometheus_factory(tmp_path):
    started: list[Prometheus] = []

    def start(**kwargs) -> Prometheus:
        prom = Prometheus(tmp_path, **kwargs)
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


async def test_end_to_end_with_real_prometheus(fake_api, start_exporter, prometheus_factory):
    fake, base = fake_api
    fake.set_analytics("acme", calls=1250, completed=1100, failed=150)
    fake.set_analytics("acme", "sp_sales", calls=800, completed=700, failed=100)
    fake.set_platform("acme", "sp_survey")  # the platform's own shape, beside the published
    fake.set_analytics("globex", calls=10, completed=9, failed=1)
    now = time.time()  # the backlog panels' figures: pending, in progress, overdue, retried
    fake.backlog.add_run("sp_sales", ["pending", "in_progress"], created=now - 600,
                         last_status_change=now - 60, retry_attempt=1)
    fake.backlog.add_run("sp_sales", ["scheduled"], created=now - 300,
                         scheduled_timestamp=now - 60)
    orgs = [{"handle": "acme", "spaces": [{"name": "sales", "space_token": "sp_sales"},
                                          {"name": "survey", "space_token": "sp_survey"}]},
            {"handle": "globex"}]
    running = await start_exporter(config_yaml(base, orgs, interval="1s", max_staleness="1m")
                                   + "backlog: {interval: 1s}\n")
    await running.wait_ready()
    port = running.client.server.port
    prom = prometheus_factory(scrape={"unpod-exporter": f"127.0.0.1:{port}"},
                              rule_files=[MONITORING / "rules.yaml", MONITORING / "alerts.yaml"])
    await asyncio.to_thread(prom.wait_ready)

    async def query(expr: str) -> list[dict]:
        return await asyncio.to_thread(prom.query, expr)

    async def has(expr: str) -> bool:
        return bool(await query(expr))

    await wait_for(lambda: has('up{job="unpod-exporter"} == 1'), 20, "exporter target up")
    calls = {r["metric"]["space"]: float(r["value"][1])
             for r in await query('unpod_calls{org="acme"}')}
    assert calls == {"sales": 800.0, "survey": 419.0}  # spaces only, each with its space
    org_wide = await query('unpod_org_calls{org="acme"}')
    assert [(r["metric"].get("space"), float(r["value"][1])) for r in org_wide] == [(None, 1250)]
    # sum() over a metric never counts a call twice: the org-wide total has a name of its own
    assert float((await query('sum(unpod_calls{org="acme"})'))[0]["value"][1]) == 1219

    groups = (await asyncio.to_thread(prom.get, "/api/v1/rules"))["groups"]
    assert {g["name"] for g in groups} == {"unpod.rules", "unpod.alerts"}
    await wait_for(lambda: has("org_space:unpod_tasks_unfinished:sum"), 10,
                   "recording rules evaluated")
    groups = (await asyncio.to_thread(prom.get, "/api/v1/rules"))["groups"]
    assert all(rule["health"] == "ok" for g in groups for rule in g["rules"]), groups

    # a fault in the API drives an alert: the token is rejected for globex
    await wait_for(lambda: has('count_over_time(unpod_up{org="globex"}[1m]) >= 2'), 10,
                   "a few scrapes before the fault")
    fake.fail("globex", None, "expired_token")

    async def auth_alert() -> bool:
        active = (await asyncio.to_thread(prom.get, "/api/v1/alerts"))["alerts"]
        return any(a["labels"]["alertname"] == "UnpodAuthenticationFailing"
                   and a["labels"]["org"] == "globex" and a["state"] in ("pending", "firing")
                   for a in active)
    await wait_for(auth_alert, 20, "UnpodAuthenticationFailing to become active")
    await wait_for(lambda: has('unpod_up{org="globex"} == 0'), 5, "globex down in Prometheus")

    # every dashboard query (panels and variables) returns data from this Prometheus
    dashboard = json.loads((MONITORING / "dashboards/unpod.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 14
    for expr in exprs:
        assert await query(grafana_to_promql(expr)), f"dashboard query returns nothing: {expr}"
    # a panel of one shape's figure shows "No data" (an empty result, not an error) for the
    # other shape's targets (prom.query asserts the status is "success")
    other_shape = {"Published shape only": "survey", "Platform shape only": "sales"}
    for panel in dashboard["panels"]:
        for note, space in other_shape.items():
            if note in panel.get("description", ""):
                for target in panel["targets"]:
                    expr = grafana_to_promql(target["expr"]).replace(
                        'space=~".+"', f'space="{space}"')
                    # org-wide panels (unpod_org_*) select no space: acme answers published
                    assert "space=~" not in target["expr"] or not await query(expr), expr
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        values = await asyncio.to_thread(prom.get, f"/api/v1/label/{match[2]}/values",
                                         **{"match[]": grafana_to_promql(match[1])})
        assert values, f"dashboard variable {variable['name']} has no values"
