"""The HTTP face: telemetry path, landing page, health and readiness."""

from __future__ import annotations

import asyncio
import gzip
import html
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from exporter import __version__
from exporter.backlog.metrics import describe
from exporter.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, ExpositionCache
from exporter.negotiation import Format, accepts_gzip, negotiate
from exporter.store import SnapshotStore, TargetState
from exporter.targets import Target
from exporter.webconfig import WebConfigWatcher, install

MAX_LANDING_ROWS = 500


WRITE_TIMEOUT = 60.0  # a client that does not read its body for this long is cut off
# A gzip body goes out in slices, so that a client that stops reading holds one slice in its
# transport buffer (Python 3.11 copies what the socket did not take), not the whole body. While
# few bodies are being written, the slices are large: fewer, larger writes let the kernel
# batch (a 2.1 MB body in 1 MiB slices served 0.95-0.99x a bare handler's rate, in 256 KiB
# slices 0.87-0.90, side by side). Past LARGE_WRITERS at once the slices are small, so that
# many stalled clients hold at most LARGE_WRITERS x LARGE_CHUNK + the rest x CHUNK.
CHUNK = 256 * 1024
LARGE_CHUNK = 1024 * 1024
LARGE_WRITERS = 8


def _accepts_gzip(request: web.Request) -> bool:
    return accepts_gzip(request.headers.get("Accept-Encoding"))


def _format(request: web.Request) -> Format:
    return negotiate(request.headers.get("Accept"))


def render_metrics(registry: CollectorRegistry, openmetrics: bool,
                   gzip_ok: bool) -> tuple[bytes, str, bool]:
    """Exposition bytes, content type, and whether the bytes are gzip-compressed."""
    if openmetrics:
        body = openmetrics_latest(registry)  # type: ignore[no-untyped-call]
        content_type = OPENMETRICS_CONTENT_TYPE
    else:
        body, content_type = text_latest(registry), TEXT_CONTENT_TYPE
    if gzip_ok:
        return gzip.compress(body, compresslevel=6), content_type, True
    return body, content_type, False


def exposition(request: web.Request, registry: CollectorRegistry) -> web.Response:
    negotiated = _format(request)
    body, _, gzipped = render_metrics(registry, negotiated.openmetrics, _accepts_gzip(request))
    response = web.Response(body=body, headers={"Content-Type": negotiated.content_type})
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept, Accept-Encoding"
    return response


def _slices(data: bytes, size: int) -> Iterator[memoryview]:
    view = memoryview(data)
    return (view[i:i + size] for i in range(0, len(data), size))


class BodyWriters:
    """How many gzip bodies are being written now, to size their slices."""

    def __init__(self) -> None:
        self.count = 0

    async def send(self, request: web.Request, headers: dict[str, str],
                   body: bytes) -> web.StreamResponse:
        size = LARGE_CHUNK if self.count < LARGE_WRITERS else CHUNK
        self.count += 1
        try:
            return await stream(request, headers, len(body), _slices(body, size))
        finally:
            self.count -= 1


async def stream(request: web.Request, headers: dict[str, str], length: int,
                 chunks: Iterable[bytes | memoryview]) -> web.StreamResponse:
    """Write a body chunk by chunk, waiting for the client to read (back-pressure): a client
    that does not read holds one transport buffer, not a copy of the body, and is cut off
    after WRITE_TIMEOUT."""
    response = web.StreamResponse(headers=headers)
    response.content_length = length
    await response.prepare(request)
    try:
        async with asyncio.timeout(WRITE_TIMEOUT):
            for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
    return response


def _when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    iso = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    return f"{iso} ({now - timestamp:.0f}s ago)"


def _row(state: TargetState, now: float, waiting: str | None, stale_after: float) -> str:
    esc = html.escape
    up = "up" if state.up else "down"
    if not state.attempted:
        up = f"pending ({waiting})" if waiting else "pending"
    error = ""
    if state.last_error is not None:
        error = f"{state.last_error.reason}: {state.last_error.message}"
    shape = state.shape if state.last_success is not None else ""
    cells = (state.target.org, state.target.space or "(org-wide)", up, shape,
             _when(state.last_success, now), _when(state.last_polled, now), error,
             describe(state.backlog, now, stale_after))
    return "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"


