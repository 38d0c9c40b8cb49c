"""Deflate blocks compressed apart make one gzip member that every decoder reads, its CRC
combined from theirs as zlib's own crc32 of the whole text is."""

from __future__ import annotations

import gzip
import random
import subprocess
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter import gzipmember
from exporter.gzipmember import (
    crc32_combine,
    crc32_combine_python,
    deflate_block,
    gzip_member,
    inflate_block,
    inflated,
)


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
    member = gzip_member(deflate_block(p) for p in raw)
    assert gzip.decompress(member) == b"".join(raw)
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)  # checks the CRC and length too
    assert decoder.decompress(member) == b"".join(raw) and decoder.eof
    assert decoder.unused_data == b""


def test_the_trailer_is_the_one_gzip_writes_for_the_whole_text() -> None:
    raw = parts(6)
    member = gzip_member(deflate_block(p) for p in raw)
    assert member[-8:] == gzip.compress(b"".join(raw))[-8:]


def test_a_block_inflates_alone() -> None:
    for part in parts(7):
        assert inflate_block(deflate_block(part)) == part


def test_a_changed_part_is_compressed_alone() -> None:
    raw = parts(1)
    blocks = [deflate_block(p) for p in raw]
    raw[0] = raw[0].replace(b"org1", b"org-one")
    blocks[0] = deflate_block(raw[0])
    assert gzip.decompress(gzip_member(blocks)) == b"".join(raw)


def test_a_wrong_crc_is_caught() -> None:
    raw = parts(3)
    blocks = [deflate_block(p) for p in raw]
    blocks[0] = gzipmember.Block(blocks[0].deflated, blocks[0].crc ^ 1, blocks[0].length)
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(gzip_member(blocks))
    with pytest.raises(zlib.error):
        b"".join(inflated(gzip_member(blocks)))


def test_gzip_the_program_reads_it() -> None:
    raw = parts(4)
    member = gzip_member(deflate_block(p) for p in raw)
    out = subprocess.run(["gzip", "-dc"], input=member, capture_output=True, check=True)
    assert out.stdout == b"".join(raw)


@given(st.binary(max_size=3000), st.binary(max_size=3000), st.integers(0, 0xFFFFFFFF))
def test_combined_crc_is_zlibs_crc_of_the_concatenation(a: bytes, b: bytes, seed: int) -> None:
    whole = zlib.crc32(b, zlib.crc32(a, seed))
    first = zlib.crc32(a, seed)
    assert crc32_combine_python(first, zlib.crc32(b), len(b)) == whole
    assert crc32_combine(first, zlib.crc32(b), len(b)) == whole


def test_lengths_past_4_gib_agree() -> None:
    for length in (1 << 32, (1 << 32) + 12345, (7 << 40) + 1):
        assert crc32_combine(0xDEADBEEF, 0x1234, length) == crc32_combine_python(
            0xDEADBEEF, 0x1234, length)


def test_zlibs_own_combine_is_used_here() -> None:
    """The Python one costs 30 times as much: a machine without a loadable libz is slower."""
    assert crc32_combine is not crc32_combine_python


def test_an_inflated_member_comes_in_bounded_pieces() -> None:
    raw = parts(5) * 20
    member = gzip_member(deflate_block(p) for p in raw)
    pieces = list(inflated(member, piece=4096))
    assert b"".join(pieces) == b"".join(raw)
    assert max(len(p) for p in pieces) == 4096 and len(pieces) > len(b"".join(raw)) // 4096


def test_an_empty_member() -> None:
    member = gzip_member([])
    assert gzip.decompress(member) == b"" and list(inflated(member)) == []
    with pytest.raises(zlib.error):
        list(inflated(member[:-3]))
