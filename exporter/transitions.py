"""The log lines of a target's state changes: down (once per reason), recovered, and names
ignored in an answer (once per target). A poll that fails as the previous one did is a debug
line, not a warning: a target down for a day writes one warning, not thousands."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from exporter.store import Transition
from exporter.targets import Target, TargetKey

log = logging.getLogger("unpod_exporter.poller")


class TransitionLog:
    def __init__(self) -> None:
        self._warned_names: set[TargetKey] = set()

    def keep_only(self, keys: Iterable[TargetKey]) -> None:
        """Forget removed targets (a target added again warns again)."""
        self._warned_names &= set(keys)

    def record(self, target: Target, transition: Transition) -> None:
        before, after = transition.before, transition.after
        fields: dict[str, object] = {"org": target.org, "space": target.space}
        if not after.up and after.last_error is not None:
            if before.up or not before.attempted or (
                before.last_error is not None and before.last_error.reason
                != after.last_error.reason
            ):
                fields.update(reason=after.last_error.reason, error=after.last_error.message)
                log.warning("target down", extra={"fields": fields})
            else:
                log.debug("poll failed", extra={"fields": {
                    **fields, "reason": after.last_error.reason}})
            return
        if before.attempted and not before.up:
            log.info("target recovered", extra={"fields": fields})
        analytics = after.analytics
        if analytics is not None and analytics.ignored_keys and (
            target.key not in self._warned_names
        ):
            self._warned_names.add(target.key)
            log.warning("task statuses or call outcomes ignored (bad name or more than 32)",
                        extra={"fields": {**fields,
                                          "names": ",".join(analytics.ignored_keys[:10])}})
