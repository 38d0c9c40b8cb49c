"""The cached exposition: each target's lines are rendered when its snapshot changes, and a
scrape is served from bytes assembled at most once a second from cached pieces, whatever the
poll interval (a lag that followed the interval made a sub-second one reassemble the body
several times a second, and was tuned to a time-compressed benchmark).

Targets are grouped into segments. A segment keeps, per metric family, its targets' lines
joined, and the same deflated on their own (ending on a byte boundary with Z_SYNC_FLUSH), so
the gzip body is the concatenation of cached deflate blocks plus a final block and the CRC:
only the segments whose targets changed are compressed again, and the uncompressed body is
never copied together unless a client asks for it.
Text and OpenMetrics share the sample lines (for these gauges and counters they are
identical) and differ in headers and ``# EOF``.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from exporter.collector import TARGET_FAMILIES, TargetSample, target_labels, target_samples
from exporter.store import SnapshotStore, TargetState
from exporter.targets import Target

Key = tuple[str, str]
SEGMENT_SIZE = 32
MAX_LAG = 1.0  # seconds the exposition may lag the snapshots
RENDER_SLICE = 500  # targets rendered between two yields to the event loop
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, OS unknown
FINAL_BLOCK = b"\x03\x00"  # an empty final fixed-Huffman block
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def deflate_block(data: bytes, level: int = 1) -> bytes:
    """``data`` deflated independently, ending byte-aligned: blocks concatenate. Level 1:
    segments are compressed again whenever a target in them changes (5% larger than level 6
    here, for a quarter less CPU)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def gzip_member(blocks: Iterable[bytes], raw_parts: Iterable[bytes]) -> bytes:
    """A gzip file from deflate blocks and the uncompressed parts they hold (for the CRC)."""
    crc, size = 0, 0
    for part in raw_parts:
        crc = zlib.crc32(part, crc)
        size += len(part)
    return b"".join([GZIP_HEADER, *blocks, FINAL_BLOCK,
                     struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)])


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


_SAMPLE_NAME = {family: f"{family}_total" if kind == "counter" else family
                for family, kind, _ in TARGET_FAMILIES}


def render_target_lines(target: Target, samples: list[TargetSample]) -> dict[str, bytes]:
    """Sample name -> this target's lines. Label values are escaped once per target; the
    extra labels (status, reason) are validated names that need no escaping."""
    base = ",".join(f'{k}="{_escape(v)}"' for k, v in target_labels(target).items())
    lines: dict[str, list[str]] = {}
    for family, extra, value in samples:
        name = _SAMPLE_NAME[family]
        labels = f'{base},{extra[0]}="{extra[1]}"' if extra else base
        lines.setdefault(name, []).append(f"{name}{{{labels}}} {float(value)!r}\n")
    return {name: "".join(text).encode() for name, text in lines.items()}


def _headers(openmetrics: bool) -> dict[str, bytes]:
    headers = {}
    for family, kind, doc in TARGET_FAMILIES:
        sample = f"{family}_total" if kind == "counter" else family
        name = family if openmetrics else sample
        headers[sample] = f"# HELP {name} {_help(doc)}\n# TYPE {name} {kind}\n".encode()
    return headers


@dataclass
class _Segment:
    """Targets whose lines are compressed together; per family, their lines and one deflate
    block of them (the CRC of the body is computed over the joined lines: a few thousand
    parts rather than one per target and family)."""

    keys: list[Key] = field(default_factory=list)
    raw: dict[str, bytes] = field(default_factory=dict)
    deflated: dict[str, bytes] = field(default_factory=dict)


class Exposition:
    """One assembled body. The uncompressed text is kept as references to the cached lines,
    never joined: a client that asks for it uncompressed gets it streamed part by part."""

    def __init__(self, parts: list[bytes], gzipped: bytes, content_type: str) -> None:
        self.parts = parts
        self.text_length = sum(len(part) for part in parts)
        self.gzipped = gzipped
        self.content_type = content_type

    @property
    def text(self) -> bytes:
        """The whole uncompressed body as one copy (tests and small bodies only)."""
        return b"".join(self.parts)


