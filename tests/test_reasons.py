"""ErrorCounts: failures by reason, every reason present, frozen, in the exposition's order."""

from __future__ import annotations

import dataclasses

import pytest

from exporter.reasons import REASONS, ErrorCounts, Reason


def test_counts_are_read_by_reason_and_adding_leaves_the_original_alone():
    none = ErrorCounts()
    assert dict(none) == dict.fromkeys(Reason, 0) and len(none) == len(REASONS)
    counts = none.added(Reason.TIMEOUT).added("timeout").added(Reason.NO_DATA)
    assert counts[Reason.TIMEOUT] == 2 and counts[Reason.NO_DATA] == 1
    assert counts[Reason.SERVER_ERROR] == 0 and none[Reason.TIMEOUT] == 0
    assert list(counts.pairs()) == list(counts.items())  # Reason's order, the exposition's
    assert [reason for reason, _ in counts.pairs()] == list(REASONS)
    assert counts == ErrorCounts().added(Reason.NO_DATA).added(Reason.TIMEOUT) \
        .added(Reason.TIMEOUT)


def test_an_unknown_reason_is_refused_and_the_counts_are_frozen():
    with pytest.raises(KeyError):
        ErrorCounts().added("timed_out")
    assert ErrorCounts().get("timed_out") is None  # type: ignore[call-overload]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ErrorCounts().counts = (1,) * len(REASONS)  # type: ignore[misc]
