"""Helpers shared by the benchmarks: processes on loopback, configs, memory readings."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 300, status: int = 200) -> float:
    """Seconds until ``url`` answers ``status``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == status:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(url)


def start_fake(orgs: int, spaces: int, latency: float = 0.02,
               *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([PYTHON, str(ROOT / "bench" / "fake_server.py"), "--port", str(port),
                             "--orgs", str(orgs), "--spaces", str(spaces),
                             "--latency", str(latency), *extra])
    base = f"http://127.0.0.1:{port}/api/v2/platform"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, base
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("fake API did not start")


def write_config(path: Path, base: str, orgs: int, spaces: int, interval: float,
                 concurrency: int = 64) -> Path:
    path.write_text(yaml.safe_dump({
        "api": {"base_url": base, "token": "tok-secret-123", "timeout": "10s",
                "max_requests_per_minute": 0},
        # idle_interval may not be below the interval (startup's hour-long one)
        "poll": {"interval": interval, "idle_interval": max(interval, 600),
                 "concurrency": concurrency, "max_staleness": "1h"},
        "orgs": [{"handle": f"org{i}", "spaces": [
            {"name": f"space-{j}", "space_token": f"sp{i}_{j}"} for j in range(spaces)]}
            for i in range(orgs)],
    }))
    return path


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    import os
    return ticks / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def scrape_gzip(port: int, timeout: float = 60) -> int:
    """One gzip OpenMetrics scrape, as Prometheus makes it; the body's length."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={
        "Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return len(response.read())