class ExpositionCache:
    """Cached /metrics bodies over a SnapshotStore (plus a registry for the rest)."""

    def __init__(self, store: SnapshotStore, rest: CollectorRegistry,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._rest = rest
        self._clock = clock
        self.max_lag = MAX_LAG
        self._lines: dict[Key, dict[str, bytes]] = {}
        self._visible: dict[Key, bool] = {}  # analytics shown when last rendered
        self._dirty: set[Key] = set()
        self._segments: list[_Segment] = []
        self._segment_of: dict[Key, int] = {}
        self._dirty_segments: set[int] = set()
        self._layout_keys: tuple[Key, ...] = ()
        self._built: dict[bool, tuple[float, int, Exposition]] = {}
        self._lock = asyncio.Lock()
        self._headers = {om: _headers(om) for om in (False, True)}
        self._header_blocks = {om: {k: deflate_block(v) for k, v in h.items()}
                               for om, h in self._headers.items()}
        store.listeners.append(self.invalidate)

    def invalidate(self, key: Key) -> None:
        self._dirty.add(key)

    def check_staleness(self) -> None:
        """Re-render targets whose analytics became stale (run on a timer)."""
        now = self._store.clock()
        for state in self._store.states():
            key = state.target.key
            if self._visible.get(key) and self._store.fresh_analytics(state, now) is None:
                self._dirty.add(key)

    # --- rendering (event loop) ------------------------------------------------------------

    def _relayout(self, keys: tuple[Key, ...]) -> None:
        count = max(1, math.ceil(len(keys) / SEGMENT_SIZE))
        self._segments = [_Segment() for _ in range(count)]
        self._segment_of = {}
        for key in keys:
            index = zlib.crc32(f"{key[0]}\0{key[1]}".encode()) % count
            self._segment_of[key] = index
            self._segments[index].keys.append(key)
        self._dirty_segments = set(range(count))
        self._layout_keys = keys

    def _take_dirty(self) -> tuple[list[TargetState], float]:
        """In the event loop: follow target-set changes and take the changed targets' states
        (immutable) for rendering in the worker thread."""
        store = self._store
        keys = tuple(state.target.key for state in store.states())
        if keys != self._layout_keys:
            for gone in set(self._lines) - set(keys):
                self._lines.pop(gone, None)
                self._visible.pop(gone, None)
            self._relayout(keys)
            self._dirty |= set(keys) - set(self._lines)
        states = [state for key in self._dirty if (state := store.get(key)) is not None]
        self._dirty.clear()
        return states, store.clock()

    async def _render(self, states: list[TargetState], now: float,
                      ) -> list[tuple[_Segment, list[dict[str, bytes]]]]:
        """Render changed targets; return the segments to rebuild with their targets' lines.

        In the event loop, in slices with a yield between them: a thread would hold the GIL
        against the loop (the convoy effect cut /metrics to a few requests a second), while
        slices keep polls and scrapes moving even when every target changed at once."""
        for index, state in enumerate(states, start=1):
            key = state.target.key
            samples, visible = target_samples(self._store, state, now)
            self._lines[key] = render_target_lines(state.target, samples)
            self._visible[key] = visible
            self._dirty_segments.add(self._segment_of[key])
            if index % RENDER_SLICE == 0:
                await asyncio.sleep(0)
        work = [(self._segments[i], [self._lines[k] for k in self._segments[i].keys])
                for i in sorted(self._dirty_segments)]
        self._dirty_segments.clear()
        return work

    # --- assembly (worker thread) ----------------------------------------------------------

    @staticmethod
    def _rebuild(work: list[tuple[_Segment, list[dict[str, bytes]]]]) -> None:
        for segment, lines in work:
            raw = {}
            for name in {n for per_target in lines for n in per_target}:
                joined = b"".join(per_target.get(name, b"") for per_target in lines)
                if joined:
                    raw[name] = joined
            segment.raw = raw
            segment.deflated = {name: deflate_block(data) for name, data in raw.items()}

    def _assemble(self, openmetrics: bool, rest: bytes) -> Exposition:
        raw_parts: list[bytes] = []
        blocks: list[bytes] = []
        headers, header_blocks = self._headers[openmetrics], self._header_blocks[openmetrics]
        for name in headers:
            present = [s for s in self._segments if name in s.raw]
            if not present:
                continue
            raw_parts.append(headers[name])
            blocks.append(header_blocks[name])
            for segment in present:
                raw_parts.append(segment.raw[name])
                blocks.append(segment.deflated[name])
        raw_parts.append(rest)
        blocks.append(deflate_block(rest))
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        return Exposition(raw_parts, gzip_member(blocks, raw_parts), content_type)

    # --- serving ---------------------------------------------------------------------------

    async def get(self, openmetrics: bool) -> Exposition:
        """The current body; reassembled only when the cached one is older than ``max_lag``."""
        if (fresh := self._fresh(openmetrics)) is not None:
            return fresh
        async with self._lock:  # a burst of scrapes waits for one assembly
            if (fresh := self._fresh(openmetrics)) is not None:
                return fresh
            started = self._clock()
            states, now = self._take_dirty()
            work = await self._render(states, now)
            rest = (openmetrics_latest if openmetrics else text_latest)(self._rest)
            # zlib and crc32 release the GIL: compression runs beside the loop.
            exposition = await asyncio.to_thread(self._build, work, openmetrics, rest)
            self._built[openmetrics] = (started, self._store.generation, exposition)
            return exposition

    def _fresh(self, openmetrics: bool) -> Exposition | None:
        built = self._built.get(openmetrics)
        if built is None or built[1] != self._store.generation:
            return None  # never built, or targets were added or removed since
        return built[2] if self._clock() - built[0] < self.max_lag else None

    def _build(self, work: list[tuple[_Segment, list[dict[str, bytes]]]], openmetrics: bool,
               rest: bytes) -> Exposition:
        self._rebuild(work)
        return self._assemble(openmetrics, rest)
