"""Which targets this replica polls: jump consistent hash of (org, space) over the shards."""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass

_MASK = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """Lamping & Veach's jump consistent hash: few keys move when ``buckets`` changes."""
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * 2862933555777941757 + 1) & _MASK
        candidate = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def shard_of(org: str, space: str, count: int) -> int:
    digest = hashlib.sha256(f"{org}\0{space}".encode()).digest()
    return jump_hash(int.from_bytes(digest[:8], "big"), count)


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def owns(self, org: str, space: str) -> bool:
        return self.count == 1 or shard_of(org, space, self.count) == self.index


class ShardError(ValueError):
    pass


def parse_shard(count: int, index: str, hostname: str | None = None) -> Shard:
    """``--shard.count`` and ``--shard.index`` (a number, or ``auto``: the hostname's ordinal,
    as a StatefulSet pod ``unpod-exporter-2`` has it)."""
    if count < 1:
        raise ShardError(f"--shard.count: must be at least 1, got {count}")
    if index == "auto":
        name = hostname if hostname is not None else socket.gethostname()
        match = re.search(r"(\d+)$", name)
        if match is None:
            raise ShardError(f"--shard.index auto: hostname {name!r} does not end in a number")
        number = int(match.group(1))
    elif index.isdigit():
        number = int(index)
    else:
        raise ShardError(f"--shard.index: expected a number or auto, got {index!r}")
    if number >= count:
        raise ShardError(f"--shard.index: {number} is not below --shard.count {count}")
    return Shard(number, count)
