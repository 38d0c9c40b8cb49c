"""Shard assignment: stable, complete, and consistent when the shard count changes."""

from __future__ import annotations

import pytest

from exporter.config import parse_config_text
from exporter.sharding import Shard, ShardError, jump_hash, parse_shard, shard_of
from exporter.targets import build_targets

KEYS = [(f"org{i // 10}", f"space{i % 10}" if i % 10 else "") for i in range(2000)]


@pytest.mark.parametrize("key, buckets", [
    # Generated from the reference C++ code of Lamping & Veach (as published with go-jump)
    (1, [0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 17, 17]),
    (0xDEADBEEF, [0, 1, 2, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 16, 16, 16]),
    (0x0DDC0FFEEBADF00D, [0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 15, 15, 15, 15]),
])
def test_jump_hash_reference_values(key, buckets):
    assert [jump_hash(key, n) for n in range(1, len(buckets) + 1)] == buckets


def test_every_target_in_exactly_one_shard_and_stable():
    for count in (1, 2, 3, 5):
        owners = [[i for i in range(count) if Shard(i, count).owns(org, space)]
                  for org, space in KEYS]
        assert all(len(o) == 1 for o in owners)
        sizes = [sum(1 for o in owners if o == [i]) for i in range(count)]
        assert min(sizes) > 0.7 * len(KEYS) / count  # roughly even
    assert [shard_of(o, s, 4) for o, s in KEYS] == [shard_of(o, s, 4) for o, s in KEYS]


@pytest.mark.parametrize("count", [1, 2, 4, 9])
def test_few_targets_move_when_a_shard_is_added(count):
    moved = sum(1 for org, space in KEYS if shard_of(org, space, count)
                != shard_of(org, space, count + 1))
    # consistent hashing moves about 1/(n+1) of the keys, and only to the new shard
    assert moved <= 1.3 * len(KEYS) / (count + 1)
    assert all(shard_of(o, s, count + 1) == count for o, s in KEYS
               if shard_of(o, s, count) != shard_of(o, s, count + 1))


def test_org_wide_key_uses_empty_space():
    import hashlib
    digest = hashlib.sha256(b"acme\0").digest()
    assert shard_of("acme", "", 3) == jump_hash(int.from_bytes(digest[:8], "big"), 3)


def test_parse_shard():
    assert parse_shard(3, "2") == Shard(2, 3)
    assert parse_shard(3, "auto", hostname="unpod-exporter-1") == Shard(1, 3)
    for count, index, host in [(3, "3", None), (0, "0", None), (3, "x", None),
                               (3, "auto", "exporter"), (2, "auto", "pod-7")]:
        with pytest.raises(ShardError):
            parse_shard(count, index, hostname=host)


def test_build_targets_keeps_this_shards_targets():
    config = parse_config_text("api: {token: t}\norgs:\n" + "".join(
        f"  - {{handle: org{i}, spaces: [{{name: s, space_token: t{i}}}]}}\n" for i in range(30)))
    everything = {t.key for t in build_targets(config)}
    parts = [{t.key for t in build_targets(config, shard=Shard(i, 3))} for i in range(3)]
    assert set().union(*parts) == everything and sum(map(len, parts)) == len(everything)
