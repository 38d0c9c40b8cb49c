"""The Unpod API client: one request in, one classified outcome out.

Nothing raised by the network, the server or the body escapes ``fetch_analytics``: every
failure becomes an ``ApiError`` with one of the reasons of SPEC.md, and its message never
carries a token (the API token or a space token).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import urlsplit

import aiohttp

from exporter import __version__
from exporter.analytics import Analytics, parse_analytics

REASONS = (
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "rate_limited",
    "server_error",
    "timeout",
    "connection_error",
    "invalid_response",
)
USER_AGENT = f"unpod-exporter/{__version__}"
ANALYTICS_PATH = "/organisation/analytics/"  # sic: British spelling, unlike organizations/
MAX_BODY_BYTES = 1024 * 1024
_MESSAGE_LIMIT = 200
_STATUS_REASONS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                   429: "rate_limited"}


def reason_for_status(status: int) -> str:
    """The error reason of a non-success HTTP (or body) status code."""
    if status in _STATUS_REASONS:
        return _STATUS_REASONS[status]
    if 500 <= status <= 599:
        return "server_error"
    if 400 <= status <= 499:
        return "bad_request"
    return "invalid_response"


def _body_reason(code: int) -> str:
    """Body ``status_code`` values count only when they are a known error code."""
    if code in _STATUS_REASONS or 500 <= code <= 599:
        return reason_for_status(code)
    return "invalid_response"


@dataclass(frozen=True)
class ApiError:
    reason: str
    message: str
    http_status: int | None = None


T = TypeVar("T")


@dataclass(frozen=True)
class ApiResponse(Generic[T]):
    outcome: T | ApiError
    ratelimit_remaining: int | None = None
    retry_after: float | None = None  # seconds, from a 429's Retry-After
    ratelimit_limit: int | None = None
    ratelimit_reset: float | None = None  # seconds until the API's window resets


class _BodyTooLarge(Exception):
    pass


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _int_header(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def parse_reset(value: str | None, now: float | None = None) -> float | None:
    """X-RateLimit-Reset as seconds from now: a delta, or a Unix time when it is that large."""
    number = _int_header(value)
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
              parse: Callable[[object], T] = parse_analytics) -> T | ApiError:  # type: ignore[assignment]
    """Classify a complete response (status and body bytes) as SPEC.md says; ``parse`` turns
    the envelope's ``data`` into the result or raises ValueError."""
    if 300 <= http_status <= 399:
        return ApiError("invalid_response", f"HTTP {http_status} redirect not followed",
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
    if not 200 <= http_status <= 299:
        detail = f": {api_message}" if api_message else ""
        return ApiError(reason_for_status(http_status), f"HTTP {http_status}{detail}", http_status)
    if not_json:
        return ApiError("invalid_response", f"HTTP {http_status}: {not_json}", http_status)
    if not isinstance(body, dict):
        return ApiError("invalid_response",
                        f"HTTP {http_status}: body is {type(body).__name__}, expected object",
                        http_status)
    code = body.get("status_code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        return ApiError("invalid_response", f"HTTP {http_status}: status_code is not a number",
                        http_status)
    if code is None and http_status != 200:
        return ApiError("invalid_response", f"HTTP {http_status} without a status_code",
                        http_status)
    if code is not None and (code != 200 or http_status != 200):
        detail = f": {api_message}" if api_message else ""
        return ApiError(_body_reason(code), f"HTTP {http_status}, status_code {code}{detail}",
                        http_status)
    try:
        return parse(body.get("data"))
    except ValueError as exc:
        return ApiError("invalid_response", f"HTTP {http_status}: {exc}", http_status)


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
                 ssl_context: ssl.SSLContext | bool = True) -> None:
        self._session = session
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
                  parse: Callable[[object], T], secrets: tuple[str, ...]) -> ApiResponse[T]:
        """One GET of an enveloped endpoint; never raises, never leaks ``secrets``."""
        headers = {"Authorization": f"Token {token}", "User-Agent": USER_AGENT,
                   "Accept": "application/json"}
        if org is not None:
            headers["Org-Handle"] = org
        outcome: T | ApiError
        remaining: int | None = None
        retry_after: float | None = None
        limit: int | None = None
        reset: float | None = None
        try:
            async with self._session.get(self._base + path, headers=headers, params=params,
                                         timeout=self._timeout, allow_redirects=False,
                                         proxy=self._proxy, ssl=self._ssl) as resp:
                remaining = _int_header(resp.headers.get("X-RateLimit-Remaining"))
                limit = _int_header(resp.headers.get("X-RateLimit-Limit"))
                reset = parse_reset(resp.headers.get("X-RateLimit-Reset"))
                if resp.status == 429:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                raw = await _read_limited(resp, self._max_body)
                outcome = interpret(resp.status, raw, parse)
        except _BodyTooLarge as exc:
            outcome = ApiError("invalid_response", f"response body too large ({exc})")
        except TimeoutError:
            outcome = ApiError("timeout", f"no complete answer within {self._timeout.total:g}s")
        except aiohttp.ClientError as exc:
            outcome = ApiError("connection_error", _describe_client_error(exc))
        except OSError as exc:
            outcome = ApiError("connection_error", exc.strerror or type(exc).__name__)
        if isinstance(outcome, ApiError):
            outcome = ApiError(outcome.reason, _clip(_redact(outcome.message, secrets)),
                               outcome.http_status)
        return ApiResponse(outcome, remaining, retry_after, limit, reset)


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
