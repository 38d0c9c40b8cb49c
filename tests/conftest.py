from __future__ import annotations

import asyncio
import base64
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.backlog.parse import MAX_BODY_BYTES
from exporter.client import UnpodClient
from exporter.config import parse_config_text
from exporter.listener import run_web
from exporter.webconfig import WebConfigWatcher
from tests.fakeapi import FakeUnpod

TOKEN = "tok-secret-123"
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_metrics(text: str) -> Series:
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, frozenset(labels.items())))


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0,
                   what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def fake_api() -> AsyncIterator[tuple[FakeUnpod, str]]:
    fake = FakeUnpod()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("/api/v2/platform"))
    finally:
        await server.close()


@pytest.fixture
async def backlog_api() -> AsyncIterator[tuple[FakeUnpod, UnpodClient]]:
    """The fake API, and a client of it with the backlog scan's 8 MiB answer bound."""
    fake = FakeUnpod()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield fake, UnpodClient(session, str(server.make_url("/api/v2/platform")), 5.0,
                                    MAX_BODY_BYTES)
    finally:
        await server.close()


def config_yaml(base_url: str, orgs: list[dict[str, Any]], api: dict[str, Any] | None = None,
                **poll: Any) -> str:
    return yaml.safe_dump({
        "api": {"base_url": base_url, "token": TOKEN, "timeout": "2s",
                "max_requests_per_minute": 0, **(api or {})},
        "poll": {"interval": "60s", "concurrency": 4, **poll},
        "orgs": orgs,
    })


class Running:
    """An exporter started against the fake API, with an HTTP client for its web app."""

    def __init__(self, exporter: Exporter, client: TestClient[Any, Any]) -> None:
        self.exporter = exporter
        self.client = client

    async def metrics(self, **headers: str) -> Series:
        response = await self.client.get("/metrics", headers=headers)
        assert response.status == 200
        return parse_metrics(await response.text())

    async def wait_ready(self, timeout: float = 5.0) -> None:
        async def ready() -> bool:
            return (await self.client.get("/-/ready")).status == 200
        await wait_for(ready, timeout, "/-/ready")


@pytest.fixture
async def start_exporter() -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    started: list[Running] = []

    async def start(config_text: str, **kwargs: Any) -> Running:
        exporter = Exporter(parse_config_text(config_text), **kwargs)
        client: TestClient[Any, Any] = TestClient(TestServer(exporter.web_app, host="127.0.0.1"))
        await client.start_server()
        await exporter.start()
        running = Running(exporter, client)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.exporter.stop()
        await running.client.close()


# --- the real program in a subprocess ----------------------------------------------------

EXE = [sys.executable, "-m", "exporter"]


def get(url: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Process:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*EXE, "--web.listen-address", f"127.0.0.1:{self.port}", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_http(self, path: str = "/-/healthy", status: int = 200, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                code, body = get(self.base + path)
                if code == status:
                    return body
            except OSError:
                pass
            assert self.proc.poll() is None, self.proc.communicate()[1]
            time.sleep(0.05)
        raise AssertionError(f"{path} did not answer {status} within {timeout}s")

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.fixture
def process() -> Iterator[type[Process]]:
    started: list[Process] = []

    class Tracked(Process):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for proc in started:
        proc.stop()


# --- web config: TLS and basic auth in front of the exporter ----------------------------------

def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def write_tls(tmp: Path, ca: trustme.CA, name: str = "server") -> dict[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(tmp / f"{name}.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp / f"{name}.crt"))
    return {"cert_file": f"{name}.crt", "key_file": f"{name}.key"}


@pytest.fixture
async def serve(fake_api, start_exporter, tmp_path):
    """Start the exporter behind a web config (dict), on a real TLS/HTTP port."""
    runners = []

    async def start(web: dict) -> str:
        fake, base = fake_api
        fake.set_analytics("acme")
        path = tmp_path / "web.yml"
        path.write_text(yaml.safe_dump(web))
        watcher = WebConfigWatcher(str(path))
        running = await start_exporter(config_yaml(base, [{"handle": "acme"}]),
                                       web_config=watcher)
        port = free_port()
        runners.append(await run_web(running.exporter.web_app, "127.0.0.1", port,
                                     watcher if watcher.tls else None))
        await running.wait_ready()
        scheme = "https" if watcher.config.tls else "http"
        return f"{scheme}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()
