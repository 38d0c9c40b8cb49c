"""The Unpod API client: one request in, one classified outcome out.

Nothing raised by the network, the server or the body escapes ``fetch_analytics``: every
failure becomes an ``ApiError`` with one of the reasons of SPEC.md, and its message never
carries a token (the API token or a space token).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import re
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar
from urllib.parse import urlsplit

import aiohttp

from exporter import __version__
from exporter.analytics import Analytics, NoAnalytics, parse_analytics
from exporter.reasons import REASONS, Reason

__all__ = ["REASONS", "ApiError", "ApiResponse", "Reason", "UnpodClient"]

log = logging.getLogger("unpod_exporter.client")

USER_AGENT = f"unpod-exporter/{__version__}"
ANALYTICS_PATH = "/organisation/analytics/"  # sic: British spelling, unlike organizations/
MAX_BODY_BYTES = 1024 * 1024
_MESSAGE_LIMIT = 200
_STATUS_REASONS = {400: Reason.BAD_REQUEST, 401: Reason.UNAUTHORIZED, 403: Reason.FORBIDDEN,
                   404: Reason.NOT_FOUND, 429: Reason.RATE_LIMITED}
# Unpod answers some application errors as HTTP 206 (or body status_code 206): the message
# tells which (unpod-api.md). Compared case-folded, without a trailing full stop.
_206_MESSAGES = {"invalid space token": Reason.NOT_FOUND,
                 "invalid organization handle": Reason.NOT_FOUND,
                 "you don't have access to this space": Reason.FORBIDDEN}
_HEADER_NUMBER_RE = re.compile(r"[0-9]{1,15}")  # ASCII digits, small enough for a float


def reason_for_status(status: int) -> Reason:
    """The error reason of a non-success HTTP (or body) status code."""
    if status in _STATUS_REASONS:
        return _STATUS_REASONS[status]
    if 500 <= status <= 599:
        return Reason.SERVER_ERROR
    if 400 <= status <= 499:
        return Reason.BAD_REQUEST
    return Reason.INVALID_RESPONSE


def _body_reason(code: int) -> Reason:
    """Body ``status_code`` values count only when they are a known error code."""
    if code in _STATUS_REASONS or 500 <= code <= 599:
        return reason_for_status(code)
    return Reason.INVALID_RESPONSE


def _206_reason(message: str) -> Reason:
    normal = " ".join(message.split()).casefold().rstrip(".").replace("\u2019", "'")
    return _206_MESSAGES.get(normal, Reason.INVALID_RESPONSE)


@dataclass(frozen=True)
class ApiError:
    reason: Reason
    message: str
    http_status: int | None = None
    # True when the error concerns this target alone (a 206 "no access to this space"), not
    # the org's credential: no auth back-off for the org's other targets.
    target_only: bool = False
    # a 404 that is not the platform's JSON: the route does not exist at api.base_url
    route_missing: bool = False


T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class ApiResponse(Generic[T_co]):
    outcome: T_co | ApiError
    ratelimit_remaining: int | None = None
    retry_after: float | None = None  # seconds, from a 429's Retry-After
    ratelimit_limit: int | None = None
    ratelimit_reset: float | None = None  # seconds until the API's window resets
    http_status: int | None = None
    auth_challenge: str | None = None  # WWW-Authenticate of a 401: the scheme the API wants


class _BodyTooLarge(Exception):
    pass


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:  # case-insensitive: an API may echo a token upper-cased
            text = re.sub(re.escape(secret), "<redacted>", text, flags=re.IGNORECASE)
    return text


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None, with a
    debug line, for anything else: an upstream header never raises."""
    if not value:
        return None
    value = value.strip()
    if _HEADER_NUMBER_RE.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError):
        _ignored("Retry-After", value)
        return None
    if when.tzinfo is None:
        _ignored("Retry-After", value)
        return None
    return max(0.0, seconds)


