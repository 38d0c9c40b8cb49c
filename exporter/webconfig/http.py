"""The web config's HTTP side: rate limit, basic auth and response headers on every path but
the kubelet's probes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from exporter.webconfig.auth import REALM, AuthBusy, BasicAuth, credentials
from exporter.webconfig.watcher import WebConfigWatcher

# Kubelet probes carry no password, and a 429 would restart the pod.
UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})


def install(app: web.Application, watcher: WebConfigWatcher, rate_limit: bool = True) -> None:
    """``rate_limit=False``: the app applies the web config's rate limit itself (the webhook
    receiver, which answers and counts its refusals as its sender needs)."""
    auth = BasicAuth(lambda: watcher.config.users)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        watcher.refresh()
        if request.path not in UNAUTHENTICATED_PATHS:
            limiter = watcher.limiter if rate_limit else None
            if limiter is not None and not limiter.allow():
                return web.Response(status=429, text="Too Many Requests\n")
            if watcher.config.users:
                given = credentials(request.headers.get("Authorization"))
                try:
                    ok = given is not None and await auth.check(*given)
                except AuthBusy:
                    return web.Response(status=429, text="Too many authentication attempts\n",
                                        headers={"Retry-After": "1"})
                if not ok:
                    return web.Response(status=401, text="Unauthorized\n",
                                        headers={"WWW-Authenticate": REALM})
        response: web.StreamResponse = await handler(request)
        return response

    async def add_headers(_: web.Request, response: web.StreamResponse) -> None:
        for name, value in watcher.config.headers:
            response.headers[name] = value

    async def close_pool(_: web.Application) -> None:
        auth.close()

    app.middlewares.append(guard)
    app.on_response_prepare.append(add_headers)
    app.on_cleanup.append(close_pool)
