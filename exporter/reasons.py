"""Why a request failed: the ``reason`` label of ``unpod_poll_errors_total`` and friends.

A ``StrEnum``: a reason is its label value, compares equal to it, and a typo is an
AttributeError at import instead of a ValueError at the first failing poll. The order is the
order of the pre-initialised series.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    INVALID_RESPONSE = "invalid_response"
    NO_DATA = "no_data"  # data: null: the platform's analytics store failed (unpod-api.md)


REASONS: tuple[Reason, ...] = tuple(Reason)
# worth another request within the same poll: the next answer may well be different
TRANSIENT = frozenset({Reason.TIMEOUT, Reason.CONNECTION_ERROR, Reason.SERVER_ERROR})
# the org's credential is refused: back off all its targets
AUTH_FAILURES = frozenset({Reason.UNAUTHORIZED, Reason.FORBIDDEN})
