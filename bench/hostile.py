"""Benchmark: the attacks of issue 12 replayed against the running program on loopback; for
each, the figure that shows the exporter holds.

python bench/hostile.py

Three exporters, each a real process: A polls 3,000 targets of the fake API plus its hostile
orgs (``bench/fake_server.py --hostile``); B is ``--demo`` behind TLS and basic auth (bcrypt
cost 10); C has two orgs under a 60-a-minute budget, for the /probe flood. Everything runs on
loopback and stops by itself.
"""

from __future__ import annotations

import base64
import concurrent.futures
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import bcrypt
import trustme
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, ROOT, free_port, start_fake, status_kib, stop, wait_http

TOKEN = "tok-secret-123"
GZIP_MAGIC = b"\x1f\x8b"
WORK = Path(tempfile.mkdtemp(prefix="unpod-hostile-"))


def exporter(config: Path | None, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    source = ["--demo"] if config is None else ["--config.file", str(config)]
    proc = subprocess.Popen([PYTHON, "-m", "exporter", *source, "--web.listen-address",
                             f"127.0.0.1:{port}", "--log.level", "warn", *args], cwd=ROOT,
                            stderr=open(WORK / f"exporter-{port}.log", "wb"))  # noqa: SIM115
    return proc, port


def get(url: str, headers: dict[str, str] | None = None,
        context: ssl.SSLContext | None = None) -> tuple[int, bytes, float]:
    started = time.monotonic()
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return response.status, response.read(), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), time.monotonic() - started


