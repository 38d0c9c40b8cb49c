"""The ledger of one organization: is an org-wide change explained by its active spaces?

When the budget cannot pay for polling every space at every change (accounting), the quiet
spaces wait for the active ones' answers: the ledger adds each org-wide change of the counts
and subtracts each space's. When the active spaces bring it to zero or below (calls they made
after the org-wide answer belong to the next change, which the ledger carries), the quiet
ones are explained and confirmed instead of polled; when it cannot be explained, they are
polled after all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from exporter.analytics import Analytics
from exporter.targets import TargetKey

Counts = dict[str, int]


def counts(analytics: Analytics) -> Counts:
    """The figures that add up from spaces to their org (averages and ratios do not)."""
    result: Counts = {}
    for name in ("total_calls", "completed_calls", "failed_calls", "total_tasks"):
        if (value := getattr(analytics, name)) is not None:
            result[name] = value
    result.update((f"status:{name}", value) for name, value in zip(
        analytics.status_names, analytics.status_counts, strict=True))
    result.update((f"outcome:{name}", value) for name, value in zip(
        analytics.outcome_names, analytics.outcome_counts, strict=True))
    return result


def plus(one: Counts, other: Counts) -> Counts:
    return {k: one.get(k, 0) + other.get(k, 0) for k in one.keys() | other.keys()
            if one.get(k, 0) + other.get(k, 0)}


def minus(after: Counts, before: Counts) -> Counts:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after.keys() | before.keys()
            if after.get(k, 0) != before.get(k, 0)}


@dataclass(frozen=True)
class Settled:
    """What a space's answer settled: quiet spaces to poll now, or explained ones."""

    poll: tuple[TargetKey, ...] = ()
    explained: tuple[TargetKey, ...] = ()


@dataclass(slots=True)
class Ledger:
    unexplained: Counts | None = None  # org-wide changes less the spaces' since (None: unknown)
    held: list[TargetKey] = field(default_factory=list)  # quiet spaces waiting for it

    def org_changed(self, delta: Counts, due: list[TargetKey], *, accounting: bool,
                    active: Callable[[TargetKey], bool]) -> list[TargetKey]:
        """An org-wide answer changed by ``delta``; of the ``due`` spaces (most urgent first),
        those to poll now. Without accounting, or when counts went down, all of them."""
        self.held = []
        if not accounting or any(v < 0 for v in delta.values()):
            self.unexplained = None  # no accounting, or counts went down: start again
            return due
        # the ledger runs on: what active spaces answered after the previous org-wide
        # answer (a call made meanwhile) is already subtracted, and is in this change
        self.unexplained = (plus(self.unexplained, delta) if self.unexplained is not None
                            else delta)
        busy = [k for k in due if active(k)]
        if delta and busy and len(busy) < len(due):
            self.held = [k for k in due if not active(k)]
            return busy
        return due

    def space_answered(self, key: TargetKey, change: Counts | None,
                       still_pending: Iterable[TargetKey]) -> Settled:
        """A space answered with ``change`` in its counts (None: an answer that cannot be
        reconciled, which breaks the ledger); ``still_pending``: active spaces not yet
        answered since the change."""
        if self.unexplained is None:
            return Settled()
        self.unexplained = (minus(self.unexplained, change) if change is not None else None)
        if not self.held or key in self.held:
            return Settled()
        if self.unexplained is not None:
            if all(value <= 0 for value in self.unexplained.values()):
                # the active spaces explain the whole change; more than all of it when they
                # made calls after the org-wide answer, and those are in the next change
                explained, self.held = tuple(self.held), []
                return Settled(explained=explained)
            if all(value > 0 for value in self.unexplained.values()) and any(
                    k not in self.held for k in still_pending):
                return Settled()  # more of the change may be in active spaces still to answer
        held, self.held = tuple(self.held), []
        return Settled(poll=held)  # cannot be explained: poll the quiet ones too
