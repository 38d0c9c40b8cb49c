"""Benchmark: a flood of forged and oversized webhook posts against scrapes of /metrics.

python bench/webhook.py [--orgs 300] [--spaces 9] [--seconds 20] [--flooders 2]

One exporter (a real process) polls the fake API (bench/fake_server.py, 20 ms answers) with
the webhook receiver on a port of its own. A scraper fetches /metrics as Prometheus does
(gzip, one after the other) for --seconds quietly, then for --seconds while --flooders
processes post to the webhook as fast as they can: half forged (a wrong secret, a task
document as body), half oversized (the right secret, Content-Length 2 MiB). Printed: scrape
latency p50 / p95 / max and scrapes a second in both phases side by side with their ratio,
the flood's rate, and what the receiver counted. Everything runs on loopback and stops by
itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, ROOT, free_port, start_fake, stop, wait_http, write_config

SECRET = "bench-webhook-secret"
BODY = json.dumps({"task_id": "T1", "status": "completed", "assignee": "agent-1",
                   "input": {"contact_number": "+910000000000"}, "output": {}}).encode()


def scrape(url: str) -> float:
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return time.monotonic() - started


def scrapes(url: str, seconds: float) -> list[float]:
    end = time.monotonic() + seconds
    taken = []
    while time.monotonic() < end:
        taken.append(scrape(url))
    return taken


async def flood(port: int, seconds: float, index: int) -> None:
    """Post as fast as a few connections allow; print how many answers came back."""
    end = time.monotonic() + seconds
    answered = 0

    async def one(forged: bool) -> None:
        nonlocal answered
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            if forged:
                head = (f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                        f"\r\nX-Unpod-Webhook-Secret: guess-{index}\r\nContent-Length: "
                        f"{len(BODY)}\r\n\r\n").encode()
                writer.write(head + BODY)
            else:
                head = (f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                        f"\r\nX-Unpod-Webhook-Secret: {SECRET}\r\nContent-Length: "
                        f"{2 * 1024 * 1024}\r\n\r\n").encode()
                writer.write(head + b"{" + b" " * 65536)
            await writer.drain()
            if await reader.readline():
                answered += 1
        except OSError:
            pass
        finally:
            writer.close()

    async def worker(forged: bool) -> None:
        while time.monotonic() < end:
            await one(forged)

    await asyncio.gather(*(worker(i % 2 == 0) for i in range(16)))
    print(answered, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orgs", type=int, default=300)
    parser.add_argument("--spaces", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--flooders", type=int, default=2)
    parser.add_argument("--flood", type=int, help=argparse.SUPPRESS)  # a flooder: its port
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        asyncio.run(flood(args.flood, args.seconds, args.index))
        return
    work = Path(tempfile.mkdtemp(prefix="unpod-webhook-"))
    fake, base = start_fake(args.orgs, args.spaces, 0.02)
    config = write_config(work / "config.yaml", base, args.orgs, args.spaces, 60.0)
    raw = yaml.safe_load(config.read_text())
    hook_port, port = free_port(), free_port()
    raw["webhook"] = {"listen_address": f"127.0.0.1:{hook_port}",
                      "secret_env": "BENCH_WEBHOOK_SECRET"}
    config.write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen([PYTHON, "-m", "exporter", "--config.file", str(config),
                             "--web.listen-address", f"127.0.0.1:{port}", "--log.level",
                             "warn"], cwd=ROOT,
                            env={**os.environ, "BENCH_WEBHOOK_SECRET": SECRET})
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=300)
        time.sleep(2)
        quiet = scrapes(url, args.seconds)
        flooders = [subprocess.Popen([PYTHON, __file__, "--flood", str(hook_port), "--seconds",
                                      str(args.seconds + 2), "--index", str(i)],
                                     stdout=subprocess.PIPE, text=True)
                    for i in range(args.flooders)]
        time.sleep(1)
        flooded = scrapes(url, args.seconds)
        answered = sum(int(f.communicate(timeout=120)[0].strip() or 0) for f in flooders)
        with urllib.request.urlopen(url, timeout=60) as response:
            counted = [line for line in response.read().decode().splitlines()
                       if line.startswith("unpod_webhook_requests_total{")]
    finally:
        stop(proc)
        stop(fake)

    def row(name: str, taken: list[float]) -> tuple[float, float]:
        p50 = statistics.median(taken)
        p95 = statistics.quantiles(taken, n=20)[-1] if len(taken) > 1 else taken[0]
        rate = len(taken) / sum(taken)
        print(f"{name:<10} {len(taken):>8} {rate:>10.1f} {p50 * 1000:>9.1f} {p95 * 1000:>9.1f} "
              f"{max(taken) * 1000:>9.1f}")
        return p50, rate

    print(f"{args.orgs * (args.spaces + 1)} targets; {args.flooders} flood processes x 16 "
          "connections (half forged, half oversized), one scraper (gzip)")
    print(f"{'phase':<10} {'scrapes':>8} {'scrapes/s':>10} {'p50 ms':>9} {'p95 ms':>9} "
          f"{'max ms':>9}")
    quiet_p50, quiet_rate = row("quiet", quiet)
    flood_p50, flood_rate = row("flood", flooded)
    print(f"flood: {answered / (args.seconds + 2):.0f} posts answered a second; receiver: "
          + ", ".join(line.split('"')[1] + "=" + line.rsplit(" ", 1)[1] for line in counted))
    print(f"scrapes a second during the flood: {flood_rate / quiet_rate:.2f}x quiet; "
          f"p50 {flood_p50 / quiet_p50:.2f}x quiet")


if __name__ == "__main__":
    main()
