"""The webhook endpoint: authenticate, bound, parse, de-duplicate, count, notify.

Answers as the platform's sender needs them (unpod-api.md, "Webhooks"): 200 with a JSON body
for every accepted or duplicate delivery (its task handler calls ``.json()`` on the answer
outside its error handling and re-sends on anything but 200), 401, 413, 400 and 429 with a
JSON body too. The cheap refusals come first: a forged post costs one header comparison
(and reading its body if under 64 KiB, so that the sender reads the answer), an oversized one
is refused by its ``Content-Length`` or after 1 MiB at most; a refused body that is not read
closes its connection right after the answer.
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
# Refusals (forged, oversized, malformed) the receiver answers a second. Each new connection
# takes one on accept and a delivery taken (accepted, duplicate, rate limited) gives it back;
# past them, the listener refuses new connections before any HTTP until the rate falls, so a
# flood costs an accept and an abort each, not a request's parsing, and scrapes keep the event
# loop. Unpod's own deliveries during such a flood may be refused too (the analytics polling
# still brings the figures).
REFUSALS = RateLimit(interval=1 / 100, burst=200)

# A refused body this small is read and dropped, so that the sender reads the answer (closing
# a socket with unread data resets it); a larger one is never read: the connection is closed
# right after the answer. aiohttp would otherwise "linger", reading up to 10 s of it: a flood
# of oversized posts then held every connection the listener allows.
DRAIN_LIMIT = 64 * 1024
DRAIN_TIMEOUT = 2.0

OnEvent = Callable[[Place], None]


def _answer(status: int, body: str = "{}",
            headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=body, content_type="application/json",
                        headers=headers)


async def _drained(request: web.Request) -> bool:
    """Whether the body is read to its end now (a small unread one is read and dropped)."""
    if request.content.is_eof():
        return True
    length = request.content_length
    if length is None or length > DRAIN_LIMIT:
        return False
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT):
            while await request.content.readany():
                pass
    except (TimeoutError, ConnectionError, web.RequestPayloadError):
        return False  # a body that does not decode is not read further either
    return request.content.is_eof()


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
        self._refusals = RateLimiter(REFUSALS)

    def admits(self) -> bool:
        """For the listener: whether a new connection is taken (refusals within their rate)."""
        return self._refusals.allow()

    async def _refuse(self, request: web.Request, result: str, status: int, message: str,
                      **headers: str) -> web.StreamResponse:
        self.metrics.count_request(result)
        if result == "rate_limited":  # the sender holds the secret: not a flood to shed
            self._refusals.refund()
        log.debug("webhook request refused", extra={"fields": {"result": result}})
        response = _answer(status, json.dumps({"error": message}), headers or None)
        response.force_close()  # no keep-alive: a flood reconnects, and meets admits()
        if await _drained(request):
            return response
        await response.prepare(request)
        await response.write_eof()
        if request.protocol is not None:
            request.protocol.force_close()  # after the answer; the rest is never read
        return response

    async def _body(self, request: web.Request) -> bytes | None:
        """The body, or None when it is over MAX_BODY (counted as it arrives). Raises
        ``web.RequestPayloadError`` when it does not decode (Content-Encoding, chunking)."""
        length = request.content_length
        if length is not None and length > MAX_BODY:
            return None
        async with asyncio.timeout(BODY_TIMEOUT):
            try:
                return await request.read()  # the app's client_max_size is MAX_BODY + 1
            except web.HTTPRequestEntityTooLarge:
                return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._secret.matches(request.headers.get(self._header)):
            return await self._refuse(request, "unauthorized", 401, "unauthorized")
        if not self._limiter().allow():
            return await self._refuse(request, "rate_limited", 429, "rate limited",
                                      **{"Retry-After": "1"})
        try:
            body = await self._body(request)
        except TimeoutError:
            return await self._refuse(request, "invalid", 400, "body too slow")
        except web.RequestPayloadError:
            return await self._refuse(request, "invalid", 400, "body does not decode")
        if body is None:
            return await self._refuse(request, "too_large", 413, "body over 1 MiB")
        try:
            event = parse_event(body)
        except NotAnEvent as exc:
            return await self._refuse(request, "invalid", 400, str(exc))
        finally:
            del body  # personal data: not a moment longer than parsing needs
        self._refusals.refund()
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
