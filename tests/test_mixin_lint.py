"""The monitoring mixin against the ecosystem's linters, whose rules are ported here (neither
tool installs on this machine: mixtool is Go and not packaged, dashboard-linter likewise).

Sources, read at these paths of their public repositories:
- monitoring-mixins/mixtool, ``pkg/mixer/lint.go``: ``lintPrometheusAlertGroups`` (group
  rule count and name length), ``lintPrometheusAlertsGuidelines`` (camel-case names of at most
  40 characters, severity, templated descriptions, static summaries that are sentences) and
  ``lintGrafanaDashboards`` (a title and a UID, then every dashboard-linter rule).
- grafana/dashboard-linter, ``lint/rules.go`` (``NewRuleSet``) and its ``lint/rule_*.go``:
  template-datasource, template-job, template-instance, template-label-promql,
  template-on-time-change-reload, panel-datasource, panel-title-description, panel-units,
  panel-no-targets, target-promql, target-rate-interval, target-job, target-instance,
  target-counter-agg, uneditable-dashboard (target-logql and target-logql-auto apply to Loki
  targets, which the dashboard has none of: asserted below); ``lint/variables.go`` for how
  Grafana variables are expanded before parsing; ``lint/target_utils.go`` (checkForMatcher).
The tools' own test cases run against the port: mixtool's ``alertTests`` table
(``pkg/mixer/lint_test.go``, its jsonnet evaluated into ``tests/data/mixtool_alert_tests.json``)
and the expression cases of dashboard-linter's ``lint/rule_target_*_test.go``.
Plus this project's conventions for 1.0 (issue 22): recording rules named
level:metric:operations, the mixin's one selector in every rule and alert, no ``space=""``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promql import selectors

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
SELECTOR = 'job="unpod-exporter"'


def alert_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(
        (MONITORING / "alerts.yaml").read_text())["groups"]
    return groups


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(
        (MONITORING / "rules.yaml").read_text())["groups"]
    return groups


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text())
            for path in sorted((MONITORING / "dashboards").glob("*.json"))}


# --- mixtool: pkg/mixer/lint.go -----------------------------------------------------------

CAMEL_CASE = re.compile(r"^([A-Z]+[a-z0-9]+)+$")
GO_TEMPLATE = re.compile(r"\{\{.+}\}")
SENTENCE = re.compile(r"^[A-Z].+\.$")


def mixtool_alert_errors(groups: list[dict[str, Any]]) -> list[str]:
    """lintPrometheusAlertGroups and lintPrometheusAlertsGuidelines, with Go's messages."""
    errors = []
    for group in groups:
        group_name, rules = group["name"], group["rules"]
        if len(rules) > 20:
            errors.append(f"[alert-group-rule-count] Group '{group_name}' contains more than "
                          f"20 rules ({len(rules)})")
        if len(group_name) > 40:
            errors.append(f"[alert-group-name-length] Alert Group '{group_name}' name exceeds "
                          "40 characters")
        for rule in rules:
            errors.extend(_alert_guideline_errors(rule))
    return errors


def _alert_guideline_errors(rule: dict[str, Any]) -> list[str]:
    errors = []
    name, annotations = rule["alert"], rule.get("annotations", {})
    if not CAMEL_CASE.search(name):
        errors.append(f"[alert-name-camelcase] Alert '{name}' name is not in camel case")
    if len(name) > 40:
        errors.append(f"[alert-name-length] Alert '{name}' name exceeds 40 characters")
    severity = rule.get("labels", {}).get("severity", "")
    if severity not in ("warning", "critical", "info"):
        errors.append(f"[alert-severity-rule] Alert '{name}' severity must be 'warning', "
                      f"'critical' or 'info', is currently '{severity}'")
    if "description" not in annotations:
        errors.append(f"[alert-description-missing-rule] Alert '{name}' must have annotation "
                      "'description'")
    elif not GO_TEMPLATE.search(annotations["description"]):
        errors.append(f"[alert-description-templating] Alert {name} annotation 'description' "
                      f"must use templates, is currently '{annotations['description']}'")
    if "summary" not in annotations:
        errors.append(f"[alert-summary-missing-rule] Alert '{name}' must have annotation "
                      "'summary'")
    else:
        summary = annotations["summary"]
        if GO_TEMPLATE.search(summary):
            errors.append(f"[alert-summary-templating] Alert {name} annotation 'summary' must "
                          "not use templates")
        if not SENTENCE.search(summary):
            errors.append(f"[alert-summary-style] Alert {name} annotation 'summary' must start "
                          f"with capital letter and end with period, is currently '{summary}'")
    return errors


