"""The retry policy of one poll, as a pure function: whether to try again, and after how long.

Only transient failures are retried (a timeout, a connection error, a 5xx), at most
``MAX_ATTEMPTS`` requests in all, with full jitter over ``RETRY_BASE * 2**attempt`` (capped),
and only when the retry can still be answered before the poll's deadline: a retry that would
end after the next poll is due helps nobody and spends the budget twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from exporter.reasons import TRANSIENT, Reason

MAX_ATTEMPTS = 3
RETRY_BASE = 0.5  # seconds; full jitter over base * 2**attempt
RETRY_CAP = 10.0


def retry_delay(attempt: int, reason: Reason, *, now: float, deadline: float,
                request_timeout: float,
                jitter: Callable[[float, float], float] = random.uniform) -> float | None:
    """Seconds to wait before the next request after ``attempt`` failed ones (1 after the
    first) ended with ``reason``; None to give up."""
    if reason not in TRANSIENT or attempt >= MAX_ATTEMPTS:
        return None
    wait = jitter(0, min(RETRY_CAP, RETRY_BASE * 2**attempt))
    if now + wait + request_timeout > deadline:
        return None
    return wait
