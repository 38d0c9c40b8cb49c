"""Events drive polling: an accepted event of a mapped agent makes its space and the org's
org-wide target due now, so that the new analytics are on ``/metrics`` within seconds.

A campaign sends several events a call and one per finished task, and every space of an org
shares its org-wide target: each event must not become a request. So each target is made due
by events at most once per ``cooldown(target)``: the exporter passes COOLDOWN_SHARE of the
target's effective poll interval, so that a busy target is polled at most a few times an
interval (within seconds of a change, not at the next interval) and a quiet target's first
event is served at once. An event within the cooldown is folded into one more trigger at its
end, so that the last change is seen too. What is due goes through the scheduler and the
request gate like any poll: within the budget, org-wide targets first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from exporter.config.webhook import Place
from exporter.targets import ORG_WIDE, TargetKey

COOLDOWN_SHARE = 0.25  # of a target's interval: events poll a busy target at most 4x as often

def targets_of(place: Place) -> list[TargetKey]:
    """The org-wide target first (its answer tells change-driven polling which spaces
    changed), then the space."""
    keys = [TargetKey(place.org, ORG_WIDE)]
    if place.space:
        keys.append(TargetKey(place.org, place.space))
    return keys


class PollTrigger:
    def __init__(self, make_due: Callable[[Iterable[TargetKey]], None],
                 cooldown: Callable[[TargetKey], float],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._make_due = make_due
        self._cooldown = cooldown
        self._loop = loop
        self._last: dict[TargetKey, float] = {}  # when each target was last made due by events
        self._waiting: dict[TargetKey, asyncio.TimerHandle] = {}
        self.triggered = 0  # targets made due, for tests and the benchmark

    def _now(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    def __call__(self, place: Place) -> None:
        now = self._now()
        due = []
        for key in targets_of(place):
            if key in self._waiting:
                continue  # already folded into the trigger at the end of its cooldown
            last = self._last.get(key)
            wait = 0.0 if last is None else last + self._cooldown(key) - now
            if wait <= 0:
                due.append(key)
            else:
                assert self._loop is not None
                self._waiting[key] = self._loop.call_later(wait, self._fire, [key])
        if due:
            self._fire(due)

    def _fire(self, keys: list[TargetKey]) -> None:
        now = self._now()
        for key in keys:
            self._waiting.pop(key, None)
            self._last[key] = now
        self.triggered += len(keys)
        self._make_due(keys)

    def close(self) -> None:
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
