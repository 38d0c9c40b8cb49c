"""Label caps across the receiver: the first N distinct values keep their own label, the
rest are ``other``. Payload values are anyone's who holds the secret; a cap keeps a buggy or
hostile sender from creating series without end."""

from __future__ import annotations

from collections.abc import Callable, Collection

from exporter.webhook.events import OTHER

MAX_AGENTS = 100
MAX_VALUES = 32  # outcomes, task statuses, call event names: as analytics statuses


class LabelCap:
    """``label(value)``: the value while fewer than ``limit`` distinct ones were seen (or
    it is one of ``keep``, which never count), else ``other``. ``forbidden`` returns the
    case-folded values that must never be exported (the configured tokens and secret)."""

    def __init__(self, limit: int, keep: Collection[str] = (),
                 forbidden: Callable[[], Collection[str]] = frozenset) -> None:
        self._limit = limit
        self._keep = frozenset(keep)
        self._forbidden = forbidden
        self._seen: set[str] = set()

    def label(self, value: str) -> str:
        if value in self._keep:
            return value
        if value and value.casefold() in self._forbidden():
            return OTHER
        if value in self._seen or value in ("", OTHER):
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value
