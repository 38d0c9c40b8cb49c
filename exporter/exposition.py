"""The cached exposition: each target's lines are rendered when its snapshot changes, and a
scrape is served from bytes assembled at most once a second from cached pieces, whatever the
poll interval (a lag that followed the interval made a sub-second one reassemble the body
several times a second, and was tuned to a time-compressed benchmark).

Targets are grouped into segments. A segment keeps, per metric family, its targets' lines
joined as a deflate block of its own (``exporter.gzipmember``), so the gzip body is cached
blocks stitched together: only the segments whose targets changed are compressed again. The
text is kept only deflated; a client that asks for it uncompressed gets the body inflated as
it is sent.

While scrapes come often, a scrape never waits for an assembly: a body older than MAX_LAG
(but younger than twice that) is served once more while the next one is assembled beside it,
so a body is at most MAX_LAG plus one assembly old. A scrape waits for an assembly when there
is no body for the current target set (the first scrape, and after a reload or discovery changed
it), and when the last body is older than twice MAX_LAG: scrapes are rare then (Prometheus every
15 s or more), and the body of the previous scrape would lag by a whole scrape interval.
Text and OpenMetrics share the sample lines (for these gauges and counters they are
identical) and differ in headers and ``# EOF``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from exporter.collector import TARGET_FAMILIES, TargetSample, target_labels, target_samples
from exporter.gzipmember import (
    LIBZ_COMBINE,
    Block,
    deflate_block,
    gzip_member,
    inflate_block,
    inflated,
)
from exporter.store import SnapshotStore, TargetState
from exporter.targets import Target, TargetKey

log = logging.getLogger("unpod_exporter")
T = TypeVar("T")

SEGMENT_SIZE = 32
MAX_LAG = 1.0  # seconds the exposition may lag the snapshots
RENDER_SLICE = 500  # targets rendered between two yields to the event loop
DEFLATE_BATCH = 4 << 20  # bytes of joined text held before a worker thread deflates them
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


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
        if extra is None:
            labels = base
        else:
            label, label_value = extra
            labels = f'{base},{label}="{label_value}"'
        lines.setdefault(name, []).append(f"{name}{{{labels}}} {float(value)!r}\n")
    return {name: "".join(text).encode() for name, text in lines.items()}


def _headers(openmetrics: bool) -> dict[str, bytes]:
    headers = {}
    for family, kind, doc in TARGET_FAMILIES:
        sample = f"{family}_total" if kind == "counter" else family
        name = family if openmetrics else sample
        headers[sample] = f"# HELP {name} {_help(doc)}\n# TYPE {name} {kind}\n".encode()
    return headers


def _digest(lines: bytes) -> int:
    """What a target's lines are compared by: the text itself is only kept deflated. Python's
    hash of bytes (64 bits, keyed per process); 0 only for no lines."""
    return (hash(lines) or 1) if lines else 0


async def finish_in_thread(function: Callable[..., T], *args: object) -> T:
    """``asyncio.to_thread``, but a cancelled caller still waits for the thread to end before
    the cancellation goes on: the thread writes segments, which the caller's lock guards."""
    future = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        raise


@dataclass(frozen=True, slots=True)
class _Family:
    """One sample name's lines of a segment's targets, joined in the segment's order, as one
    deflate block, with where each target's lines end and their digests: the text itself is
    kept nowhere (uncompressed, it was a third of the process at 50,000 targets). A changed
    target's lines are spliced in between its neighbours' inflated again; whether a target's
    lines changed is told by their digest, without inflating. The ends and digests are arrays
    of machine integers, not tuples of ints: an int object each cost 30 MiB at 50,000 targets
    (a segment's lines of one family are kilobytes, far from 4 GiB)."""

    block: Block
    ends: array[int]
    digests: array[int]

    def pieces(self) -> list[bytes]:
        """Each target's lines, by position."""
        text = inflate_block(self.block)
        starts = itertools.chain((0,), self.ends)
        return [text[start:end] for start, end in zip(starts, self.ends, strict=False)]


