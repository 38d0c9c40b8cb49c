"""The ceiling: a bare aiohttp client loop making one analytics request per target at the given
concurrency, as fast as it can (start to ready) or paced at --rate (steady state CPU).
Prints JSON: seconds, CPU seconds, requests."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


async def run(base: str, orgs: int, spaces: int, concurrency: int, rate: float) -> None:
    started, cpu = time.monotonic(), time.process_time()
    semaphore = asyncio.Semaphore(concurrency)
    slot = iter(range(orgs * (spaces + 1)))
    url = base + "/organisation/analytics/"
    headers = {"Authorization": "Token tok-secret-123", "User-Agent": "bare-loop"}

    async def one(session: aiohttp.ClientSession, org: str, token: str | None) -> None:
        if rate:  # paced: request n starts at n / rate, like polls spread over an interval
            await asyncio.sleep(next(slot) / rate - (time.monotonic() - started))
        async with semaphore:
            params = {"space_token": token} if token else None
            async with session.get(url, headers={**headers, "Org-Handle": org},
                                   params=params) as response:
                await response.json()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one(session, f"org{i}", token) for i in range(orgs)
                               for token in [None, *(f"sp{i}_{j}" for j in range(spaces))]))
    print(json.dumps({"seconds": time.monotonic() - started,
                      "cpu_seconds": time.process_time() - cpu,
                      "requests": orgs * (spaces + 1)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--orgs", type=int, required=True)
    parser.add_argument("--spaces", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0, help="requests per second (0: burst)")
    args = parser.parse_args()
    asyncio.run(run(args.base, args.orgs, args.spaces, args.concurrency, args.rate))
