"""The exporter (cached exposition) and, on a second port over the same store, the stock
approach: prometheus_client's generate_latest (and gzip) on every request."""

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
from exporter.app import Exporter, make_registry, run_web
from exporter.config import load_config


async def main(config: str, port: int, stock_port: int) -> None:
    exporter = Exporter(load_config(config))
    registry = make_registry(exporter.store)  # every series, rendered per request

    async def stock(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = gzip.compress(encoder(registry))
        return web.Response(body=body, headers={"Content-Type": content_type,
                                                "Content-Encoding": "gzip"})

    stock_app = web.Application()
    stock_app.router.add_get("/metrics", stock)
    runners = [await run_web(exporter.web_app, "127.0.0.1", port),
               await run_web(stock_app, "127.0.0.1", stock_port)]
    await exporter.start()
    try:
        await asyncio.Event().wait()
    finally:
        await exporter.stop()
        for runner in runners:
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stock-port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(args.config, args.port, args.stock_port))
