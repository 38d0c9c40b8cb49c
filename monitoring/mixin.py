"""The monitoring mixin's source: thresholds and windows in one place, rules generated from them.

Edit CONFIG, then run ``python monitoring/mixin.py`` to rewrite ``alerts.yaml``,
``rules.yaml`` and ``dashboards/unpod.json`` beside this file. The Helm chart and Prometheus
load those files as they are; a test fails when they are out of date with this script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

CONFIG: dict[str, Any] = {
    # Prometheus job of the exporter itself (for UnpodExporterDown).
    "job_selector": 'job="unpod-exporter"',
    "runbook_base": "https://github.com/unpod-exporter/unpod-exporter/blob/main/docs/alerts.md",
    # Stuck tasks: unfinished work while finished tasks did not grow for this long.
    "stuck_after_seconds": 1800,
    "stuck_for": "5m",
    # Failure rate: share of failed calls over the window, only above a minimum volume.
    "failure_window": "1h",
    "failure_ratio_threshold": 0.25,
    "failure_min_calls": 20,
    "failure_for": "15m",
    # Success ratio dropping: this window's ratio below the same window a day earlier, by this.
    "success_drop": 0.15,
    "success_for": "30m",
    # Health.
    "target_down_for": "10m",
    "stale_after_seconds": 1800,
    "auth_window": "1h",
    "rate_limited_window": "15m",
    "rate_limited_for": "15m",
    "exporter_down_for": "5m",
}

UNFINISHED = "pending|running|in_progress|processing"
WHERE = "{{ $labels.org }}{{ if $labels.space }}/{{ $labels.space }}{{ end }}"


def _alert(c: dict[str, Any], name: str, expr: str, duration: str, severity: str,
           summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr.strip() + "\n",
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{c['runbook_base']}#{name.lower()}",
        },
    }


def recording_rules(c: dict[str, Any] = CONFIG) -> dict[str, Any]:
    window = c["failure_window"]
    return {"groups": [{"name": "unpod.rules", "rules": [
        {"record": f"unpod:calls:delta{window}",
         "expr": f"clamp_min(delta(unpod_calls[{window}]), 0)"},
        {"record": f"unpod:calls_completed:delta{window}",
         "expr": f"clamp_min(delta(unpod_calls_completed[{window}]), 0)"},
        {"record": f"unpod:calls_failed:delta{window}",
         "expr": f"clamp_min(delta(unpod_calls_failed[{window}]), 0)"},
        {"record": f"unpod:call_failure_ratio:{window}",
         "expr": f"unpod:calls_failed:delta{window} / (unpod:calls:delta{window} > 0)"},
        {"record": f"unpod:call_success_ratio:{window}",
         "expr": f"clamp_max(unpod:calls_completed:delta{window} / (unpod:calls:delta{window} > 0)"
                 ", 1)"},
        {"record": "unpod:tasks_unfinished",
         "expr": f'sum by (org, space) (unpod_tasks_by_status{{status=~"{UNFINISHED}"}})'},
        {"record": "unpod:tasks_progress_age:seconds",
         "expr": "time() - unpod_tasks_last_progress_timestamp_seconds"},
    ]}]}


def alert_rules(c: dict[str, Any] = CONFIG) -> dict[str, Any]:
    window = c["failure_window"]
    where = WHERE
    alerts = [
        _alert(c, "UnpodTasksStuck", f"""
unpod:tasks_unfinished > 0
and on (org, space)
unpod:tasks_progress_age:seconds > {c['stuck_after_seconds']}
""", c["stuck_for"], "warning", f"Unpod tasks stuck in {where}",
            "{{ $value | humanize }} tasks are pending or running in " + where
            + f" but no task has finished for over {c['stuck_after_seconds'] // 60} minutes."),
        _alert(c, "UnpodCallFailureRateHigh", f"""
unpod:call_failure_ratio:{window} > {c['failure_ratio_threshold']}
and on (org, space)
unpod:calls:delta{window} >= {c['failure_min_calls']}
""", c["failure_for"], "warning", f"Many Unpod calls failing in {where}",
            "{{ $value | humanizePercentage }} of the calls of the last " + window + " in "
            + where + f" failed (threshold {c['failure_ratio_threshold']:.0%}, "
            f"at least {c['failure_min_calls']} calls)."),
        _alert(c, "UnpodCallSuccessRatioDropping", f"""
unpod:call_success_ratio:{window}
< (unpod:call_success_ratio:{window} offset 1d) - {c['success_drop']}
and on (org, space)
unpod:calls:delta{window} >= {c['failure_min_calls']}
""", c["success_for"], "warning", f"Unpod call success ratio dropping in {where}",
            "The success ratio of the last " + window + " in " + where
            + " is {{ $value | humanizePercentage }}, more than "
            + f"{c['success_drop']:.0%} below the same hour yesterday."),
        _alert(c, "UnpodTargetDown", "unpod_up == 0", c["target_down_for"], "warning",
               f"Unpod exporter cannot poll {where}",
               "The last polls of " + where + " failed; see unpod_poll_errors_total for the "
               "reason and the exporter's landing page for the last error."),
        _alert(c, "UnpodDataStale", f"""