@dataclass
class _Segment:
    """Targets whose lines are compressed together, family by family."""

    keys: list[TargetKey] = field(default_factory=list)
    families: dict[str, _Family] = field(default_factory=dict)

    def digests_of(self, position: int) -> dict[str, int]:
        """A target's current lines' digests by sample name (those it has lines in)."""
        digests = {name: family.digests[position] for name, family in self.families.items()}
        return {name: digest for name, digest in digests.items() if digest}


@dataclass(frozen=True, slots=True)
class _Joined:
    """A family's lines joined in the event loop, to be deflated in a worker thread."""

    segment: _Segment
    name: str
    text: bytes
    ends: array[int]
    digests: array[int]


class Exposition:
    """One assembled body, kept gzipped only: a client that asks for it uncompressed gets it
    inflated and streamed piece by piece."""

    def __init__(self, gzipped: bytes, text_length: int, content_type: str) -> None:
        self.gzipped = gzipped
        self.text_length = text_length
        self.content_type = content_type

    def text_pieces(self) -> Iterator[bytes]:
        return inflated(self.gzipped)

    @property
    def text(self) -> bytes:
        """The whole uncompressed body as one copy (tests and small bodies only)."""
        return b"".join(self.text_pieces())


@dataclass(frozen=True)
class _Built:
    started: float  # clock reading when its assembly began
    generation: int  # of the store's target set it shows
    exposition: Exposition


_Work = list[_Joined]


