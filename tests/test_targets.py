"""What every target keeps once: its key object (shared by every table keyed by it), the
status names of its snapshots (shared between snapshots)."""

from __future__ import annotations

import json
from dataclasses import replace

from exporter.analytics import parse_analytics
from exporter.config import TokenSource
from exporter.targets import Target, TargetKey
from tests.fakeapi import analytics

TOKEN = TokenSource("token", "tok", "api.token")


def test_key_is_built_once_and_shared() -> None:
    target = Target("acme", "sales", "sp_sales", TOKEN, 60)
    assert target.key == TargetKey("acme", "sales")
    assert target.key is target.key  # not a new tuple per lookup


def test_key_follows_replace_and_stays_out_of_equality() -> None:
    target = Target("acme", "sales", "sp_sales", TOKEN, 60)
    moved = replace(target, space="survey")
    assert moved.key == TargetKey("acme", "survey")
    assert replace(target, interval=30).key == target.key
    assert Target("acme", "sales", "sp_sales", TOKEN, 60) == target
    assert hash(Target("acme", "sales", "sp_sales", TOKEN, 60)) == hash(target)
    assert repr(target).endswith("interval=60)")  # the key says nothing new


def test_status_names_are_shared_between_snapshots() -> None:
    # json.loads makes new key strings per answer; the snapshots keep one copy of each name
    answers = [json.loads(json.dumps(analytics(breakdown={"queued_long": n}))) for n in (1, 2)]
    first, second = (dict(parse_analytics(answer).task_status) for answer in answers)
    assert first["queued_long"] == 1 and second["queued_long"] == 2
    name_1 = next(name for name in first if name == "queued_long")
    name_2 = next(name for name in second if name == "queued_long")
    assert name_1 is name_2
