"""``/-/ready``: every target has had an attempt, or waits on a pause that explains why not.

A pause explains a target still pending when the API asked for it (a 429, or
``X-RateLimit-Remaining: 0``: its token's budget is paused) or its org's credential is in
back-off after a 401/403. Without this, a persistent 429 without a usable ``Retry-After`` kept
targets from ever getting a request, and ``/-/ready`` at 503 for good. The landing page shows
the same pause beside each target it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from exporter.budget import AuthBackoff
from exporter.gate import RequestGate
from exporter.store import TargetState
from exporter.targets import Target

Waiting = Callable[[Target], str | None]


def pause_of(target: Target, *, gate: RequestGate, backoff: AuthBackoff) -> str | None:
    """Why a target waits, when a pause the API asked for (or the auth back-off) holds it."""
    if (error := backoff.blocked(target.org, target.token)) is not None:
        return f"auth back-off after {error.reason}"
    budget = gate.budgets.get(target.token)
    if budget is not None and (left := budget.paused_until - gate.clock.now()) > 0:
        return f"rate limited: the API asked to pause ({left:.0f}s left)"
    return None


def all_explained(states: Iterable[TargetState], waiting: Waiting) -> bool:
    """Every target attempted, or held by an explained pause."""
    return all(state.attempted or waiting(state.target) is not None for state in states)