class ExpositionCache:
    """Cached /metrics bodies over a SnapshotStore (plus a registry for the rest).

    The lock's contract: ``_lock`` is held by one assembly at a time, from taking the dirty
    targets in the event loop (which renders them and splices their lines into the segments),
    across the hop to the worker thread that deflates the changed families and assembles the
    body, until the new body is stored. Segments are written and read only under it, so no
    assembly sees a segment half rebuilt; ``_dirty`` and ``_built`` are touched by the event
    loop alone.
    """

    def __init__(self, store: SnapshotStore, rest: CollectorRegistry,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._rest = rest
        self._clock = clock
        self.max_lag = MAX_LAG
        # targets whose analytics were shown when last rendered: their last success then
        self._visible: dict[TargetKey, float] = {}
        self._dirty: set[TargetKey] = set()
        self._segments: list[_Segment] = []
        self._segment_of: dict[TargetKey, tuple[int, int]] = {}  # segment, position in it
        self._dirty_segments: dict[int, set[str] | None] = {}  # None: every name
        self._layout_keys: tuple[TargetKey, ...] = ()
        self._layout_generation = -1
        self._built: dict[bool, _Built] = {}
        self._lock = asyncio.Lock()
        self._assembling: dict[bool, asyncio.Task[Exposition]] = {}
        self._header_blocks = {om: {k: deflate_block(v) for k, v in _headers(om).items()}
                               for om in (False, True)}
        self.deflate_batch = DEFLATE_BATCH
        if not LIBZ_COMBINE:
            log.warning("zlib's crc32_combine64 could not be loaded: /metrics CRCs are combined "
                        "in Python, about 30 times slower")
        store.listeners.append(self.invalidate)

    def invalidate(self, key: TargetKey) -> None:
        self._dirty.add(key)

    def check_staleness(self) -> None:
        """Re-render targets whose analytics became stale (run on a timer)."""
        store = self._store
        now = store.clock()
        # analytics are never stale before max_staleness (stale_after is at least that): only
        # those older are looked up, not every target every second
        old = now - store.max_staleness
        for key, last_success in self._visible.items():
            if last_success < old and (state := store.get(key)) is not None \
                    and store.fresh_analytics(state, now) is None:
                self._dirty.add(key)

    # --- rendering (event loop) ------------------------------------------------------------

    def _relayout(self, keys: tuple[TargetKey, ...]) -> None:
        count = max(1, math.ceil(len(keys) / SEGMENT_SIZE))
        self._segments = [_Segment() for _ in range(count)]
        self._segment_of = {}
        for key in keys:
            org, space = key
            index = zlib.crc32(f"{org}\0{space}".encode()) % count
            self._segment_of[key] = (index, len(self._segments[index].keys))
            self._segments[index].keys.append(key)
        self._dirty_segments = dict.fromkeys(range(count))
        self._layout_keys = keys

    def _take_dirty(self) -> tuple[list[TargetState], float]:
        """Follow target-set changes and take the changed targets' states (immutable) to
        render."""
        store = self._store
        if store.generation != self._layout_generation:
            self._follow_targets()
        states = [state for key in self._dirty if (state := store.get(key)) is not None]
        self._dirty.clear()
        return states, store.clock()

    def _follow_targets(self) -> None:
        """After a reload or discovery: lay the segments out again if the set changed."""
        keys = tuple(state.target.key for state in self._store.states())
        self._layout_generation = self._store.generation
        if keys != self._layout_keys:
            for gone in set(self._visible) - set(keys):
                del self._visible[gone]
            self._relayout(keys)
            self._dirty = set(keys)  # the new segments are joined from fresh renders

    async def _render(self, states: list[TargetState], now: float) -> _Work:
        """Render changed targets and splice their lines into their segments' families;
        return the families still to deflate.

        In the event loop, in slices with a yield between them: a thread would hold the GIL
        against the loop (the convoy effect cut /metrics to a few requests a second), while
        slices keep polls and scrapes moving even when every target changed at once. Segment
        by segment, so that only one segment's new lines are held apart at a time (after a
        new layout, every target's), and the joined families are deflated in a worker thread
        whenever they hold more than ``deflate_batch`` bytes of text, so that a new layout
        never holds the whole body uncompressed."""
        work: _Work = []
        held = 0  # bytes of text in work
        current, fresh = -1, dict[int, dict[str, bytes]]()
        states = sorted(states, key=lambda state: self._segment_of[state.target.key])
        for index, state in enumerate(states, start=1):
            key = state.target.key
            segment, position = self._segment_of[key]
            if segment != current:
                joined = self._join(current, fresh)
                work += joined
                held += sum(len(family.text) for family in joined)
                current, fresh = segment, {}
                if held > self.deflate_batch:
                    await finish_in_thread(self._deflate, work)
                    work, held = [], 0
            samples, visible = target_samples(self._store, state, now)
            lines = render_target_lines(state.target, samples)
            if visible and state.last_success is not None:
                self._visible[key] = state.last_success
            else:
                self._visible.pop(key, None)
            before = self._segments[segment].digests_of(position)
            changed = {n for n in before.keys() | lines.keys()
                       if before.get(n, 0) != _digest(lines.get(n, b""))}
            if changed or self._dirty_segments.get(segment, ()) is None:
                # a poll moves a few families (timestamps, counts), not all of them
                fresh[position] = lines
                self._mark(segment, changed)
            if index % RENDER_SLICE == 0:
                await asyncio.sleep(0)
        work += self._join(current, fresh)
        self._dirty_segments.clear()
        return work

    def _mark(self, index: int, names: set[str]) -> None:
        if index not in self._dirty_segments:
            self._dirty_segments[index] = names
        elif (marked := self._dirty_segments[index]) is not None:
            marked |= names

    def _join(self, index: int, fresh: dict[int, dict[str, bytes]]) -> _Work:
        """Splice a segment's changed targets' lines (by position) into its families: the
        families to deflate. After a new layout every target of it is in ``fresh``; otherwise
        the family is inflated for its unchanged targets' lines."""
        if index not in self._dirty_segments:
            return []
        segment, names = self._segments[index], self._dirty_segments[index]
        if names is None:
            names = {n for lines in fresh.values() for n in lines}
            segment.families = {}
        positions = range(len(segment.keys))
        work: _Work = []
        for name in names:
            old = segment.families.get(name)
            if old is None or len(fresh) == len(positions):  # nothing unchanged to keep
                pieces = [fresh[p].get(name, b"") if p in fresh else b"" for p in positions]
                digests = array("q", map(_digest, pieces))
            else:
                kept = old.pieces()
                pieces = [fresh[p].get(name, b"") if p in fresh else kept[p] for p in positions]
                digests = array("q", (_digest(pieces[p]) if p in fresh else old.digests[p]
                                      for p in positions))
            ends = array("I", itertools.accumulate(len(piece) for piece in pieces))
            work.append(_Joined(segment, name, b"".join(pieces), ends, digests))
        return work

    # --- assembly (worker thread) ----------------------------------------------------------

    @staticmethod
    def _deflate(work: _Work) -> None:
        for joined in work:
            families = joined.segment.families
            if joined.text:
                families[joined.name] = _Family(
                    deflate_block(joined.text), joined.ends, joined.digests)
            else:
                families.pop(joined.name, None)

    def _assemble(self, openmetrics: bool, rest: bytes) -> Exposition:
        blocks: list[Block] = []
        header_blocks = self._header_blocks[openmetrics]
        for name, header in header_blocks.items():
            present = [f.block for s in self._segments if (f := s.families.get(name)) is not None]
            if present:
                blocks += [header, *present]
        blocks.append(deflate_block(rest))
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        return Exposition(gzip_member(blocks), sum(b.length for b in blocks), content_type)

    # --- serving ---------------------------------------------------------------------------

    async def get(self, openmetrics: bool) -> Exposition:
        """The current body (see the module docstring for when a scrape waits)."""
        for _ in range(3):  # the target set may change again while an assembly runs
            built = self._built.get(openmetrics)
            if built is not None and built.generation == self._store.generation:
                age = self._clock() - built.started
                if age < self.max_lag:
                    return built.exposition
                if age < 2 * self.max_lag:  # scrapes are frequent: serve it once more
                    self._assembly(openmetrics)
                    return built.exposition
                # Scrapes are rare (Prometheus every 15 s or more): a body assembled at the
                # previous scrape would lag by a whole scrape interval, so wait for a fresh one.
            # shielded: a scrape that gives up does not cancel the assembly it waited for
            exposition = await asyncio.shield(self._assembly(openmetrics))
        return exposition

    def _assembly(self, openmetrics: bool) -> asyncio.Task[Exposition]:
        """The assembly of this format under way, or a new one. A task, so that a scrape
        that disconnects never leaves the worker thread writing segments without the lock."""
        task = self._assembling.get(openmetrics)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._assemble_locked(openmetrics))
            self._assembling[openmetrics] = task
            task.add_done_callback(self._assembled)
        return task

    def _assembled(self, task: asyncio.Task[Exposition]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("assembling /metrics failed", exc_info=error)

    async def settle(self) -> None:
        """Wait for the assemblies under way (tests)."""
        await asyncio.gather(*self._assembling.values(), return_exceptions=True)

    async def _assemble_locked(self, openmetrics: bool) -> Exposition:
        async with self._lock:  # one assembly at a time: they share the segments
            started = self._clock()
            generation = self._store.generation
            states, now = self._take_dirty()
            try:
                work = await self._render(states, now)
                rest = (openmetrics_latest if openmetrics else text_latest)(self._rest)
                # zlib releases the GIL: compression runs beside the loop.
                exposition = await finish_in_thread(self._build, work, openmetrics, rest)
            except BaseException:
                # Their lines may be rendered but not deflated into their families: the next
                # assembly renders them again (what did reach the families compares equal).
                self._dirty.update(state.target.key for state in states)
                raise
            self._built[openmetrics] = _Built(started, generation, exposition)
            return exposition

    def _build(self, work: _Work, openmetrics: bool, rest: bytes) -> Exposition:
        self._deflate(work)
        return self._assemble(openmetrics, rest)
