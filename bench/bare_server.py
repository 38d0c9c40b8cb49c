"""The ceiling for /metrics: a bare aiohttp handler serving fixed gzip bytes."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", required=True, help="file with the gzip body to serve")
    parser.add_argument("--content-type", required=True)
    args = parser.parse_args()
    body = Path(args.body).read_bytes()

    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": args.content_type,
                                                "Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=lambda *_: None)
