"""Benchmark: what the backlog scan costs in a simulated day, beside the analytics polls.

python bench/backlog_day.py [--factor 240] [--interval 5m]

One fake Unpod API (tests/fakeapi.py, its own process) with two organizations: ``small`` with
10 spaces and ``large`` with 100. Each space has ten finished runs; three in ten also run a
campaign (an open run of 120 tasks: pending, in progress, finished, some retried), one in ten
has a campaign that never starts (25 pending tasks). Four real exporters poll them side by
side, each with a token of its own: 10 and 100 spaces, each without a budget and under the
free plan's 10,000 requests a day. Time is compressed by --factor (240: a day in 6 minutes):
every interval of the config is divided by it, and the daily cap becomes a per-minute cap of
10,000 x real minute / simulated day (the budget's day window runs in real time). The
defaults of the config are kept otherwise (backlog every 10 minutes, page size 50, at most
20 requests per scan; polls every --interval, change-driven).

Printed per exporter, from its own ``unpod_api_requests_total`` (every attempt): requests per
simulated day for the analytics (and the org-wide target) and for the backlog scan (runs and
tasks), their total, and the backlog's share. Goal (docs/performance.md): under the free
plan's budget the total stays under 10,000 a day for 10 and for 100 spaces, the analytics
polls keep their interval where they fit, and the scan stretches first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import PYTHON, ROOT, free_port, stop, wait_http

DAY = 86_400.0
FREE_PLAN = 10_000
ORGS = {"small": 10, "large": 100}


def serve(port: int) -> None:
    """The fake API with the workload of the module docstring."""
    from aiohttp import web

    from tests.fakeapi import FakeUnpod

    fake = FakeUnpod(tokens=tuple(f"tok-{org}-{cap}" for org in ORGS for cap in ("free", "none")))
    fake.record = False
    fake.backlog.record = False
    fake.latency = 0.02
    now = time.time()
    for org, spaces in ORGS.items():
        fake.set_analytics(org)
        for j in range(spaces):
            token = f"sp_{org}_{j}"
            fake.set_analytics(org, token)
            for day in range(10, 0, -1):
                fake.backlog.add_run(token, ["completed"] * 20, run_status="completed",
                                     created=now - day * DAY, assignee=f"agent-{token}",
                                     transcript_bytes=2_000)
            if j % 10 in (1, 4, 7):
                fake.backlog.add_run(token, ["pending"] * 60 + ["in_progress"] * 5
                                     + ["completed"] * 55, created=now - 3600,
                                     last_status_change=now - 120, retry_attempt=j % 2,
                                     assignee=f"agent-{token}", transcript_bytes=2_000)
            elif j % 10 == 9:
                fake.backlog.add_run(token, ["pending"] * 25, run_status="pending",
                                     created=now - 7200, assignee=f"agent-{token}",
                                     transcript_bytes=2_000)
    web.run_app(fake.app(), host="127.0.0.1", port=port, access_log=None,
                print=lambda *_: None)


def config(base: str, org: str, cap: str, factor: float, interval: float) -> dict[str, object]:
    per_minute = round(FREE_PLAN * 60 / (DAY / factor)) if cap == "free" else 0
    return {
        "api": {"base_url": base, "token": f"tok-{org}-{cap}", "timeout": "5s",
                "max_requests_per_minute": per_minute},
        "poll": {"interval": interval / factor, "idle_interval": max(600, interval) / factor,
                 "max_staleness": max(300, interval * 2) / factor, "concurrency": 8},
        "backlog": {"interval": max(1.0, 600 / factor)},
        "orgs": [{"handle": org, "spaces": [{"name": f"space-{j}", "space_token": f"sp_{org}_{j}"}
                                            for j in range(ORGS[org])]}],
    }


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def requests_by_endpoint(port: int) -> dict[str, float]:
    # A scrape after a quiet spell may be answered from the body assembled at the previous
    # one while a fresh one is built: scrape, wait past the assembly, scrape again.
    scrape(port)
    time.sleep(1.5)
    text = scrape(port)
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("unpod_api_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            endpoint = labels.split('endpoint="', 1)[1].split('"', 1)[0]
            counts[endpoint] = counts.get(endpoint, 0.0) + float(value)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--factor", type=float, default=240.0)
    parser.add_argument("--interval", type=float, default=300.0, help="poll.interval, seconds")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    api_port = free_port()
    fake = subprocess.Popen([PYTHON, __file__, "--serve", str(api_port)])
    base = f"http://127.0.0.1:{api_port}/api/v2/platform"
    exporters: dict[tuple[str, str], tuple[subprocess.Popen[bytes], int]] = {}
    try:
        time.sleep(3)  # the fake builds its runs
        with tempfile.TemporaryDirectory() as tmp:
            for org in ORGS:
                for cap in ("none", "free"):
                    path = Path(tmp) / f"{org}-{cap}.yaml"
                    path.write_text(yaml.safe_dump(config(base, org, cap, args.factor,
                                                          args.interval)))
                    port = free_port()
                    proc = subprocess.Popen(
                        [PYTHON, "-m", "exporter", "--config.file", str(path),
                         "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"],
                        cwd=ROOT)
                    exporters[(org, cap)] = (proc, port)
            for _, port in exporters.values():
                wait_http(f"http://127.0.0.1:{port}/-/healthy", 60)
            started = time.monotonic()
            before = {key: requests_by_endpoint(port) for key, (_, port) in exporters.items()}
            time.sleep(DAY / args.factor)
            elapsed = time.monotonic() - started
            after = {key: requests_by_endpoint(port) for key, (_, port) in exporters.items()}
    finally:
        for proc, _ in exporters.values():
            stop(proc)
        stop(fake)
    scale = DAY / (elapsed * args.factor)  # per simulated day, whatever the sleep overran
    rows = []
    print(f"simulated day at factor {args.factor:g}, poll.interval {args.interval:g}s, "
          "backlog.interval 600s (defaults otherwise)")
    print(f"{'spaces':>6} {'budget':>12} {'analytics/day':>14} {'backlog/day':>12} "
          f"{'total/day':>10} {'backlog share':>13}")
    for (org, cap), counts in after.items():
        delta = {k: (v - before[(org, cap)].get(k, 0.0)) * scale for k, v in counts.items()}
        analytics = delta.get("analytics", 0.0)
        backlog = delta.get("runs", 0.0) + delta.get("tasks", 0.0)
        total = analytics + backlog
        budget = "10,000/day" if cap == "free" else "none"
        print(f"{ORGS[org]:>6} {budget:>12} {analytics:>14,.0f} {backlog:>12,.0f} "
              f"{total:>10,.0f} {backlog / total if total else 0:>13.0%}")
        rows.append({"spaces": ORGS[org], "budget": budget, "analytics": round(analytics),
                     "backlog": round(backlog), "total": round(total)})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
