"""Soak: the exporter against a flapping fake API, reloaded every 30 s, for 10 minutes.

python bench/soak.py [--minutes 10] [--targets 60] [--interval 5]

Reports RSS and the asyncio task count every 30 s, and the RSS growth per 10 minutes after a
one-minute warm-up (goal: under 1 MiB per 10 minutes; task count flat).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from aiohttp import ClientSession

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from exporter.app import Exporter  # noqa: E402
from exporter.config import load_config  # noqa: E402
from exporter.listener import run_web  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def write_config(path: Path, port: int, targets: int, interval: float, variant: int) -> None:
    # Alternate configs: a tenth of the targets come and go, and the timeout changes.
    kept = [{"handle": f"org{i}"} for i in range(targets) if variant == 0 or i % 10]
    path.write_text(yaml.safe_dump({
        "api": {"base_url": f"http://127.0.0.1:{port}/api/v2/platform", "token": "tok-secret-123",
                "timeout": "1s" if variant == 0 else "2s", "max_requests_per_minute": 0},
        "poll": {"interval": interval, "concurrency": 16, "max_staleness": "5m"},
        "orgs": kept,
    }))


async def soak(minutes: float, targets: int, interval: float) -> None:
    api_port, web_port = free_port(), free_port()
    fake = subprocess.Popen([sys.executable, str(ROOT / "bench/fake_server.py"), "--port",
                             str(api_port), "--orgs", str(targets), "--flap", "0.33"])
    try:
        await asyncio.sleep(1.5)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.yaml"
            write_config(path, api_port, targets, interval, 0)
            exporter = Exporter(load_config(path), config_loader=lambda: load_config(path))
            runner = await run_web(exporter.web_app, "127.0.0.1", web_port)
            await exporter.start()
            started = time.monotonic()
            samples: list[tuple[float, int, int]] = []
            variant = 0
            async with ClientSession() as session:
                while time.monotonic() - started < minutes * 60:
                    await asyncio.sleep(30)
                    async with session.get(f"http://127.0.0.1:{web_port}/metrics") as resp:
                        assert resp.status == 200
                        await resp.read()
                    variant ^= 1
                    write_config(path, api_port, targets, interval, variant)
                    assert exporter.reload() is None
                    gc.collect()
                    sample = (time.monotonic() - started, rss_kib(), len(asyncio.all_tasks()))
                    samples.append(sample)
                    print(f"t={sample[0]:5.0f}s rss={sample[1] / 1024:7.2f} MiB "
                          f"tasks={sample[2]}", flush=True)
            await exporter.stop()
            await runner.cleanup()
    finally:
        fake.terminate()
        fake.wait()
    after_warmup = [s for s in samples if s[0] >= 60]
    first, last = after_warmup[0], after_warmup[-1]
    growth = (last[1] - first[1]) / 1024
    per_ten = growth * 600 / max(1.0, last[0] - first[0])
    tasks = [s[2] for s in after_warmup]
    print(f"\nRSS after warm-up {first[1] / 1024:.2f} MiB -> {last[1] / 1024:.2f} MiB: "
          f"{growth:+.2f} MiB over {(last[0] - first[0]) / 60:.1f} min "
          f"({per_ten:+.2f} MiB per 10 min; goal < 1)")
    print(f"asyncio tasks after warm-up: min {min(tasks)}, max {max(tasks)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--targets", type=int, default=60)
    parser.add_argument("--interval", type=float, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the faults are the point; their logs are not
    asyncio.run(soak(args.minutes, args.targets, args.interval))


if __name__ == "__main__":
    main()