def _ignored(name: str, value: str) -> None:
    log.debug("ignoring a malformed header", extra={"fields": {
        "header": name, "value": _clip(value)[:40]}})


def _int_header(value: str | None, name: str = "header") -> int | None:
    """A header's plain non-negative integer (at most 15 ASCII digits), else None."""
    if value is None:
        return None
    if not _HEADER_NUMBER_RE.fullmatch(value.strip()):
        _ignored(name, value)
        return None
    return int(value.strip())


def parse_reset(value: str | None, now: float | None = None) -> float | None:
    """X-RateLimit-Reset as seconds from now: a delta, or a Unix time when it is that large."""
    number = _int_header(value, "X-RateLimit-Reset")
    if number is None:
        return None
    if number > 1_000_000_000:
        return max(0.0, number - (time.time() if now is None else now))
    return float(number)


def _api_message(body: object) -> str:
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return ""


def decode_body(raw: bytes) -> object:
    """JSON-decode a body; raises ValueError for anything that is not JSON."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not JSON ({type(exc).__name__})") from None


def interpret(http_status: int, raw: bytes,
              parse: Callable[[object], T] = parse_analytics,  # type: ignore[assignment]
              whole_body: bool = False) -> T | ApiError:
    """Classify a complete response (status and body bytes) as SPEC.md says; ``parse`` turns
    the envelope's ``data`` (with ``whole_body``, the envelope itself: a page's ``count``) into
    the result or raises ValueError. HTTP 206 (or a body ``status_code`` 206) is classified by
    its message."""
    if 300 <= http_status <= 399:
        return ApiError(Reason.INVALID_RESPONSE, f"HTTP {http_status} redirect not followed",
                        http_status)
    body: object
    try:
        body = decode_body(raw)
    except ValueError as exc:
        body = None
        not_json = str(exc)
    else:
        not_json = ""
    api_message = _api_message(body)
    if http_status == 404 and not_json:
        # the platform answers an unknown organization in JSON; a page that is not JSON is
        # the web server's own: this route does not exist at the configured base URL
        return ApiError(Reason.NOT_FOUND, "HTTP 404 that is not the platform's JSON: no such "
                        "route at api.base_url", http_status, route_missing=True)
    if not 200 <= http_status <= 299:
        detail = f": {api_message}" if api_message else ""
        return ApiError(reason_for_status(http_status), f"HTTP {http_status}{detail}", http_status)
    if not_json:
        return ApiError(Reason.INVALID_RESPONSE, f"HTTP {http_status}: {not_json}", http_status)
    if not isinstance(body, dict):
        return ApiError(Reason.INVALID_RESPONSE,
                        f"HTTP {http_status}: body is {type(body).__name__}, expected object",
                        http_status)
    code = body.get("status_code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        return ApiError(Reason.INVALID_RESPONSE,
                        f"HTTP {http_status}: status_code is not a number", http_status)
    if 206 in (http_status, code):
        reason = _206_reason(api_message)
        detail = f": {api_message}" if api_message else ""
        return ApiError(reason, f"HTTP {http_status}, status_code {code}{detail}", http_status,
                        target_only=reason == Reason.FORBIDDEN)
    if code is None and http_status != 200:
        return ApiError(Reason.INVALID_RESPONSE, f"HTTP {http_status} without a status_code",
                        http_status)
    if code is not None and (code != 200 or http_status != 200):
        detail = f": {api_message}" if api_message else ""
        return ApiError(_body_reason(code), f"HTTP {http_status}, status_code {code}{detail}",
                        http_status)
    if "data" not in body:
        return ApiError(Reason.INVALID_RESPONSE, f"HTTP {http_status}: body has no data",
                        http_status)
    try:
        return parse(body if whole_body else body["data"])
    except NoAnalytics:
        detail = f": {api_message}" if api_message else ""
        return ApiError(Reason.NO_DATA, f"HTTP {http_status}, data is null{detail}", http_status)
    except (ValueError, ArithmeticError) as exc:  # OverflowError is not a ValueError
        return ApiError(Reason.INVALID_RESPONSE, f"HTTP {http_status}: {exc}", http_status)


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    length = response.content_length
    if length is not None and length > limit:
        raise _BodyTooLarge(f"Content-Length {length}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class UnpodClient:
    """Requests against one API base URL over a shared session."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout: float,
                 max_body_bytes: int = MAX_BODY_BYTES, *, proxy: str | None = None,
                 ssl_context: ssl.SSLContext | bool = True, auth_scheme: str = "Token") -> None:
        self._session = session
        self._auth_scheme = auth_scheme
        self._proxy = proxy
        self._ssl = ssl_context
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_body = max_body_bytes

    @property
    def timeout(self) -> float:
        return self._timeout.total or 0.0

    async def fetch_analytics(self, org: str, token: str,
                              space_token: str | None) -> ApiResponse[Analytics]:
        params = {"space_token": space_token} if space_token else None
        return await self.get(ANALYTICS_PATH, token, org, params, parse_analytics,
                              (token, space_token or ""))

    async def get(self, path: str, token: str, org: str | None, params: dict[str, str] | None,
                  parse: Callable[[object], T], secrets: tuple[str, ...], *,
                  whole_body: bool = False) -> ApiResponse[T]:
        """One GET of an enveloped endpoint; never raises, never leaks ``secrets``."""
        headers = {"Authorization": f"{self._auth_scheme} {token}", "User-Agent": USER_AGENT,
                   "Accept": "application/json"}
        if org is not None:
            headers["Org-Handle"] = org
        outcome: T | ApiError
        remaining: int | None = None
        retry_after: float | None = None
        limit: int | None = None
        reset: float | None = None
        status: int | None = None
        challenge: str | None = None
        try:
            async with self._session.get(self._base + path, headers=headers, params=params,
                                         timeout=self._timeout, allow_redirects=False,
                                         proxy=self._proxy, ssl=self._ssl) as resp:
                status = resp.status
                remaining = _int_header(resp.headers.get("X-RateLimit-Remaining"),
                                        "X-RateLimit-Remaining")
                limit = _int_header(resp.headers.get("X-RateLimit-Limit"), "X-RateLimit-Limit")
                reset = parse_reset(resp.headers.get("X-RateLimit-Reset"))
                if resp.status == 429:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if resp.status == 401 and "WWW-Authenticate" in resp.headers:
                    challenge = _clip(resp.headers["WWW-Authenticate"])[:80]
                raw = await _read_limited(resp, self._max_body)
                outcome = interpret(resp.status, raw, parse, whole_body)
        except _BodyTooLarge as exc:
            outcome = ApiError(Reason.INVALID_RESPONSE, f"response body too large ({exc})")
        except TimeoutError:
            outcome = ApiError(Reason.TIMEOUT,
                               f"no complete answer within {self._timeout.total:g}s")
        except aiohttp.ClientError as exc:
            outcome = ApiError(Reason.CONNECTION_ERROR, _describe_client_error(exc))
        except OSError as exc:
            outcome = ApiError(Reason.CONNECTION_ERROR, exc.strerror or type(exc).__name__)
        if isinstance(outcome, ApiError):
            outcome = replace(outcome, message=_clip(_redact(outcome.message, secrets)))
        return ApiResponse(outcome, remaining, retry_after, limit, reset, status, challenge)


def environment_proxy(url: str) -> str | None:
    """The proxy that HTTPS_PROXY / HTTP_PROXY / NO_PROXY give for ``url``, if any."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


def _describe_client_error(exc: aiohttp.ClientError) -> str:
    # str(exc) can carry the request URL and with it the space token: build our own text.
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body cut short"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"connection failed: {exc.strerror or type(exc).__name__}"
    return f"request failed ({type(exc).__name__})"


async def close_quietly(session: aiohttp.ClientSession) -> None:
    await session.close()
    # Let SSL transports finish closing so that no "unclosed transport" warning appears.
    await asyncio.sleep(0)