MIXTOOL_CASES = json.loads((ROOT / "tests/data/mixtool_alert_tests.json").read_text())["cases"]


@pytest.mark.parametrize("case", MIXTOOL_CASES, ids=[c["expected"].split("]")[0][1:] or "valid"
                                                     for c in MIXTOOL_CASES])
def test_mixtool_own_cases(case):
    """mixtool's own table (lint_test.go alertTests), each in a group named 'test' as there.
    Go's test only checks that every error printed is the expected one; this also asks that
    the expected one is printed, except for the one upstream case whose alert has the summary
    its expected error says is missing (Go prints nothing for it, and so does the port)."""
    errors = mixtool_alert_errors([{"name": "test", "rules": [case["alert"]]}])
    assert all(error == case["expected"] for error in errors), errors
    upstream_quirk = (case["expected"].startswith("[alert-summary-missing-rule]")
                      and "summary" in case["alert"]["annotations"])
    assert errors == ([case["expected"]] if case["expected"] and not upstream_quirk else [])


def test_mixtool_group_cases():
    """lint_test.go TestLintPrometheusAlertGroupsGuidelines_*: a valid group, a name over 40
    characters, 21 rules."""
    valid = next(c["alert"] for c in MIXTOOL_CASES if not c["expected"])
    assert mixtool_alert_errors([{"name": "test", "rules": [valid]}]) == []
    long_name = "InvalidAlertGroupNameHasMoreThanFourtyCharacters"
    assert mixtool_alert_errors([{"name": long_name, "rules": [valid]}]) == [
        f"[alert-group-name-length] Alert Group '{long_name}' name exceeds 40 characters"]
    assert mixtool_alert_errors([{"name": "test", "rules": [valid] * 21}]) == [
        "[alert-group-rule-count] Group 'test' contains more than 20 rules (21)"]


def test_mixtool_rules_catch_what_they_should():
    """The port fails the faults issue 22 found (a templated summary without its period, a
    static description): a lint that passes everything would prove nothing."""
    bad = [{"name": "g", "rules": [{"alert": "unpod_down", "labels": {"severity": "page"},
                                    "annotations": {"summary": "Down in {{ $labels.org }}",
                                                    "description": "Down."}}]}]
    rules = {e.split("]")[0] + "]" for e in mixtool_alert_errors(bad)}
    assert rules == {"[alert-name-camelcase]", "[alert-severity-rule]",
                     "[alert-description-templating]", "[alert-summary-templating]",
                     "[alert-summary-style]"}


def test_alerts_pass_mixtool():
    assert mixtool_alert_errors(alert_groups()) == []


def test_dashboards_have_a_title_and_uid():
    for name, dashboard in dashboards().items():
        assert dashboard.get("title") and dashboard.get("uid"), name


# --- grafana/dashboard-linter: lint/rule_*.go -----------------------------------------------

# lint/variables.go: globalVariables, the sample values variables expand to before parsing
GLOBALS = {"__rate_interval": "8869990787ms", "__interval": "4867856611ms",
           "__interval_ms": "7781188786", "__range_ms": "6737667980", "__range_s": "9397795485",
           "__range": "6069770749ms", "__auto": "12345ms"}
RATE_INTERVAL = f"[{GLOBALS['__rate_interval']}]"
VARIABLE = re.compile(r"\$(\w+)|\$\{([^}]+)\}|\[\[([^\[\]]+)\]\]")
VALID_UNITS = {  # lint/rule_panel_units.go, the ones a dashboard of this kind may use
    "none", "string", "short", "percent", "percentunit", "s", "ms", "m", "h", "d", "dtdurations",
    "reqps", "rps", "ops", "cps", "bytes", "decbytes", "bool", "dateTimeAsIso",
    "dateTimeFromNow"}
