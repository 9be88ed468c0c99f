"""A small HTTP load generator, run as its own process: N concurrent keep-alive clients.

Prints one JSON object per URL: requests, errors, req/s and latency percentiles.

It uses aiohttp rather than httpx: an httpx client tops out near 700 req/s on one core, so a
fast endpoint measured the client, not the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp


async def load(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as client:
        async with client.get(url) as first:
            await first.read()

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with client.get(url) as response:
                    await response.read()
                latencies.append(time.perf_counter() - started)
                if response.status != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(int(len(latencies) * p), len(latencies) - 1)] * 1000

    return {
        "requests": len(latencies),
        "errors": errors,
        "requestsPerSecond": len(latencies) / wall,
        "p50Ms": pct(0.50),
        "p99Ms": pct(0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    result = asyncio.run(load(args.url, headers, args.concurrency, args.seconds))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
