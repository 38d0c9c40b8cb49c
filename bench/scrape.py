"""Benchmark 1: /metrics requests per second while polling goes on.

python bench/scrape.py [--orgs 1000 --spaces 9] [--seconds 5] [--rounds 3]

10,000 targets (1,000 orgs x (org-wide + 9 spaces)), the fake API in its own process
answering in 20 ms, concurrency 64, interval 30 s (about 330 polls, so snapshot changes, a
second). Scraped as Prometheus does (gzip, OpenMetrics preferred) by a load generator in this
process, side by side in interleaved rounds against:
  (a) a bare aiohttp handler in its own process serving the same gzip bytes (the ceiling),
  the exporter, and
  (b) prometheus_client.generate_latest per request over the same data: a store filled by one
      round of polls of the same fake API, in its own process (the stock approach).
Goals: exporter >= 0.7 x (a) and >= 20 x (b).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, ROOT, cpu_seconds, free_port, start_fake, stop, wait_http, write_config

HEADERS = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
           "Accept-Encoding": "gzip"}


async def load(url: str, seconds: float, connections: int) -> tuple[float, int]:
    """Requests per second over ``seconds`` with ``connections`` concurrent clients."""
    done = 0
    size = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, size
        while time.monotonic() < deadline:
            async with session.get(url, headers=HEADERS, auto_decompress=False) as response:
                body = await response.read()
                assert response.status == 200
                done += 1
                size = len(body)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        return done / (time.monotonic() - started), size


async def main(args: argparse.Namespace) -> None:
    fake, base = start_fake(args.orgs, args.spaces, 0.02)
    procs = [fake]
    try:
        tmp = Path(tempfile.mkdtemp())
        config = write_config(tmp / "config.yaml", base, args.orgs, args.spaces,
                              interval=args.interval)
        port, stock_port, bare_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([PYTHON, str(ROOT / "bench/stock_server.py"),
                                       "--config", str(config), "--port", str(stock_port)]))
        wait_http(f"http://127.0.0.1:{stock_port}/-/ready")
        procs.append(subprocess.Popen([PYTHON, "-m", "exporter", "--config.file", str(config),
                                       "--web.listen-address", f"127.0.0.1:{port}",
                                       "--log.level", "error"], cwd=ROOT))
        ready = wait_http(f"http://127.0.0.1:{port}/-/ready")
        pids = {"bare": 0, "exporter": procs[-1].pid, "stock": procs[-2].pid}
        print(f"exporter (pid {pids['exporter']}) ready after {ready:.1f}s; warming up 10s")
        await asyncio.sleep(10)
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}/metrics", headers=HEADERS,
                auto_decompress=False) as response:
            body = await response.read()
            content_type = response.headers["Content-Type"]
        (tmp / "body.gz").write_bytes(body)
        procs.append(subprocess.Popen([PYTHON, str(ROOT / "bench/bare_server.py"), "--port",
                                       str(bare_port), "--body", str(tmp / "body.gz"),
                                       "--content-type", content_type]))
        wait_http(f"http://127.0.0.1:{bare_port}/metrics")
        pids["bare"] = procs[-1].pid
        import gzip
        series = sum(1 for line in gzip.decompress(body).splitlines()
                     if line and not line.startswith(b"#"))
        print(f"{series} series, {len(body) / 1024:.0f} KiB gzip ({content_type})")
        results: dict[str, list[float]] = {"bare": [], "exporter": [], "stock": []}
        urls = {"bare": f"http://127.0.0.1:{bare_port}/metrics",
                "exporter": f"http://127.0.0.1:{port}/metrics",
                "stock": f"http://127.0.0.1:{stock_port}/metrics"}
        for round_ in range(args.rounds):
            for name, url in urls.items():
                if name not in args.servers.split(","):
                    continue
                seconds = args.seconds if name != "stock" else max(args.seconds, 10)
                cpu = cpu_seconds(pids[name])
                rps, _ = await load(url, seconds, args.connections)
                # the server's CPU share over the round: 1.0 is a whole core
                share = (cpu_seconds(pids[name]) - cpu) / seconds
                results[name].append(rps)
                print(f"round {round_ + 1}: {name:8s} {rps:8.1f} req/s, server CPU {share:.2f}",
                      flush=True)
        median = {n: statistics.median(r) for n, r in results.items() if r}
        print("\nmedian req/s: " + ", ".join(f"{n} {v:.2f}" for n, v in median.items()))
        if "bare" in median and "exporter" in median:
            per_round = [e / b for e, b in zip(results["exporter"], results["bare"],
                                                strict=True)]
            print("exporter / bare per round: " + ", ".join(f"{r:.2f}" for r in per_round))
            print(f"exporter / bare  = {median['exporter'] / median['bare']:.2f} (goal >= 0.7)")
        if "stock" in median and "exporter" in median:
            print(f"exporter / stock = {median['exporter'] / median['stock']:.1f} (goal >= 20)")
    finally:
        for proc in reversed(procs):
            stop(proc)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--spaces", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--interval", type=float, default=30,
                        help="poll interval (3600: the scrape path alone, without polling)")
    parser.add_argument("--servers", default="bare,exporter,stock",
                        help="which to load, e.g. 'exporter' alone under a profiler")
    asyncio.run(main(parser.parse_args()))