QUERY_PANELS = {"singlestat", "gauge", "table", "stat", "state-timeline", "timeseries"}
TITLED_PANELS = {"stat", "singlestat", "graph", "table", "timeseries", "gauge"}


def expand(expr: str) -> str:
    """lint/variables.go expandVariables: outside double quotes, $var becomes a sample value
    (a global's, else the variable's name); inside them it stays as written."""
    parts = expr.split('"')
    for index in range(0, len(parts), 2):
        parts[index] = VARIABLE.sub(
            lambda m: GLOBALS.get(next(g for g in m.groups() if g), next(
                g for g in m.groups() if g)), parts[index])
    return '"'.join(parts)


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def template(dashboard: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in dashboard["templating"]["list"] if t["name"] == name), None)


def template_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query


def linter_errors(dashboard: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    variables = dashboard["templating"]["list"]
    datasources = [t for t in variables if t["type"].lower() == "datasource"]
    # template-datasource-rule
    if not datasources:
        errors.append("[template-datasource-rule] no templated data source")
    for ds in datasources:
        uids = {f"{ds['query'].lower()}_datasource"} | ({"datasource"} if len(datasources) == 1
                                                         else set())
        names = {f"{ds['query'].title()} data source"} | (
            {"Data source"} if len(datasources) == 1 else set())
        if ds["name"] not in uids:
            errors.append(f"[template-datasource-rule] named {ds['name']}")
        if ds.get("label") not in names:
            errors.append(f"[template-datasource-rule] labelled {ds.get('label')}")
    prometheus = bool(datasources) and datasources[0]["query"] == "prometheus"
    # template-job-rule, template-instance-rule (checkTemplate)
    for name in ("job", "instance") if prometheus else ():
        t = template(dashboard, name)
        if t is None:
            errors.append(f"[template-{name}-rule] is missing the {name} template")
            continue
        if t.get("datasource", {}).get("uid") not in ("$datasource", "${datasource}",
                                                       "$prometheus_datasource",
                                                       "${prometheus_datasource}"):
            errors.append(f"[template-{name}-rule] datasource {t.get('datasource')}")
        if t["type"] != "query":
            errors.append(f"[template-{name}-rule] type {t['type']}")
        if t.get("label") != name.title():
            errors.append(f"[template-{name}-rule] label {t.get('label')}")
        if not t.get("multi"):
            errors.append(f"[template-{name}-rule] not multi")
        if t.get("allValue") != ".+":
            errors.append(f"[template-{name}-rule] allValue {t.get('allValue')}")
    for t in variables:
        if t["type"] != "query":
            continue
        # template-on-time-change-reload-rule
        if t.get("refresh") != 2:
            errors.append(f"[template-on-time-change-reload-rule] {t['name']}")
        # template-label-promql-rule: a data source function around PromQL (parsed below)
        match = re.search(r"([a-z_]+)\((.+)\)", template_query(t))
        if match is None or match[1] not in ("label_names", "label_values", "metrics",
                                             "query_result"):
            errors.append(f"[template-label-promql-rule] {t['name']}: {template_query(t)}")
    if dashboard.get("editable"):  # uneditable-dashboard
        errors.append("[uneditable-dashboard] is editable")
    available = {f"${ds['name']}" for ds in datasources} | {f"${{{ds['name']}}}"
                                                            for ds in datasources}
    for panel in panels(dashboard):
        kind, title = panel["type"], panel.get("title", "")
        if (kind in ("singlestat", "graph", "table", "timeseries")  # panel-datasource-rule
                and panel.get("datasource", {}).get("uid") not in available):
            errors.append(f"[panel-datasource-rule] {title}")
        if kind in TITLED_PANELS:
            if not title or not panel.get("description"):  # panel-title-description-rule
                errors.append(f"[panel-title-description-rule] {title}")
            defaults = panel.get("fieldConfig", {}).get("defaults", {})
            if defaults.get("unit") not in VALID_UNITS and not defaults.get("mappings"):
                errors.append(f"[panel-units-rule] {title}: {defaults.get('unit')}")
            if panel.get("targets") is None:  # panel-no-targets-rule
                errors.append(f"[panel-no-targets-rule] {title}")
        for target in panel.get("targets", []):
            errors.extend(f"{e} ({title}: {target['expr']})"
                          for e in target_errors(kind, expand(target["expr"]), prometheus))
    return errors


def target_errors(panel_kind: str, expr: str, prometheus: bool) -> list[str]:
    errors = []
    try:
        found = selectors(expr)
    except (ValueError, IndexError):
        return []  # invalid PromQL is target-promql-rule's (promtool, below)
    for selector in found:
        if prometheus:  # target-job-rule, target-instance-rule (checkForMatcher)
            for name in ("job", "instance"):
                if (name, "=~", f"${name}") not in selector.matchers:
                    errors.append(f"[target-{name}-rule] {selector.name}")
        if (prometheus and panel_kind in QUERY_PANELS and selector.range is not None
                and selector.range != RATE_INTERVAL and selector.parent in ("rate", "irate")):
            errors.append(f"[target-rate-interval-rule] {selector.name}")
        # target-counter-agg-rule
        if (selector.name or "").endswith("_total") and not (
                selector.range is not None and selector.parent in ("rate", "irate",
                                                                   "increase")):
            errors.append(f"[target-counter-agg-rule] {selector.name}")
    return errors


# The expression cases of dashboard-linter's own tests: (rule, panel type, expression, error?)
# from lint/rule_target_counter_agg_test.go, rule_target_job_instance_test.go (for job and
# for instance) and rule_target_rate_interval_test.go.
LINTER_CASES = [
    ("counter-agg", "timeseries", "something_total", True),
    ("counter-agg", "timeseries", "something_total[$__rate_interval]", True),
    ("counter-agg", "timeseries", "increase(something_total[$__rate_interval])", False),
    ("counter-agg", "timeseries", "something_total / rate(somethingelse_total[$__rate_interval])",
     True),
    ("counter-agg", "timeseries", "rate(something_total[$__rate_interval]) / somethingelse_total",
     True),
    *[(m, "timeseries", expr.replace("M", m), error) for m in ("job", "instance")
      for expr, error in (
          ('sum(rate(foo{M=~"$M"}[5m]))', False),
          ('sum(rate(foo{M="integrations/bar", M=~"$M"}[5m]))', False),
          ('sum(rate(foo{M=~"$M", M="integrations/bar"}[5m]))', False),
          ("foo(bar.baz))", False),
          ("sum(rate(foo[5m]))", True),
          ('sum(rate(foo{M="$M"}[5m]))', True),
          ('sum(rate(foo{M=~"$foo"}[5m]))', True))],
    ("rate-interval", "", "sum(rate(foo[5m]))", False),
    ("rate-interval", "singlestat",
     'sum(rate(foo{job=~"$job",instance=~"$instance"}[$__rate_interval]))', False),
    ("rate-interval", "singlestat",
     'sum(rate(foo{job=~"$job",instance=~"$instance"}[$__rate_interval]))'
     '/sum(rate(bar{job=~"$job",instance=~"$instance"}[$__rate_interval]))', False),
    ("rate-interval", "singlestat", 'sum(rate(foo{job=~"$job",instance=~"$instance"}[5m]))', True),
    ("rate-interval", "timeseries", 'sum(rate(foo{job=~"$job",instance=~"$instance"}[5m]))', True),
    ("rate-interval", "singlestat",
     'sum(increase(foo{job=~"$job",instance=~"$instance"}[$__range]))', False),
    ("rate-interval", "singlestat",
     'sum(irate(foo{job=~"$job",instance=~"$instance"}[$__interval]))', True),
]


@pytest.mark.parametrize("rule, kind, expr, error", LINTER_CASES)
def test_dashboard_linter_own_cases(rule, kind, expr, error):
    found = [e for e in target_errors(kind, expand(expr), prometheus=True)
             if e.startswith(f"[target-{rule}-rule]")]
    assert bool(found) == error, found


def test_linter_rules_catch_what_they_should():
    """The faults issue 22 found (no job/instance variables or matchers, editable, panels
    without a description) and the other rules' own cases fail the port."""
    variables = [{"name": "datasource", "label": "Data source", "type": "datasource",
                  "query": "prometheus"},
                 {"name": "org", "type": "query", "refresh": 1, "query": "unpod_up"}]
    bad = {"editable": True, "templating": {"list": variables}, "panels": [
        {"type": "timeseries", "title": "T", "datasource": {"uid": "prom"},
         "fieldConfig": {"defaults": {"unit": "furlongs"}},
         "targets": [{"expr": 'sum(rate(unpod_api_requests_total{org=~"$org"}[5m])) '
                              '+ unpod_poll_errors_total'}]}]}
    rules = {e.split("]")[0] + "]" for e in linter_errors(bad)}
    assert rules == {
        "[template-job-rule]", "[template-instance-rule]",
        "[template-on-time-change-reload-rule]", "[template-label-promql-rule]",
        "[uneditable-dashboard]", "[panel-datasource-rule]", "[panel-title-description-rule]",
        "[panel-units-rule]", "[target-job-rule]", "[target-instance-rule]",
        "[target-rate-interval-rule]", "[target-counter-agg-rule]"}


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_passes_the_dashboard_linter(name):
    dashboard = dashboards()[name]
    assert linter_errors(dashboard) == []
    # the LogQL rules have nothing to check: every target uses the Prometheus data source
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def every_expression() -> list[str]:
    exprs = [rule["expr"] for group in alert_groups() + rule_groups() for rule in group["rules"]]
    for dashboard in dashboards().values():
        exprs += [expand(t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":  # label_values(SELECTOR, label): the selector
                exprs.append(expand(re.fullmatch(r"[a-z_]+\((.+), \w+\)",
                                                 template_query(variable))[1]))
    return exprs


def test_every_query_parses_with_prometheus_own_parser(tmp_path):
    """target-promql-rule and template-label-promql-rule: promtool parses each expression."""
    rules = [{"record": f"check:expr:{i}", "expr": expr}
             for i, expr in enumerate(every_expression())]
    path = tmp_path / "exprs.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "lint", "rules": rules}]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/test.sh installs prometheus"
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- this project's conventions (issue 22) -----------------------------------------------

def test_recording_rules_are_named_level_metric_operations():
    for group in rule_groups():
        for rule in group["rules"]:
            level, metric, operations = rule["record"].split(":")
            assert re.fullmatch(r"[a-z]+(_[a-z]+)*", level), rule["record"]
            assert metric.startswith("unpod_") and operations, rule["record"]
            # the level names the labels the result keeps: a space's or an org-wide target's
            assert level in ("org_space", "org"), rule["record"]
            assert metric.startswith("unpod_org_") == (level == "org"), rule["record"]


def check_selector(groups: list[dict[str, Any]], selector: str) -> None:
    """Every metric an expression reads is selected by the mixin's one selector, except
    recording rules' outputs, which carry it from their own expressions."""
    label, value = re.fullmatch(r'(\w+)="(.*)"', selector).groups()  # type: ignore[union-attr]
    for group in groups:
        for rule in group["rules"]:
            for sel in selectors(rule["expr"]):
                if sel.name and ":" in sel.name:
                    continue
                assert (label, "=", value) in sel.matchers, (rule.get("alert", rule.get(
                    "record")), sel)


def test_every_rule_and_alert_selects_the_configured_job():
    check_selector(alert_groups() + rule_groups(), SELECTOR)


def test_no_query_needs_the_empty_space_trick():
    for expr in every_expression():
        assert not re.search(r'space\s*(=|!=)\s*""', expr), expr


def test_every_panel_selects_the_configured_job_beside_the_variables():
    """"All" is .+ (template-job-rule wants it), so the selector keeps a /probe job out."""
    for dashboard in dashboards().values():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                for sel in selectors(target["expr"]):
                    assert ("job", "=", "unpod-exporter") in sel.matchers, target["expr"]