def landing_page(store: SnapshotStore, telemetry_path: str,
                 waiting: Callable[[Target], str | None] = lambda _: None) -> str:
    """``waiting(target)``: the explained pause that holds a target not yet attempted."""
    now = store.clock()
    states = sorted(store.states(), key=lambda s: (s.up, s.target.org, s.target.space))
    shown = states[:MAX_LANDING_ROWS]
    more = len(states) - len(shown)
    rows = "\n".join(_row(s, now, None if s.attempted else waiting(s.target),
                           store.backlog_stale_after) for s in shown)
    held = sum(not s.attempted and waiting(s.target) is not None for s in states)
    if held:
        note = (f"<p>{held} targets not polled yet wait on a pause the API asked for (or an "
                "auth back-off); readiness does not wait for them.</p>") + note_more(more)
    else:
        note = note_more(more)
    path = html.escape(telemetry_path, quote=True)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Unpod Exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:left}}</style>
</head><body>
<h1>Unpod Exporter</h1>
<p>Version {html.escape(__version__)}</p>
<p><a href="{path}">Metrics</a></p>
<h2>Targets</h2>
<table>
<tr><th>org</th><th>space</th><th>up</th><th>shape</th><th>last confirmed</th>
<th>last polled</th><th>last error</th><th>backlog</th></tr>
{rows}
</table>
{note}
</body></html>
"""


def note_more(more: int) -> str:
    return f"<p>{more} more targets not shown (failing targets come first).</p>" if more else ""


Probe = Callable[[str, str, str | None], Awaitable[CollectorRegistry | str]]
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


def make_app(*, cache: ExpositionCache, store: SnapshotStore, telemetry_path: str = "/metrics",
             is_ready: Callable[[], bool], reload: Callable[[], str | None] | None = None,
             web_config: WebConfigWatcher | None = None, probe: Probe | None = None,
             waiting: Callable[[Target], str | None] = lambda _: None,
             ) -> web.Application:
    """The exporter's HTTP face; ``probe(org, space, scrape_timeout_header)`` serves /probe,
    ``reload`` the lifecycle API (None: off), ``waiting(target)`` says on the landing page
    which explained pause holds a target not yet polled."""
    writers = BodyWriters()

    async def metrics(request: web.Request) -> web.StreamResponse:
        negotiated = _format(request)
        body = await cache.get(negotiated.openmetrics)
        headers = {"Content-Type": negotiated.content_type, "Vary": "Accept, Accept-Encoding"}
        if _accepts_gzip(request):
            headers["Content-Encoding"] = "gzip"
            return await writers.send(request, headers, body.gzipped)
        return await stream(request, headers, body.text_length, body.text_pieces())

    async def probe_target(request: web.Request) -> web.Response:
        query = request.query
        orgs, spaces = query.getall("org", []), query.getall("space", [])
        if (probe is None or set(query) - {"org", "space"} or len(orgs) != 1
                or len(spaces) > 1 or (spaces and not spaces[0])):
            return web.Response(status=400, text="usage: /probe?org=HANDLE[&space=NAME]\n")
        result = await probe(orgs[0], spaces[0] if spaces else "",
                             request.headers.get(SCRAPE_TIMEOUT_HEADER))
        if result == "unknown":
            return web.Response(status=400, text="not a configured or discovered target\n")
        if isinstance(result, str):
            return web.Response(status=503, text="no request budget free for probes now (the "
                                "scheduled polls come first)\n")
        return exposition(request, result)

    async def landing(_: web.Request) -> web.Response:
        return web.Response(text=landing_page(store, telemetry_path, waiting),
                            content_type="text/html")

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="OK\n")

    async def ready(_: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="Ready\n")
        return web.Response(status=503, text="Not ready: first poll of every target pending "
                            "(and not held by a pause the API asked for)\n")

    async def lifecycle_reload(_: web.Request) -> web.Response:
        if reload is None:
            return web.Response(status=403, text="Lifecycle API is not enabled "
                                "(start with --web.enable-lifecycle)\n")
        error = reload()
        if error is not None:
            return web.Response(status=500, text=f"failed to reload config: {error}\n")
        return web.Response(text="OK\n")

    app = web.Application()
    if web_config is not None:
        install(app, web_config)
    app.router.add_get(telemetry_path, metrics)
    if telemetry_path != "/":
        app.router.add_get("/", landing)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/probe", probe_target)
    app.router.add_post("/-/reload", lifecycle_reload)
    app.router.add_put("/-/reload", lifecycle_reload)
    return app
