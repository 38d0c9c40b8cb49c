"""Benchmarks 2 and 4: start to ready, and CPU per 1,000 polls in steady state, against a
bare aiohttp client loop making the same requests at the same concurrency.

python bench/startup.py [--orgs 1000 --spaces 9] [--rounds 3]

Start to ready: from spawning the process to /-/ready answering 200 (the exporter), or to the
process exiting after its last response (the bare loop), interleaved over rounds against the
same fake API (its own process, 20 ms per answer). Goal: bare / exporter >= 0.7.
CPU: the exporter's process CPU over 30 s of steady state (interval 30 s: every target once,
spread; one scrape every 10 s, as Prometheus would), per 1,000 polls, against the bare loop's
CPU per 1,000 requests, both in a burst and paced at the same rate as the polls (spread
requests wake the event loop more often than a burst does). Goal: <= 1.5 x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, ROOT, cpu_seconds, free_port, start_fake, stop, wait_http, write_config


def polls(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("unpod_api_requests_total{"))


def main(args: argparse.Namespace) -> None:
    fake, base = start_fake(args.orgs, args.spaces, 0.02)
    tmp = Path(tempfile.mkdtemp())
    try:
        bare_times, bare_cpu, exporter_times = [], [], []
        for round_ in range(args.rounds):
            started = time.monotonic()
            out = subprocess.run([PYTHON, str(ROOT / "bench/bare_client.py"), "--base", base,
                                  "--orgs", str(args.orgs), "--spaces", str(args.spaces),
                                  "--concurrency", "64"], capture_output=True, text=True,
                                 check=True)
            bare_times.append(time.monotonic() - started)
            result = json.loads(out.stdout)
            bare_cpu.append(result["cpu_seconds"] / result["requests"] * 1000)

            config = write_config(tmp / "config.yaml", base, args.orgs, args.spaces,
                                  interval=3600)
            port = free_port()
            started = time.monotonic()
            proc = subprocess.Popen([PYTHON, "-m", "exporter", "--config.file", str(config),
                                     "--web.listen-address", f"127.0.0.1:{port}",
                                     "--log.level", "error"], cwd=ROOT)
            wait_http(f"http://127.0.0.1:{port}/-/ready")
            exporter_times.append(time.monotonic() - started)
            stop(proc)
            print(f"round {round_ + 1}: bare {bare_times[-1]:.2f}s, "
                  f"exporter {exporter_times[-1]:.2f}s", flush=True)

        config = write_config(tmp / "config.yaml", base, args.orgs, args.spaces, interval=30)
        port = free_port()
        proc = subprocess.Popen([PYTHON, "-m", "exporter", "--config.file", str(config),
                                 "--web.listen-address", f"127.0.0.1:{port}",
                                 "--log.level", "error"], cwd=ROOT)
        try:
            wait_http(f"http://127.0.0.1:{port}/-/ready")
            time.sleep(35)  # past the first (burst) round, into the spread rounds
            cpu0, polls0 = cpu_seconds(proc.pid), polls(port)
            for _ in range(3):
                time.sleep(10)
                polls(port)  # a scrape every 10 s
            cpu1, polls1 = cpu_seconds(proc.pid), polls(port)
        finally:
            stop(proc)
        exporter_cpu = (cpu1 - cpu0) / (polls1 - polls0) * 1000
        targets = args.orgs * (args.spaces + 1)
        out = subprocess.run([PYTHON, str(ROOT / "bench/bare_client.py"), "--base", base,
                              "--orgs", str(args.orgs), "--spaces", str(args.spaces),
                              "--concurrency", "64", "--rate", str(targets / 30)],
                             capture_output=True, text=True, check=True)
        paced = json.loads(out.stdout)
        paced_per = paced["cpu_seconds"] / paced["requests"] * 1000
        bare, exporter, bare_per = (statistics.median(bare_times),
                                    statistics.median(exporter_times),
                                    statistics.median(bare_cpu))
        print(f"\nstart to ready (median): bare loop {bare:.2f}s, exporter {exporter:.2f}s: "
              f"bare / exporter = {bare / exporter:.2f} (goal >= 0.7)")
        print(f"CPU per 1,000 polls: exporter {exporter_cpu:.3f}s over {polls1 - polls0:.0f} "
              f"polls, bare loop {bare_per:.3f}s in a burst: ratio {exporter_cpu / bare_per:.2f} "
              f"(goal <= 1.5); bare loop paced at the same {targets / 30:.0f}/s "
              f"{paced_per:.3f}s: ratio {exporter_cpu / paced_per:.2f}")
    finally:
        stop(fake)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--spaces", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args())