time() - unpod_last_success_timestamp_seconds > {c['stale_after_seconds']}
""", "0m", "warning", f"Unpod analytics of {where} are stale",
            "The last successful poll of " + where + " was {{ $value | humanizeDuration }} ago."),
        _alert(c, "UnpodAuthenticationFailing", f"""
sum by (job, org) (
  increase(unpod_poll_errors_total{{reason=~"unauthorized|forbidden"}}[{c['auth_window']}])
) > 0
unless on (job, org)
max by (job, org) (unpod_up) == 1
""", "0m", "critical", "Unpod API token rejected for {{ $labels.org }}",
            "The Unpod API answers 401/403 for {{ $labels.org }}: the token is invalid, expired "
            "or lacks access to the organization. The exporter backs off (up to an hour)."),
        _alert(c, "UnpodRateLimited", f"""
sum by (job, org) (
  increase(unpod_api_requests_total{{outcome="rate_limited"}}[{c['rate_limited_window']}])
) > 0
""", c["rate_limited_for"], "warning", "Unpod API rate-limits the exporter for {{ $labels.org }}",
            "The Unpod API answered 429 {{ $value | humanize }} times in the last "
            + c["rate_limited_window"] + "; lower api.max_requests_per_minute or raise the "
            "poll interval."),
        _alert(c, "UnpodExporterConfigReloadFailed",
               "unpod_exporter_config_last_reload_successful == 0", "5m", "warning",
               "unpod-exporter config reload failed",
               "The last config reload of {{ $labels.instance }} failed; the previous config is "
               "still running. See the exporter's log."),
        _alert(c, "UnpodExporterDown", f"""
