"""Benchmark: a simulated day of calling campaigns, plain, change-driven and webhook-driven
polling side by side.

python bench/etiquette.py [--factor 120] [--orgs 4] [--spaces 25]

A fake Unpod API (in this file, its own process) whose org-wide answer is the sum of its
spaces. Time is compressed by --factor (120: a day runs in 12 minutes). Every org has one
calling window of two hours in business hours (09:00-17:00, one org after the other), in
which 80 % of its spaces make a call every 30 s; so 20 % of all spaces are active during
business hours, and everything is idle at night. Six exporters poll the same targets at the
same time: plain, change-driven, and change-driven with the webhook receiver (the fake POSTs
a task document, shaped as Unpod's, to it at each call, as Unpod does when a task finishes),
each without a budget and under a budget equivalent to 10,000 requests a simulated day (a
minute's cap of 10,000 x real minute / simulated day).
Printed per exporter: requests per simulated day; detection latency for active spaces, p50
and p95, in simulated seconds: from a call at the fake to the first answer that carried it to
that exporter (the fake records it), which is what the polling decides; and apart, the
exposition lag in real seconds, from that answer to its count on /metrics (scraped every
0.1 s). The lag is kept out of the simulated figures because it does not run 120 times faster:
one real second of it would read as two simulated minutes. Goals (docs/performance.md):
change-driven makes at least 5x fewer requests with no worse p95 when the budget is not
binding, and a p95 at least 3x better under the budget; the webhook's figures are printed
against change-driven polling alone.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, ROOT, free_port, stop, wait_http

INTERVAL, IDLE = 60.0, 600.0  # simulated seconds: the exporter's defaults
CALL_EVERY = 30.0  # simulated seconds between the calls of an active space
DAY = 86400.0
MODES = {"plain": (False, False), "change-driven": (True, False), "webhook": (True, True)}
SECRET = "bench-webhook-secret"  # the fake sends it as Unpod sends the dashboard's header


class Campaigns:
    """Deterministic activity: counts and their change times as functions of simulated time."""

    def __init__(self, orgs: int, spaces: int) -> None:
        self.orgs, self.spaces = orgs, spaces
        business = 8 * 3600 / orgs  # each org's window, one after the other from 09:00
        self.window = {org: (9 * 3600 + org * business, 9 * 3600 + org * business + 2 * 3600)
                       for org in range(orgs)}

    def active(self, org: int, space: int) -> bool:
        return space < math.ceil(self.spaces * 0.8)

    def offset(self, space: int) -> float:
        """Each space calls on its own phase: calls of different campaigns do not line up
        (with one phase for all, the latency measured depended on where the org-wide polls
        happened to fall against it, more than on the polling)."""
        return CALL_EVERY * space / self.spaces

    def calls(self, org: int, space: int, t: float) -> int:
        if not self.active(org, space):
            return 0
        start, end = self.window[org]
        return int(max(0.0, min(t, end) - start - self.offset(space)) // CALL_EVERY)

    def call_time(self, org: int, space: int, k: int) -> float:
        """When the k-th call of a space happened (simulated seconds)."""
        return self.window[org][0] + self.offset(space) + k * CALL_EVERY


def body(calls: int) -> dict[str, object]:
    return {"status_code": 200, "message": "ok", "data": {
        "total_calls": calls, "completed_calls": calls, "failed_calls": 0,
        "avg_duration_seconds": 30.0, "total_tasks": calls,
        "task_status_breakdown": {"completed": calls}}}


def task_document(org: int, space: int, k: int) -> dict[str, object]:
    """What Unpod POSTs when a task finishes (the fields the receiver reads, and a little
    personal data as the real one carries)."""
    return {"task_id": f"T{org}_{space}_{k}", "run_id": f"R{org}_{space}", "status": "completed",
            "assignee": f"agent{org}_{space}", "execution_type": "call",
            "input": {"name": "A Caller", "contact_number": "+910000000000"},
            "output": {"post_call_data": {"summary": {"status": "Interested"}}}}


async def deliver(hooks: list[str], campaigns: Campaigns, factor: float, start: float,
                  until: float) -> None:
    """POST a task document to every webhook at each call, as the calls happen."""
    calls = sorted((campaigns.call_time(o, s, k), o, s, k) for o in range(campaigns.orgs)
                   for s in range(campaigns.spaces) if campaigns.active(o, s)
                   for k in range(1, int(2 * 3600 // CALL_EVERY) + 1))
    slots = asyncio.Semaphore(32)
    pending: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession() as session:
        async def post(url: str, payload: dict[str, object]) -> None:
            async with slots:
                try:
                    async with session.post(url, json=payload,
                                            headers={"X-Unpod-Webhook-Secret": SECRET}) as r:
                        await r.read()
                except aiohttp.ClientError:
                    pass  # the platform's sender stops at a connection error too
        for when, org, space, k in calls:
            real = start + when / factor
            if real > until:
                break
            if (delay := real - time.time()) > 0:
                await asyncio.sleep(delay)
            payload = task_document(org, space, k)
            for url in hooks:
                task = asyncio.create_task(post(url, payload))
                pending.add(task)
                task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


def serve_fake(port: int, orgs: int, spaces: int, factor: float, start: float,
               hooks: list[str]) -> None:
    campaigns = Campaigns(orgs, spaces)
    requests: dict[str, dict[str, int]] = {}  # per token: per kind of target
    served: dict[str, dict[str, int]] = {}  # per token: the highest count answered per space
    # per token: (org, space, call number, simulated time first answered, real time)
    detected: dict[str, list[tuple[int, int, int, float, float]]] = {}

    def now() -> float:
        return (time.time() - start) * factor

    async def analytics(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "")
        org = int(request.headers["Org-Handle"].removeprefix("org"))
        space = request.query.get("space_token")
        t = now()
        if space is None:
            kind = "org-wide"
            calls = sum(campaigns.calls(org, s, t) for s in range(spaces))
        else:
            number = int(space.rsplit("_", 1)[1])
            kind = "active" if campaigns.active(org, number) else "quiet"
            calls = campaigns.calls(org, number, t)
            before = served.setdefault(token, {}).get(space)
            if before is not None and calls > before:
                detected.setdefault(token, []).extend(
                    (org, number, k, t, time.time()) for k in range(before + 1, calls + 1))
            served[token][space] = max(calls, before or 0)
        counts = requests.setdefault(token, {})
        counts[kind] = counts.get(kind, 0) + 1
        return web.json_response(body(calls))

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"requests": requests, "detected": detected})

    async def start_delivery(app: web.Application) -> None:
        until = start + DAY / factor
        app["delivery"] = asyncio.create_task(deliver(hooks, campaigns, factor, start, until))

    app = web.Application()
    app.router.add_get("/organisation/analytics/", analytics)
    app.router.add_get("/stats", stats)
    app.on_startup.append(start_delivery)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=lambda *_: None)


def exporter_config(path: Path, base: str, token: str, args: argparse.Namespace,
                    change_driven: bool, budget: int, hook_port: int | None = None) -> Path:
    real = args.factor
    web = path.with_suffix(".webhook-web.yml")
    # Time runs --factor times faster, and so do Unpod's deliveries (a call every 30 s of 80
    # spaces is 320 a real second at 120x): the receiver's own limit (50/s) is raised in its
    # web config as a user would, not in the code.
    web.write_text(yaml.safe_dump({"rate_limit": {"interval": "1ms", "burst": 5000}}))
    webhook = {} if hook_port is None else {"webhook": {
        "listen_address": f"127.0.0.1:{hook_port}", "secret_env": "BENCH_WEBHOOK_SECRET",
        "web_config_file": str(web),
        "agents": {f"agent{o}_{s}": {"org": f"org{o}", "space": f"s{s}"}
                   for o in range(args.orgs) for s in range(args.spaces)}}}
    path.write_text(yaml.safe_dump({
        "api": {"base_url": base, "token": token, "timeout": "5s",
                "max_requests_per_minute": budget},
        "poll": {"interval": INTERVAL / real, "idle_interval": IDLE / real,
                 "max_staleness": max(3 * INTERVAL, 3 * IDLE) / real * 20,
                 "concurrency": 16, "change_driven": change_driven},
        "orgs": [{"handle": f"org{o}", "spaces": [
            {"name": f"s{s}", "space_token": f"sp{o}_{s}"} for s in range(args.spaces)]}
            for o in range(args.orgs)],
        **webhook,
    }))
    return path


async def watch(session: aiohttp.ClientSession, port: int,
                until: float) -> dict[tuple[int, int, int], float]:
    """When (real time) each call of a space first showed on /metrics."""
    shown: dict[tuple[int, int], int] = {}
    seen: dict[tuple[int, int, int], float] = {}
    while time.time() < until:
        try:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
            continue
        seen_at = time.time()
        for line in text.splitlines():
            if not line.startswith('unpod_calls{org="org') or "space=" not in line:
                continue
            labels, value = line.rsplit(" ", 1)
            org = int(labels.split('org="org')[1].split('"')[0])
            space = int(labels.split('space="s')[1].split('"')[0])
            count, before = int(float(value)), shown.get((org, space))
            if before is not None:
                seen.update(((org, space, k), seen_at) for k in range(before + 1, count + 1))
            shown[(org, space)] = count
        await asyncio.sleep(0.1)
    return seen


def latencies(detected: list[list[float]], campaigns: Campaigns,
              seen: dict[tuple[int, int, int], float]) -> tuple[list[float], list[float]]:
    """Detection latencies (simulated seconds, call to first answer) and exposition lags
    (real seconds, first answer to /metrics) of the calls that showed on /metrics."""
    detection, lag = [], []
    for org, space, k, simulated, real in detected:
        shown = seen.get((int(org), int(space), int(k)))
        if shown is None:
            continue  # answered after the last scrape
        detection.append(simulated - campaigns.call_time(int(org), int(space), int(k)))
        lag.append(shown - real)
    return detection, lag


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else values[0]


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="unpod-etiquette-"))
    fake_port = free_port()
    start = time.time() + 8  # the simulated day starts at 00:00, eight seconds from now
    base = f"http://127.0.0.1:{fake_port}"
    budget = round(10000 * 60 * args.factor / DAY)  # 10,000 a simulated day, per real minute
    runs = []
    procs = []
    hooks = []
    fake: subprocess.Popen[bytes] | None = None
    try:
        configs = []
        for scenario, cap in (("no budget", 0), ("10,000/day", budget)):
            for mode, (driven, hooked) in MODES.items():
                token = f"{mode}-{cap}"
                hook_port = free_port() if hooked else None
                if hook_port is not None:
                    hooks.append(f"http://127.0.0.1:{hook_port}/webhook")
                configs.append(exporter_config(work / f"{token}.yaml", base, token, args,
                                               driven, cap, hook_port))
                runs.append((scenario, mode, token, free_port()))
        fake = subprocess.Popen([PYTHON, __file__, "--serve", str(fake_port), "--orgs",
                                 str(args.orgs), "--spaces", str(args.spaces), "--factor",
                                 str(args.factor), "--start", str(start),
                                 "--hooks", ",".join(hooks)])
        for (*_, port), config in zip(runs, configs, strict=True):
            procs.append(subprocess.Popen(
                [PYTHON, "-m", "exporter", "--config.file", str(config),
                 "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "error"],
                cwd=ROOT, env={**os.environ, "BENCH_WEBHOOK_SECRET": SECRET}))
        for *_, port in runs:
            wait_http(f"http://127.0.0.1:{port}/-/healthy", timeout=60)
        until = start + DAY / args.factor
        campaigns = Campaigns(args.orgs, args.spaces)
        print(f"simulated day: {DAY / args.factor / 60:.0f} min real, {args.orgs} orgs x "
              f"{args.spaces} spaces, interval {INTERVAL:g}s, idle_interval {IDLE:g}s, budget "
              f"{budget}/real minute = 10,000/simulated day", flush=True)
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(watch(session, port, until) for *_, port in runs))
            async with session.get(f"{base}/stats") as response:
                stats = await response.json()
            receivers = {}
            for scenario, mode, _, port in runs:
                if MODES[mode][1]:
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                        receivers[scenario] = [line for line in (await response.text()).split(
                            "\n") if line.startswith("unpod_webhook_requests_total{")]
        print(f"{'scenario':<12} {'mode':<14} {'requests/day':>12} {'org-wide':>9} "
              f"{'active':>7} {'quiet':>7} {'p50 s':>7} {'p95 s':>7} {'changes seen':>12} "
              f"{'lag p50/p95/max (real s)':>25}")
        table = {}
        for (scenario, mode, token, _), seen in zip(runs, results, strict=True):
            kinds = stats["requests"].get(f"Token {token}", {})
            sent = sum(kinds.values())
            detection, lag = latencies(stats["detected"].get(f"Token {token}", []),
                                       campaigns, seen)
            p50, p95 = percentile(detection, 50), percentile(detection, 95)
            table[(scenario, mode)] = (sent, p95)
            lags = (f"{percentile(lag, 50):.2f} / {percentile(lag, 95):.2f} / "
                    f"{max(lag, default=math.nan):.2f}")
            print(f"{scenario:<12} {mode:<14} {sent:>12} {kinds.get('org-wide', 0):>9} "
                  f"{kinds.get('active', 0):>7} {kinds.get('quiet', 0):>7} {p50:>7.0f} "
                  f"{p95:>7.0f} {len(detection):>12} {lags:>25}", flush=True)
        plain, driven = table[("no budget", "plain")], table[("no budget", "change-driven")]
        tight_plain, tight = table[("10,000/day", "plain")], table[("10,000/day", "change-driven")]
        print(f"no budget: {plain[0] / max(1, driven[0]):.2f}x fewer requests (goal >= 5x), "
              f"p95 {driven[1]:.0f}s vs {plain[1]:.0f}s (goal: no worse)")
        print(f"10,000/day: p95 {tight[1]:.0f}s vs {tight_plain[1]:.0f}s: "
              f"{tight_plain[1] / tight[1]:.2f}x better (goal >= 3x)")
        for scenario in ("no budget", "10,000/day"):
            results_seen = ", ".join(line.split('"')[1] + "=" + line.rsplit(" ", 1)[1]
                                     for line in receivers.get(scenario, []))
            print(f"{scenario}: webhook receiver {results_seen}")
            hooked, alone = table[(scenario, "webhook")], table[(scenario, "change-driven")]
            print(f"{scenario}: webhook {hooked[0]} requests/day vs {alone[0]} change-driven "
                  f"alone ({hooked[0] / max(1, alone[0]):.2f}x), p95 {hooked[1]:.0f}s vs "
                  f"{alone[1]:.0f}s ({alone[1] / max(1e-9, hooked[1]):.2f}x fresher)")
    finally:
        for proc in procs:
            stop(proc)
        if fake is not None:
            stop(fake)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--factor", type=float, default=120.0)
    parser.add_argument("--orgs", type=int, default=4)
    parser.add_argument("--spaces", type=int, default=25)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--hooks", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_fake(args.serve, args.orgs, args.spaces, args.factor, args.start,
                   [url for url in args.hooks.split(",") if url])
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
