"""The documented /probe scrape config, run on a real Prometheus (Debian's): with two probe
targets it must give two ``up`` series, one per target. Without the ``instance`` rule every
target has the exporter's address as its instance, so the targets share their labels and
Prometheus keeps one of them (issue 22: "two targets configured, one scraped")."""

from __future__ import annotations

import asyncio
import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import config_yaml, wait_for
from tests.prometheus import Prometheus

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def documented_job() -> dict[str, Any]:
    """The yaml block of the /probe section of docs/metrics.md, as a user copies it."""
    section = DOC.read_text().split("## `/probe`", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block, "no scrape config in the /probe section"
    [job] = yaml.safe_load(block[1])["scrape_configs"]
    return dict(job)


def without_instance_rule(job: dict[str, Any]) -> dict[str, Any]:
    job = copy.deepcopy(job)
    job["relabel_configs"] = [r for r in job["relabel_configs"]
                              if r.get("target_label") != "instance"]
    return job


@pytest.fixture
def prometheus(tmp_path):
    started: list[Prometheus] = []

    def start(job: dict[str, Any], exporter: str) -> Prometheus:
        options = {key: value for key, value in job.items() if key != "job_name"}
        options["relabel_configs"] = [  # the exporter's real address instead of the example's
            {**rule, "replacement": exporter} if rule.get("target_label") == "__address__"
            else rule for rule in options["relabel_configs"]]
        options["scrape_interval"] = "1s"  # the doc's 5m would take minutes to show
        workdir = tmp_path / f"prometheus{len(started)}"
        workdir.mkdir()
        prom = Prometheus(workdir, scrape={job["job_name"]: "unused"}, rule_files=[],
                          job_options=options)
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


async def up_series(prom: Prometheus, job: str) -> dict[str, float]:
    result = await asyncio.to_thread(prom.query, f'up{{job="{job}"}}')
    return {r["metric"]["instance"]: float(r["value"][1]) for r in result}


async def test_two_probe_targets_give_two_up_series(fake_api, start_exporter, prometheus):
    fake, base = fake_api
    fake.set_analytics("acme", calls=10)
    fake.set_analytics("acme", "sp_sales", calls=4)
    orgs = [{"handle": "acme", "spaces": [{"name": "outbound-sales",
                                           "space_token": "sp_sales"}]}]
    running = await start_exporter(config_yaml(base, orgs))
    await running.wait_ready()
    exporter = f"127.0.0.1:{running.client.server.port}"
    job = documented_job()
    assert job["static_configs"][0]["targets"] == ["acme", "acme/outbound-sales"]

    fixed, broken = prometheus(job, exporter), prometheus(without_instance_rule(job), exporter)
    await asyncio.to_thread(fixed.wait_ready)
    await asyncio.to_thread(broken.wait_ready)

    async def both_up() -> bool:
        return await up_series(fixed, "unpod-probe") == {"acme": 1.0,
                                                          "acme/outbound-sales": 1.0}
    await wait_for(both_up, 20, "an up series per probe target")
    # each target's own figures, under its own instance
    calls = await asyncio.to_thread(fixed.query, 'unpod_calls{job="unpod-probe"}')
    assert [(r["metric"]["instance"], r["metric"]["space"], r["value"][1]) for r in calls] == [
        ("acme/outbound-sales", "outbound-sales", "4")]
    org_calls = await asyncio.to_thread(fixed.query, 'unpod_org_calls{job="unpod-probe"}')
    assert [(r["metric"]["instance"], r["value"][1]) for r in org_calls] == [("acme", "10")]

    # the control: without the rule both targets are one instance, and one is dropped
    async def broken_scraped() -> bool:
        return bool(await up_series(broken, "unpod-probe"))
    await wait_for(broken_scraped, 20, "the config without the instance rule scraped")
    await asyncio.sleep(2)
    assert list(await up_series(broken, "unpod-probe")) == [exporter]
    # Prometheus's own view: two targets either way, with one set of labels between them
    for prom, distinct in ((fixed, 2), (broken, 1)):
        targets = (await asyncio.to_thread(prom.get, "/api/v1/targets"))["activeTargets"]
        assert len(targets) == 2
        assert len({tuple(sorted(t["labels"].items())) for t in targets}) == distinct