up{{{c['job_selector']}}} == 0 or absent(up{{{c['job_selector']}}})
""", c["exporter_down_for"], "critical", "unpod-exporter is down",
            "Prometheus cannot scrape unpod-exporter ({{ $labels.instance }}): no Unpod data "
            "and no Unpod alerts."),
    ]
    return {"groups": [{"name": "unpod.alerts", "rules": alerts}]}


# --- dashboard -------------------------------------------------------------------------------

DS = {"type": "prometheus", "uid": "${datasource}"}
ORG_TOTAL = 'org=~"$org",space=""'  # org-wide series only: never summed with the spaces
SPACES = 'org=~"$org",space=~"$space"'  # "All" is .+, which excludes the org-wide series
TARGETS = 'org=~"$org"'
PUBLISHED_ONLY = ("Published shape only (completed_calls, avg_duration_seconds): targets that "
                  "answer Unpod's platform shape show No data here.")
PLATFORM_ONLY = ("Platform shape only (call_analytics): targets that answer the published "
                 "shape show No data here.")


def _panel(title: str, kind: str, exprs: list[tuple[str, str]], grid: tuple[int, int, int, int],
           unit: str = "short", stacked: bool = False, description: str = "") -> dict[str, Any]:
    x, y, w, h = grid
    defaults: dict[str, Any] = {"unit": unit}
    if kind == "timeseries":
        defaults["custom"] = {"stacking": {"mode": "normal" if stacked else "none"},
                              "fillOpacity": 30 if stacked else 10}
    return {
        "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(exprs)],
    }


def _row(title: str, y: int) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}


def _variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-variable"}, "definition": query,
            "refresh": 2, "includeAll": True, "allValue": ".+", "multi": True, "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


def dashboard() -> dict[str, Any]:
    window = "$__rate_interval"
    unfinished = f'status=~"{UNFINISHED}"'
    panels = [
        _row("Organizations (org-wide totals)", 0),
        _panel("Calls per interval", "timeseries", [
            (f"clamp_min(delta(unpod_calls{{{ORG_TOTAL}}}[{window}]), 0)", "{{org}} calls"),
            (f"clamp_min(delta(unpod_calls_failed{{{ORG_TOTAL}}}[{window}]), 0)",
             "{{org}} failed")], (0, 1, 12, 8),
            description="New calls and failures per interval (delta of Unpod's all-time gauges)"),
        _panel("Success ratio", "stat", [
            (f"unpod_call_success_ratio{{{ORG_TOTAL}}}", "{{org}}")], (12, 1, 6, 8),
            unit="percentunit", description=PUBLISHED_ONLY),
        _panel("Calls (last hour)", "stat", [
            (f"clamp_min(delta(unpod_calls{{{ORG_TOTAL}}}[1h]), 0)", "{{org}}")], (18, 1, 6, 8)),
        _row("Spaces", 9),
        _panel("Calls and failures by space", "timeseries", [
            (f"clamp_min(delta(unpod_calls{{{SPACES}}}[{window}]), 0)", "{{org}}/{{space}}"),
            (f"clamp_min(delta(unpod_calls_failed{{{SPACES}}}[{window}]), 0)",
             "{{org}}/{{space}} failed")], (0, 10, 12, 8)),
        _panel("Success ratio by space", "timeseries", [
            (f"unpod_call_success_ratio{{{SPACES}}}", "{{org}}/{{space}}")], (12, 10, 12, 8),
            unit="percentunit", description=PUBLISHED_ONLY),
        _panel("Average call duration", "timeseries", [
            (f"unpod_call_average_duration_seconds{{{SPACES}}}", "{{org}}/{{space}}")],
            (0, 18, 12, 8), unit="s", description=PUBLISHED_ONLY),
        _panel("Tasks by status", "timeseries", [
            (f"sum by (status) (unpod_tasks_by_status{{{SPACES}}})", "{{status}}")],
            (12, 18, 12, 8), stacked=True),
        _panel("Stuck-task age", "timeseries", [
            (f"(time() - unpod_tasks_last_progress_timestamp_seconds{{{SPACES}}}) "
             f"and on (org, space) "
             f"(sum by (org, space) (unpod_tasks_by_status{{{SPACES},{unfinished}}}) > 0)",
             "{{org}}/{{space}}")], (0, 26, 24, 8), unit="s",
            description="Time since finished tasks last grew, for spaces with unfinished tasks"),
        _row("Exporter health", 34),
        _panel("Targets up", "timeseries", [
            (f"unpod_up{{{TARGETS}}}", "{{org}} {{space}}")], (0, 35, 8, 8)),
        _panel("Last success age", "timeseries", [
            (f"time() - unpod_last_success_timestamp_seconds{{{TARGETS}}}", "{{org}} {{space}}")],
            (8, 35, 8, 8), unit="s"),
        _panel("Poll errors by reason", "timeseries", [
            (f"sum by (reason) (increase(unpod_poll_errors_total{{{TARGETS}}}[{window}]))",
             "{{reason}}")], (16, 35, 8, 8)),
        _panel("Poll duration", "timeseries", [
            (f"unpod_poll_duration_seconds{{{TARGETS}}}", "{{org}} {{space}}")],
            (0, 43, 8, 8), unit="s"),
        _panel("API requests by outcome", "timeseries", [
            (f"sum by (outcome) (rate(unpod_api_requests_total{{{TARGETS}}}[{window}]))",
             "{{outcome}}")], (8, 43, 8, 8), unit="reqps"),
        _panel("Effective poll interval", "timeseries", [
            (f"unpod_exporter_poll_interval_seconds{{{TARGETS}}}", "{{org}}")],
            (16, 43, 8, 8), unit="s"),
        _row("Outcomes and tasks", 51),
        _panel("Call outcomes by space", "bargauge", [
            (f"sum by (org, space, outcome) (unpod_calls_by_outcome{{{SPACES}}})",
             "{{org}}/{{space}} {{outcome}}")], (0, 52, 12, 10),
            description="All-time calls by outcome (interested, call back, send details, not "
                        "interested, not connected, failed). " + PLATFORM_ONLY),
        _panel("Task success ratio by space", "timeseries", [
            (f"unpod_task_success_ratio{{{SPACES}}}", "{{org}}/{{space}}")], (12, 52, 12, 10),
            unit="percentunit",
            description="Completed tasks over all tasks (0..1), from either shape."),
    ]
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "uid": "unpod-exporter", "title": "Unpod campaigns", "tags": ["unpod"],
        "schemaVersion": 39, "version": 1, "editable": True, "timezone": "browser",
        "time": {"from": "now-6h", "to": "now"}, "refresh": "1m",
        "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0},
            _variable("org", "label_values(unpod_up, org)", "Organization"),
            _variable("space", 'label_values(unpod_up{org=~"$org"}, space)', "Space"),
        ]},
        "panels": panels,
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)
HEADER = "# Generated by monitoring/mixin.py from its CONFIG; edit there, then rerun it.\n"


def _dump(doc: dict[str, Any]) -> str:
    return HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)


def render(overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """The generated files; ``overrides`` change settings of CONFIG (tests shorten windows)."""
    c = {**CONFIG, **(overrides or {})}
    return {"alerts.yaml": _dump(alert_rules(c)), "rules.yaml": _dump(recording_rules(c)),
            "dashboards/unpod.json": json.dumps(dashboard(), indent=2) + "\n"}


def main() -> int:
    here = Path(__file__).resolve().parent
    for name, text in render().items():
        (here / name).write_text(text)
        print(f"wrote {here / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
