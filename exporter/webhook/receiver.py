"""The webhook endpoint: authenticate, bound, parse, de-duplicate, count, notify.

Answers as the platform's sender needs them (unpod-api.md, "Webhooks"): 200 with a JSON body
for every accepted or duplicate delivery (its task handler calls ``.json()`` on the answer
outside its error handling and re-sends on anything but 200), 401, 413, 400 and 429 with a
JSON body too. The cheap refusals come first and read no body: a forged post costs one
header comparison and its connection is closed, an oversized one is refused by its
``Content-Length`` or after 1 MiB at most.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from aiohttp import web

from exporter.config.webhook import Place
from exporter.webconfig.ratelimit import RateLimiter
from exporter.webconfig.schema import RateLimit
from exporter.webhook.dedup import Deduplicator
from exporter.webhook.events import NotAnEvent, parse_event
from exporter.webhook.metrics import WebhookMetrics
from exporter.webhook.secret import SecretCheck

log = logging.getLogger("unpod_exporter.webhook")

MAX_BODY = 1024 * 1024  # bytes after decompression; a task document with a long transcript
BODY_TIMEOUT = 10.0  # a body that takes longer to arrive is dropped with its connection
# Authenticated deliveries per second: the platform sends one per finished task and a few per
# call, one at a time per call; a burst absorbs a campaign's start. The webhook's web config
# may set another (``rate_limit``, as the exporter-toolkit writes it).
RATE = RateLimit(interval=1 / 50, burst=500)

OnEvent = Callable[[Place], None]


def _answer(status: int, body: str = "{}", close: bool = False,
            headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(status=status, text=body, content_type="application/json",
                            headers=headers)
    if close:
        response.force_close()  # the rest of the body is never read
    return response


class Receiver:
    def __init__(self, secret: SecretCheck, header: str, metrics: WebhookMetrics,
                 on_event: OnEvent | None = None, dedup: Deduplicator | None = None,
                 limiter: Callable[[], RateLimiter] | None = None) -> None:
        self._secret = secret
        self._header = header
        self.metrics = metrics
        self._on_event = on_event
        self._dedup = dedup or Deduplicator()
        own = RateLimiter(RATE)
        self._limiter = limiter or (lambda: own)

    def _refuse(self, result: str, status: int, message: str, close: bool = True,
                **headers: str) -> web.Response:
        self.metrics.count_request(result)
        log.debug("webhook request refused", extra={"fields": {"result": result}})
        return _answer(status, json.dumps({"error": message}), close, headers or None)

    async def _body(self, request: web.Request) -> bytes | None:
        """The body, or None when it is over MAX_BODY (counted as it arrives)."""
        length = request.content_length
        if length is not None and length > MAX_BODY:
            return None
        async with asyncio.timeout(BODY_TIMEOUT):
            try:
                return await request.read()  # the app's client_max_size is MAX_BODY + 1
            except web.HTTPRequestEntityTooLarge:
                return None

    async def handle(self, request: web.Request) -> web.Response:
        if not self._secret.matches(request.headers.get(self._header)):
            return self._refuse("unauthorized", 401, "unauthorized")
        if not self._limiter().allow():
            return self._refuse("rate_limited", 429, "rate limited", close=False,
                                **{"Retry-After": "1"})
        try:
            body = await self._body(request)
        except TimeoutError:
            return self._refuse("invalid", 400, "body too slow")
        if body is None:
            return self._refuse("too_large", 413, "body over 1 MiB")
        try:
            event = parse_event(body)
        except NotAnEvent as exc:
            return self._refuse("invalid", 400, str(exc), close=False)
        finally:
            del body  # personal data: not a moment longer than parsing needs
        if not self._dedup.first(event.dedup_key()):
            self.metrics.count_request("duplicate")
            return _answer(200)
        self.metrics.count_request("accepted")
        self.metrics.record(event)
        place = self.metrics.place(event.agent)
        if place is not None and self._on_event is not None:
            self._on_event(place)
        return _answer(200)

    def app(self, path: str) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY + 1)
        app.router.add_post(path, self.handle)
        return app
