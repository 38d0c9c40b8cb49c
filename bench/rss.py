"""Benchmark 3: peak RSS (VmHWM) of the exporter with 1,000, 10,000 and 50,000 targets.

python bench/rss.py [--sizes 1000 10000 50000]

Each size: the fake API (10 targets per org), the exporter until ready, then 60 s of spread
polling (interval 60 s) with a gzip OpenMetrics scrape every 5 s. Goal: < 150 MiB at 10,000.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PYTHON,
    ROOT,
    free_port,
    scrape_gzip,
    start_fake,
    status_kib,
    stop,
    wait_http,
    write_config,
)


def main(sizes: list[int], seconds: float) -> None:
    rows = []
    for size in sizes:
        orgs = size // 10
        fake, base = start_fake(orgs, 9, 0.02)
        config = write_config(Path(tempfile.mkdtemp()) / "config.yaml", base, orgs, 9,
                              interval=60)
        port = free_port()
        proc = subprocess.Popen([PYTHON, "-m", "exporter", "--config.file", str(config),
                                 "--web.listen-address", f"127.0.0.1:{port}",
                                 "--log.level", "error"], cwd=ROOT)
        try:
            ready = wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=900)
            deadline = time.monotonic() + seconds
            body = 0
            while time.monotonic() < deadline:
                body = scrape_gzip(port)
                time.sleep(5)
            peak = status_kib(proc.pid, "VmHWM") / 1024
            rss = status_kib(proc.pid, "VmRSS") / 1024
        finally:
            stop(proc)
            stop(fake)
        rows.append((size, ready, peak, rss, body))
        print(f"{size:6d} targets: ready {ready:6.1f}s, peak RSS {peak:6.1f} MiB, "
              f"RSS {rss:6.1f} MiB, scrape {body / 1024:.0f} KiB gzip", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    main(args.sizes, args.seconds)
