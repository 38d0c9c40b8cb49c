"""A gzip member stitched from deflate blocks compressed apart (RFC 1951, RFC 1952).

A raw deflate stream may be cut into blocks compressed independently as long as each ends on a
byte boundary (``Z_SYNC_FLUSH``: an empty stored block) and none refers back past its own
start (a fresh compressor per block). Such blocks concatenate into one valid stream; an empty
final block closes it, and the gzip trailer carries the CRC-32 and length of the uncompressed
bytes. Each block keeps the CRC and length of what it holds, and the trailer's CRC is combined
from them (zlib's ``crc32_combine``), so a body made of parts that change at different times is
compressed part by part, only the changed parts are compressed again, and the uncompressed
parts need not be kept at all: whoever wants the text inflates the member.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, OS unknown
FINAL_BLOCK = b"\x03\x00"  # an empty final fixed-Huffman block
LEVEL = 1  # parts are compressed again whenever they change: 5% larger than level 6 on
# /metrics bodies, for a quarter less CPU
INFLATE_PIECE = 64 * 1024  # uncompressed bytes handed out at a time when a member is inflated
_FEED = 16 * 1024  # compressed bytes fed to the inflater at a time (its leftover is copied)
_CRC_POLY = 0xEDB88320  # CRC-32's polynomial, reflected


@dataclass(frozen=True, slots=True)
class Block:
    """Deflated bytes (byte-aligned, not final) and the CRC-32 and length of what they hold."""

    deflated: bytes
    crc: int
    length: int


def deflate_block(data: bytes, level: int = LEVEL) -> Block:
    """``data`` deflated on its own, ending byte-aligned and not final: blocks concatenate."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    deflated = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return Block(deflated, zlib.crc32(data), len(data))


def inflate_block(block: Block) -> bytes:
    """What a ``deflate_block`` holds."""
    return zlib.decompressobj(-15).decompress(block.deflated)


def _multmodp(a: int, b: int) -> int:
    """a times b modulo the CRC polynomial (zlib 1.2.12's ``multmodp``)."""
    m, product = 1 << 31, 0
    while True:
        if a & m:
            product ^= b
            if a & (m - 1) == 0:
                return product
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1


def _x2n_table() -> tuple[int, ...]:
    table, power = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(power)
        power = _multmodp(power, power)
    return tuple(table)


_X2N = _x2n_table()  # x^(2^n) modulo the polynomial


def _x2nmodp(n: int, k: int) -> int:
    """x^(n * 2^k) modulo the polynomial (zlib 1.2.12's ``x2nmodp``)."""
    product = 1 << 31  # x^0
    while n:
        if n & 1:
            product = _multmodp(_X2N[k & 31], product)
        n >>= 1
        k += 1
    return product


def crc32_combine_python(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A + B from A's, B's and B's length, as zlib computes it (its algorithm
    of 1.2.12, in Python: 30 times slower than zlib's own)."""
    return _multmodp(_x2nmodp(length2, 3), crc1) ^ (crc2 & 0xFFFFFFFF)


def _libz_combine() -> Callable[[int, int, int], int] | None:
    """zlib's own ``crc32_combine64``, which Python's zlib module does not expose, from the
    library it links; None when it cannot be loaded or disagrees with the Python one."""
    for name in (ctypes.util.find_library("z"), "libz.so.1", "libz.dylib"):
        if not name:
            continue
        try:
            function = ctypes.CDLL(name).crc32_combine64
        except (OSError, AttributeError):
            continue
        function.argtypes = [ctypes.c_ulong, ctypes.c_ulong, ctypes.c_int64]
        function.restype = ctypes.c_ulong
        checks = [(zlib.crc32(b"unpod"), zlib.crc32(b"exporter"), 8), (0, 0, 0),
                  (0xFFFFFFFF, 0x12345678, 5 << 32)]
        if all(function(*check) == crc32_combine_python(*check) for check in checks):
            return function
    return None


crc32_combine: Callable[[int, int, int], int] = _libz_combine() or crc32_combine_python
LIBZ_COMBINE = crc32_combine is not crc32_combine_python  # the fallback is 30 times slower


def gzip_member(blocks: Iterable[Block]) -> bytes:
    """One gzip member from ``deflate_block`` outputs, in order."""
    crc, size, deflated = 0, 0, [GZIP_HEADER]
    for block in blocks:
        crc = crc32_combine(crc, block.crc, block.length)
        size += block.length
        deflated.append(block.deflated)
    deflated += [FINAL_BLOCK, struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)]
    return b"".join(deflated)


def inflated(member: bytes, piece: int = INFLATE_PIECE) -> Iterator[bytes]:
    """A gzip member's text in pieces of at most ``piece`` bytes (its CRC and length checked):
    never the whole text at once. Raises zlib.error on a corrupt or truncated member."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    view = memoryview(member)
    for start in range(0, len(view), _FEED):
        data: bytes | memoryview = view[start:start + _FEED]
        while data:
            if text := decoder.decompress(data, piece):
                yield text
            data = decoder.unconsumed_tail
    while not decoder.eof:  # output the inflater still holds
        if not (text := decoder.decompress(b"", piece)):
            raise zlib.error("truncated gzip member")
        yield text
