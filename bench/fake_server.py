"""The test suite's fake Unpod API as a stand-alone process, for benchmarks.

python bench/fake_server.py --port 8000 --orgs 1000 --spaces 9 [--latency 0.02] [--flap 0.33]
                            [--hostile]
Org ``orgN`` answers org-wide and for space tokens ``spN_M``; ``--flap`` is the share of
requests that fail, with a rotating mix of faults (503, a slow answer, a reset, 401, 429,
non-JSON). Every answer is a fresh snapshot (the calls count moves), as a live API's would be.
``--hostile`` adds the orgs of bench/hostile.py: ``huge`` (a 401-digit count), ``headers``
(400-digit and non-ASCII-digit rate-limit headers) and ``echo`` (a task status named like the
token).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fakeapi import FAULTS, FakeUnpod, Fault, analytics

TOKEN = "tok-secret-123"


def add_hostile(fake: FakeUnpod) -> None:
    """The upstream attacks of issue 12, one org each."""
    huge = json.dumps({"status_code": 200, "data": analytics()}).replace(
        '"total_calls": 100', '"total_calls": ' + "9" * 401)
    fake.set_analytics("huge")
    fake.fail("huge", None, Fault(200, huge.encode(), {"X-RateLimit-Remaining": "9" * 400}))
    fake.set_analytics("headers")
    # 200, not 429: a 429 rightly pauses every target of the token (Retry-After '²' on a
    # 429 is covered by tests/test_hostile.py)
    ok = json.dumps({"status_code": 200, "data": analytics()}).encode()
    fake.fail("headers", None, Fault(200, ok, {
        "X-RateLimit-Limit": "\u0663", "X-RateLimit-Remaining": "\u00b2",
        "X-RateLimit-Reset": "9" * 400}))
    fake.set_analytics("echo", breakdown={"pending": 1, TOKEN: 5})

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
    parser.add_argument("--hostile", action="store_true")
    args = parser.parse_args()
    fake = FakeUnpod()
    fake.latency = args.latency
    fake.record = False
    fake.backlog.record = False
    fake.moving = True
    rng = random.Random(args.seed)
    faults = itertools.cycle(FLAP_FAULTS)
    for i in range(args.orgs):
        for token in [None, *(f"sp{i}_{j}" for j in range(args.spaces))]:
            fake.set_analytics(f"org{i}", token, calls=1000 + i)
            if args.flap:
                fake.fail(f"org{i}", token,
                          lambda: next(faults) if rng.random() < args.flap else None)
    if args.hostile:
        add_hostile(fake)
    web.run_app(fake.app(), host="127.0.0.1", port=args.port, access_log=None,
                print=lambda *_: None)


if __name__ == "__main__":
    main()
