"""The test suite's fake Unpod API as a stand-alone process, for benchmarks.

python bench/fake_server.py --port 8000 --orgs 1000 --spaces 9 [--latency 0.02] [--flap 0.33]
Org ``orgN`` answers org-wide and for space tokens ``spN_M``; ``--flap`` is the share of
requests that fail, with a rotating mix of faults (503, a slow answer, a reset, 401, 429,
non-JSON). Every answer is a fresh snapshot (the calls count moves), as a live API's would be.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakeapi import FAULTS, FakeUnpod, Fault

FLAP_FAULTS = [
    Fault(503, b"<html>busy</html>"),
    Fault(200, b"{}", delay=3.0),
    Fault(200, b'{"status_code": 200, "data": {"total_calls": 1' + b" " * 4000, reset_after=40),
    FAULTS["no_credentials"],
    Fault(429, {"detail": "throttled"}, {"Retry-After": "1"}),
    FAULTS["not_json"],
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--orgs", type=int, default=100)
    parser.add_argument("--spaces", type=int, default=0, help="spaces per org")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--flap", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    fake = FakeUnpod()
    fake.latency = args.latency
    fake.record = False
    fake.moving = True
    rng = random.Random(args.seed)
    faults = itertools.cycle(FLAP_FAULTS)
    for i in range(args.orgs):
        for token in [None, *(f"sp{i}_{j}" for j in range(args.spaces))]:
            fake.set_analytics(f"org{i}", token, calls=1000 + i)
            if args.flap:
                fake.fail(f"org{i}", token,
                          lambda: next(faults) if rng.random() < args.flap else None)
    web.run_app(fake.app(), host="127.0.0.1", port=args.port, access_log=None,
                print=lambda *_: None)


if __name__ == "__main__":
    main()
