from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter
from exporter.config import parse_config_text
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
