"""The mixin's jsonnet face, as kube-prometheus users import it: ``mixin.libsonnet`` with
``_config``, ``prometheusAlerts``, ``prometheusRules`` and ``grafanaDashboards`` (the
monitoring-mixins convention), evaluated by PyPI's jsonnet (the C++ implementation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import _jsonnet
import yaml

from tests.promql import selectors
from tests.test_mixin_lint import check_selector, linter_errors, mixtool_alert_errors

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"


def evaluate(snippet: str) -> Any:
    return json.loads(_jsonnet.evaluate_snippet("test.jsonnet", snippet,
                                                jpathdir=[str(MONITORING)]))


def test_defaults_render_exactly_the_shipped_files():
    mixin = "(import 'mixin.libsonnet')"
    assert evaluate(f"{mixin}.prometheusAlerts") == yaml.safe_load(
        (MONITORING / "alerts.yaml").read_text())
    assert evaluate(f"{mixin}.prometheusRules") == yaml.safe_load(
        (MONITORING / "rules.yaml").read_text())
    shipped = {path.name: json.loads(path.read_text())
               for path in (MONITORING / "dashboards").glob("*.json")}
    assert evaluate(f"{mixin}.grafanaDashboards") == shipped


def test_a_config_override_changes_every_face():
    """What a kube-prometheus user writes: the selector and a threshold of their own."""
    faces = evaluate("""
      local unpod = (import 'mixin.libsonnet') + {
        _config+:: { selector: 'job="unpod", cluster="eu"', stuckAfterSeconds: 3600 },
      };
      { alerts: unpod.prometheusAlerts, rules: unpod.prometheusRules,
        dashboards: unpod.grafanaDashboards }
    """)
    groups = faces["alerts"]["groups"] + faces["rules"]["groups"]
    for group in groups:
        for rule in group["rules"]:
            for sel in selectors(rule["expr"]):
                if sel.name and ":" not in sel.name:
                    assert {("job", "=", "unpod"), ("cluster", "=", "eu")} <= set(sel.matchers)
    for panel in faces["dashboards"]["unpod.json"]["panels"]:
        for target in panel.get("targets", []):
            for sel in selectors(target["expr"]):  # "All" jobs still means the selector's
                assert {("job", "=", "unpod"), ("cluster", "=", "eu"),
                        ("job", "=~", "$job")} <= set(sel.matchers), target["expr"]
    stuck = next(r for r in faces["alerts"]["groups"][0]["rules"]
                 if r["alert"] == "UnpodTasksStuck")
    assert "> 3600" in stuck["expr"] and "over 60 minutes" in stuck["annotations"]["description"]
    job = next(t for t in faces["dashboards"]["unpod.json"]["templating"]["list"]
               if t["name"] == "job")
    assert job["query"]["query"] == 'label_values(unpod_exporter_build_info{job="unpod", ' \
                                    'cluster="eu"}, job)'
    # and the result still passes the linters
    assert mixtool_alert_errors(faces["alerts"]["groups"]) == []
    assert linter_errors(faces["dashboards"]["unpod.json"]) == []


def test_the_default_selector_is_the_one_of_the_scrape_config():
    faces = evaluate("(import 'mixin.libsonnet').prometheusAlerts")
    check_selector(faces["groups"], 'job="unpod-exporter"')


def test_rows_extend_the_dashboard_from_outside():
    """How another mixin part adds panels: a row appended through dashboardRows is laid out
    below the others and numbered after them."""
    dashboard = evaluate("""
      local base = import 'mixin.libsonnet';
      (base + { dashboardRows+:: [{ title: 'Extra', panels: [
        { type: 'timeseries', title: 'X', w:: 24, h:: 6 } ] }] })
      .grafanaDashboards['unpod.json']
    """)
    *_, row, extra = dashboard["panels"]
    assert row["title"] == "Extra" and extra["title"] == "X"
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"][:-2])
    assert row["gridPos"]["y"] == bottom and extra["gridPos"] == {"x": 0, "y": bottom + 1,
                                                                  "w": 24, "h": 6}
    assert extra["id"] == len(dashboard["panels"])


def test_jsonnetfile_for_jsonnet_bundler():
    jsonnetfile = json.loads((MONITORING / "jsonnetfile.json").read_text())
    assert jsonnetfile["version"] == 1 and jsonnetfile["dependencies"] == []
