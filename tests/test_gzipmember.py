"""Deflate blocks compressed apart make one gzip member that every decoder reads."""

from __future__ import annotations

import gzip
import random
import subprocess
import zlib

import pytest

from exporter.gzipmember import deflate_block, gzip_member


def parts(seed: int) -> list[bytes]:
    """Exposition-like text, an empty part, binary noise and a part over the 32 KiB window."""
    rng = random.Random(seed)
    text = [f'unpod_calls{{org="org{i}",space="s{rng.randint(0, 9)}"}} {rng.random()!r}\n'
            .encode() for i in range(rng.randint(1, 400))]
    return [b"".join(text), b"", rng.randbytes(rng.randint(1, 5000)),
            b"x" * 70_000 + rng.randbytes(100), b"# EOF\n"]


@pytest.mark.parametrize("seed", range(5))
def test_blocks_round_trip_through_gzip_and_zlib(seed: int) -> None:
    raw = parts(seed)
    member = gzip_member([deflate_block(p) for p in raw], raw)
    assert gzip.decompress(member) == b"".join(raw)
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)  # checks the CRC and length too
    assert decoder.decompress(member) == b"".join(raw) and decoder.eof
    assert decoder.unused_data == b""


def test_a_changed_part_is_compressed_alone() -> None:
    raw = parts(1)
    blocks = [deflate_block(p) for p in raw]
    raw[0] = raw[0].replace(b"org1", b"org-one")
    blocks[0] = deflate_block(raw[0])
    assert gzip.decompress(gzip_member(blocks, raw)) == b"".join(raw)


def test_the_crc_covers_the_parts_however_they_are_cut() -> None:
    raw = parts(2)
    whole = b"".join(raw)
    cut = [whole[:7], whole[7:]]
    assert gzip_member([deflate_block(p) for p in raw], cut) == gzip_member(
        [deflate_block(p) for p in raw], raw)


def test_a_wrong_crc_is_caught() -> None:
    raw = parts(3)
    member = gzip_member([deflate_block(p) for p in raw], [b"other", *raw[1:]])
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(member)


def test_gzip_the_program_reads_it() -> None:
    raw = parts(4)
    member = gzip_member([deflate_block(p) for p in raw], raw)
    out = subprocess.run(["gzip", "-dc"], input=member, capture_output=True, check=True)
    assert out.stdout == b"".join(raw)
