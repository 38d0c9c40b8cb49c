"""Target identities: one key object per target, shared by every table keyed by it."""

from __future__ import annotations

from dataclasses import replace

from exporter.config import TokenSource
from exporter.targets import Target, TargetKey

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