def closed(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def report(attack: str, figure: str) -> None:
    print(f"{attack:<58} {figure}", flush=True)


def upstream(base_port: int) -> None:
    base = f"http://127.0.0.1:{base_port}"
    statuses = [get(base + "/metrics")[0] for _ in range(20)]
    report("1. 401-digit count, 400-digit X-RateLimit-Remaining",
           f"/metrics 200 in {statuses.count(200)} of {len(statuses)} scrapes")
    page = get(base + "/")[1].decode()
    status = get(base + "/-/ready")[0]
    report("2. X-RateLimit-Remaining '²', Limit '٣', 400-digit Reset",
           f"/-/ready {status}; 'poll crashed' lines: "
           f"{(WORK / f'exporter-{base_port}.log').read_text().count('poll crashed')}; "
           f"target on landing page: {'headers' in page}")
    status, body, _ = get(base + "/metrics", {
        "Accept": "application/openmetrics-text; version=a", "Accept-Encoding": "gzip;q=0"})
    gzipped = body[:2] == GZIP_MAGIC
    report("8. Accept: openmetrics version=a, gzip;q=0",
           f"HTTP {status}, gzip: {gzipped}, text format: {b'# EOF' not in body}")
    report("9. a task status named like the API token",
           f"token in /metrics: {TOKEN.encode() in get(base + '/metrics')[1]}")


def unread_clients(proc: subprocess.Popen[bytes], port: int, clients: int = 30) -> None:
    body = len(get(f"http://127.0.0.1:{port}/metrics")[1])
    time.sleep(1)
    before = status_kib(proc.pid, "VmRSS")
    socks = []
    for _ in range(clients):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(sock)
    time.sleep(3)
    grown = status_kib(proc.pid, "VmRSS") - before
    for sock in socks:
        sock.close()
    report(f"6. {clients} clients, uncompressed /metrics, never read",
           f"RSS +{grown / 1024:.1f} MiB (body {body / 2**20:.1f} MiB each; "
           f"before the fix +55 MiB at 3,000 targets)")


def silent_connections(proc: subprocess.Popen[bytes], port: int, where: str,
                       scrape: Callable[[], tuple[int, bytes, float]],
                       count: int = 1000) -> None:
    """``count`` connections that never send a byte, held while valid scrapes go on."""
    time.sleep(1)
    before = status_kib(proc.pid, "VmRSS")
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    time.sleep(1)
    scrapes = [scrape() for _ in range(10)]
    held = status_kib(proc.pid, "VmRSS") - before
    closed_now = [closed(sock) for sock in silent]
    oldest = next((i for i, gone in enumerate(closed_now) if not gone), count)
    for sock in silent:
        sock.close()
    took = [t for status, _, t in scrapes if status == 200]
    report(f"5. {count} silent TCP connections, {where}",
           f"valid scrapes 200 x{len(took)} of {len(scrapes)}, max "
           f"{max(took, default=float('nan')) * 1000:.0f} ms; RSS +{held / 1024:.1f} MiB; "
           f"{sum(closed_now)} closed, the oldest {oldest} first (before: scrapes refused)")


def auth_and_tls() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(WORK / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(WORK / "server.crt"))
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(10)).decode()
    (WORK / "web.yml").write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
        "basic_auth_users": {"prometheus": hashed}}))
    proc, port = exporter(None, "--web.config.file", str(WORK / "web.yml"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    base = f"https://127.0.0.1:{port}"

    def auth(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode())
                .decode()}

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if get(base + "/-/healthy", context=context)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        get(base + "/metrics", auth("prometheus", "right"), context)  # cached from now on
        latencies: list[float] = []
        statuses: list[int] = []
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            flood_end = time.monotonic() + 10
            futures = []
            while time.monotonic() < flood_end:  # 50 wrong passwords a second
                futures += [pool.submit(get, base + "/metrics", auth("prometheus", f"x{i}"),
                                        context) for i in range(5)]
                status, _, took = get(base + "/metrics", auth("prometheus", "right"), context)
                assert status == 200
                latencies.append(took)
                time.sleep(0.1)
            statuses = [f.result()[0] for f in futures]
        report("3. 50 wrong basic-auth passwords a second, 10 s",
               f"valid scrapes p50 {statistics.median(latencies) * 1000:.0f} ms, max "
               f"{max(latencies) * 1000:.0f} ms (before: up to 25 s); flood answered "
               f"401 x{statuses.count(401)}, 429 x{statuses.count(429)}")
        # a new password each time: failures are cached like successes
        known = [get(base + "/metrics", auth("prometheus", f"no{i}"), context)[2]
                 for i in range(9)]
        unknown = [get(base + "/metrics", auth("nobody", f"no{i}"), context)[2]
                   for i in range(9)]
        report("4. unknown user vs known user with a wrong password",
               f"median {statistics.median(unknown) * 1000:.0f} ms vs "
               f"{statistics.median(known) * 1000:.0f} ms "
               f"(ratio {statistics.median(unknown) / statistics.median(known):.2f}; before 0.06)")
        silent_connections(proc, port, "TLS port, basic auth",
                           lambda: get(base + "/metrics", auth("prometheus", "right"), context))
    finally:
        stop(proc)


def probe_flood(base: str) -> None:
    config = WORK / "probe.yaml"
    config.write_text(yaml.safe_dump({
        "api": {"base_url": base, "token": TOKEN, "max_requests_per_minute": 60},
        "poll": {"interval": "10s", "max_staleness": "5m"},
        "orgs": [{"handle": "org0"}, {"handle": "org1"}]}))
    proc, port = exporter(config)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/-/ready", timeout=60)
        statuses = []
        worst_age = 0.0
        flood_end = time.monotonic() + 60
        while time.monotonic() < flood_end:  # 5 probes a second
            statuses.append(get(url + "/probe?org=org0")[0])
            time.sleep(0.2)
            text = get(url + "/metrics")[1].decode()
            for line in text.splitlines():
                if line.startswith('unpod_last_success_timestamp_seconds{org="org1"}'):
                    worst_age = max(worst_age, time.time() - float(line.split()[-1]))
        report("7. /probe flood, 5 a second for 60 s, budget 60 a minute",
               f"probes 200 x{statuses.count(200)}, 503 x{statuses.count(503)}; "
               f"org1's last success at most {worst_age:.0f} s old (interval 10 s)")
    finally:
        stop(proc)


def main() -> None:
    fake, base = start_fake(300, 9, 0.02, "--hostile")
    config = WORK / "config.yaml"
    config.write_text(yaml.safe_dump({
        "api": {"base_url": base, "token": TOKEN, "max_requests_per_minute": 0},
        "poll": {"interval": "60s", "concurrency": 64, "max_staleness": "1h"},
        "orgs": [{"handle": h} for h in ("huge", "headers", "echo")] + [
            {"handle": f"org{i}", "spaces": [{"name": f"space-{j}", "space_token": f"sp{i}_{j}"}
                                             for j in range(9)]} for i in range(300)]}))
    proc, port = exporter(config)
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=300)
        upstream(port)
        silent_connections(proc, port, "plain port",
                           lambda: get(f"http://127.0.0.1:{port}/metrics"))
        unread_clients(proc, port)
        auth_and_tls()
        probe_flood(base)
    finally:
        stop(proc)
        stop(fake)


if __name__ == "__main__":
    main()
