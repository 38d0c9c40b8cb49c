"""The stock approach, for comparison: the exporter's store filled by one round of polls,
then prometheus_client's generate_latest (and gzip, as its own handler does) on every request.
Its own process, so that its seconds-long renders do not stall the exporter being measured."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import logging
import sys
from pathlib import Path

from aiohttp import web
from prometheus_client.exposition import choose_encoder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from exporter.app import Exporter, make_registry
from exporter.config import load_config
from exporter.listener import run_web


async def main(config: str, port: int) -> None:
    exporter = Exporter(load_config(config))
    await exporter.start()
    while not exporter.is_ready():
        await asyncio.sleep(0.1)
    await exporter.stop()  # the data stays in the store; no polling competes with renders
    registry = make_registry(exporter.store)

    async def stock(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = gzip.compress(encoder(registry))
        return web.Response(body=body, headers={"Content-Type": content_type,
                                                "Content-Encoding": "gzip"})

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="Ready\n")

    app = web.Application()
    app.router.add_get("/metrics", stock)
    app.router.add_get("/-/ready", ready)
    runner = await run_web(app, "127.0.0.1", port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(args.config, args.port))
