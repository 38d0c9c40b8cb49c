"""Events drive polling: an accepted event of a mapped agent makes its space and the org's
org-wide target due now, so that the new analytics are on ``/metrics`` within seconds.

A campaign sends several events a call and one per finished task; each must not become a
request. Per space, polls triggered by events are at least ``cooldown`` apart: the first event
of a quiet space triggers at once, the ones that follow within the cooldown are folded into
one more trigger at its end (so the last event's change is seen too). What is due then goes
through the scheduler and the request gate like any poll: within the budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from exporter.config.webhook import Place

COOLDOWN = 5.0  # seconds between two event-driven polls of one space
ORG_WIDE = ""  # the space label of an org-wide target

Key = tuple[str, str]


def targets_of(place: Place) -> list[Key]:
    """The org-wide target first (its answer tells change-driven polling which spaces
    changed), then the space."""
    keys = [(place.org, ORG_WIDE)]
    if place.space:
        keys.append((place.org, place.space))
    return keys


class PollTrigger:
    def __init__(self, make_due: Callable[[Iterable[Key]], None],
                 cooldown: float = COOLDOWN,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._make_due = make_due
        self._cooldown = cooldown
        self._loop = loop
        self._last: dict[Place, float] = {}  # when each place last triggered
        self._waiting: dict[Place, asyncio.TimerHandle] = {}
        self.triggered = 0  # make_due calls, for tests and the benchmark

    def _now(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    def __call__(self, place: Place) -> None:
        if place in self._waiting:
            return  # already folded into the trigger at the end of the cooldown
        now = self._now()
        wait = self._last.get(place, -self._cooldown) + self._cooldown - now
        if wait <= 0:
            self._fire(place)
        else:
            assert self._loop is not None
            self._waiting[place] = self._loop.call_later(wait, self._fire, place)

    def _fire(self, place: Place) -> None:
        self._waiting.pop(place, None)
        self._last[place] = self._now()
        self.triggered += 1
        self._make_due(targets_of(place))

    def close(self) -> None:
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
