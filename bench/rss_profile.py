"""Where the peak RSS comes from: the exporter's RSS over time, and at chosen moments what
holds the memory (benchmark 3's set-up, one size).

python bench/rss_profile.py [--targets 50000] [--seconds 30] [--trace]

The exporter runs as a child of this script (the same process as ``python -m exporter``,
plus a SIGUSR1 handler installed here, bench-only). At three moments (ready, after the first
scrape, at the end) the child writes to stderr glibc's heap figures (mallinfo2: in use, free
inside the heap, mmapped), pymalloc's (arenas, free pools), and with ``--trace``
tracemalloc's top lines by allocation site (tracemalloc slows the start and costs memory of
its own: RSS figures of a traced run are not the exporter's). This script prints VmRSS
sampled every 0.2 s with the phases marked.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PYTHON,
    ROOT,
    free_port,
    scrape_gzip,
    start_fake,
    status_kib,
    stop,
    wait_http,
    write_config,
)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _heap_report(label: str) -> str:
    out = [f"=== {label}: VmRSS {status_kib(os.getpid(), 'VmRSS') / 1024:.1f} MiB"]
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
        mib = 1 << 20
        out.append(f"malloc: heap {info.arena / mib:.1f} MiB (in use {info.uordblks / mib:.1f}, "
                   f"free {info.fordblks / mib:.1f}), mmapped {info.hblkhd / mib:.1f} MiB "
                   f"in {info.hblks} blocks")
    except (OSError, AttributeError):
        out.append("malloc: no mallinfo2 (not glibc)")
    stats = io.StringIO()
    fd = os.dup(2)
    with tempfile.TemporaryFile("w+") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            sys._debugmallocstats()  # type: ignore[attr-defined]
        finally:
            os.dup2(fd, 2)
            os.close(fd)
        tmp.seek(0)
        stats.write(tmp.read())
    for line in stats.getvalue().splitlines():
        if line.startswith(("# arenas allocated current", "# bytes in allocated blocks",
                            "# bytes in available blocks", "# bytes lost to",
                            "Total ", "# arenas highwater")):
            out.append("pymalloc: " + " ".join(line.split()))
    import tracemalloc
    if tracemalloc.is_tracing():
        import gc
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)])
        current, peak = tracemalloc.get_traced_memory()
        out.append(f"tracemalloc: current {current / mib:.1f} MiB, peak {peak / mib:.1f} MiB")
        # two frames: the generated __init__ of a dataclass is <string>:1, its caller says whose
        for stat in snapshot.statistics("traceback")[:35]:
            where = " | ".join(f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
                                for frame in stat.traceback)
            out.append(f"  {stat.size / mib:7.1f} MiB {stat.count:9d} {where}")
    return "\n".join(out)


def child(argv: list[str], trace: bool) -> None:
    if trace:
        import tracemalloc
        tracemalloc.start(2)
    labels = iter(["ready", "after the first scrape", "end"])

    def report(_signum: int, _frame: object) -> None:
        print(_heap_report(next(labels, "more")), file=sys.stderr, flush=True)

    signal.signal(signal.SIGUSR1, report)
    sys.path.insert(0, str(ROOT))
    from exporter.cli import main
    sys.exit(main(argv))


def parent(targets: int, seconds: float, trace: bool) -> None:
    orgs = targets // 10
    fake, base = start_fake(orgs, 9, 0.02)
    config = write_config(Path(tempfile.mkdtemp()) / "config.yaml", base, orgs, 9, interval=60)
    port = free_port()
    argv = ["--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}",
            "--log.level", "error"]
    proc = subprocess.Popen([PYTHON, __file__, "--child", *(["--trace"] if trace else []),
                             "--", *argv], cwd=ROOT)
    samples: list[tuple[float, float]] = []
    marks: list[tuple[float, str]] = []
    done = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not done.is_set():
            try:
                samples.append((time.monotonic() - started,
                                status_kib(proc.pid, "VmRSS") / 1024))
            except (OSError, KeyError):
                return
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()

    def mark(label: str) -> None:
        marks.append((time.monotonic() - started, label))

    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=1800)
        mark("ready")
        time.sleep(1)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(3 if trace else 1)
        mark("first scrape")
        scrape_gzip(port, timeout=900)  # patient: traced runs are slow
        mark("first scrape done")
        proc.send_signal(signal.SIGUSR1)
        time.sleep(3 if trace else 1)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            scrape_gzip(port, timeout=900)  # patient: traced runs are slow
            time.sleep(5)
        mark("end")
        proc.send_signal(signal.SIGUSR1)
        time.sleep(5 if trace else 1)
        peak = status_kib(proc.pid, "VmHWM") / 1024
    finally:
        done.set()
        sampler.join()
        stop(proc)
        stop(fake)
    events = iter(marks)
    upcoming = next(events, None)
    top = 0.0
    for at, rss in samples:
        while upcoming is not None and upcoming[0] <= at:
            print(f"  --- {upcoming[1]} at {upcoming[0]:.1f}s (max so far {top:.1f} MiB)")
            upcoming = next(events, None)
        top = max(top, rss)
    step = max(1, len(samples) // 40)
    print("VmRSS over time (s, MiB): " + ", ".join(
        f"{at:.0f}:{rss:.0f}" for at, rss in samples[::step]))
    print(f"peak (VmHWM) {peak:.1f} MiB; last VmRSS {samples[-1][1]:.1f} MiB")


if __name__ == "__main__":
    if "--child" in sys.argv:
        rest = sys.argv[sys.argv.index("--") + 1:]
        child(rest, "--trace" in sys.argv[:sys.argv.index("--")])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=50000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    parent(args.targets, args.seconds, args.trace)
