"""Why a request failed: the ``reason`` label of ``unpod_poll_errors_total`` and friends.

A ``StrEnum``: a reason is its label value, compares equal to it, and a typo is an
AttributeError at import instead of a ValueError at the first failing poll. The order is the
order of the pre-initialised series.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
_INDEX: dict[str, int] = {reason: i for i, reason in enumerate(REASONS)}
# worth another request within the same poll: the next answer may well be different
TRANSIENT = frozenset({Reason.TIMEOUT, Reason.CONNECTION_ERROR, Reason.SERVER_ERROR})
# the org's credential is refused: back off all its targets
AUTH_FAILURES = frozenset({Reason.UNAUTHORIZED, Reason.FORBIDDEN})


@dataclass(frozen=True, slots=True)
class ErrorCounts(Mapping[Reason, int]):
    """Failures by reason, read by ``Reason`` (``counts[Reason.TIMEOUT]``). Every reason is
    present (its series is pre-initialised) and iteration follows ``Reason``'s order, which
    is the exposition's. Frozen, so that the state holding it stays a snapshot; the counts are
    a tuple underneath because a poll's record copies them (a dict copy costs more)."""

    counts: tuple[int, ...] = (0,) * len(REASONS)

    def __getitem__(self, reason: Reason) -> int:
        return self.counts[_INDEX[reason]]

    def __iter__(self) -> Iterator[Reason]:
        return iter(REASONS)

    def __len__(self) -> int:
        return len(REASONS)

    def pairs(self) -> Iterator[tuple[Reason, int]]:
        """``(reason, count)`` in order, as ``items()`` without a lookup per reason (the
        collector renders them for every target)."""
        return zip(REASONS, self.counts, strict=True)

    def added(self, reason: str) -> ErrorCounts:
        """These counts with one more failure of ``reason`` (a ``Reason`` or its label)."""
        counts = list(self.counts)
        counts[_INDEX[reason]] += 1
        return ErrorCounts(tuple(counts))
