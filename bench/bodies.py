"""Huge request bodies against a running server: how much memory do they cost it?

``arsync serve`` (PostgreSQL behind it) runs in its own process. Four clients at once each send
a 150 MB body without any key to POST /api/v1/customers, first with a Content-Length, then
streamed without one (chunked), and one more to the webhook. The server's resident memory is
read from /proc every 20 ms; the figure is the peak growth over its size before the bodies.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import ARSYNC, Database, free_port, wait_until_up

BODY_MB = 150
PARALLEL = 4
CHUNK = 1024 * 1024


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _chunks() -> Iterator[bytes]:
    block = b" " * CHUNK
    for _ in range(BODY_MB):
        yield block


def _send(url: str, *, declared: bool) -> str:
    """The answer's status, or how the connection ended when the server stopped reading."""
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(BODY_MB * CHUNK)
    try:
        answer = httpx.post(url, content=_chunks(), headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return str(answer.status_code)


def _round(url: str, pid: int, *, declared: bool, path: str = "/api/v1/customers") -> dict[str, Any]:
    baseline = _rss_mb(pid)
    peak = baseline
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_mb(pid))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(lambda _: _send(url + path, declared=declared), range(PARALLEL)))
    seconds = time.perf_counter() - started
    time.sleep(0.2)
    done.set()
    watcher.join()
    return {
        "declaredLength": declared,
        "path": path,
        "answers": outcomes,
        "baselineRssMb": round(baseline, 1),
        "peakRssMb": round(peak, 1),
        "peakGrowthMb": round(peak - baseline, 1),
        "seconds": round(seconds, 2),
    }


def run() -> dict[str, Any]:
    database = Database()
    port = free_port()
    server = subprocess.Popen(
        [ARSYNC, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=dict(os.environ, ARSYNC_DATABASE_URL=database.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/api/v1/health", server, "arsync serve")
        rounds = [
            _round(base, server.pid, declared=True),
            _round(base, server.pid, declared=False),
            _round(base, server.pid, declared=False, path="/api/v1/webhooks/nomod/ten_x/env_x"),
        ]
        for figures in rounds:
            print(
                f"  {PARALLEL} x {BODY_MB} MB to {figures['path']} ("
                f"{'Content-Length' if figures['declaredLength'] else 'chunked'}): answers {figures['answers']}, "
                f"peak RSS growth {figures['peakGrowthMb']:.1f} MB",
                flush=True,
            )
        worst = max(r["peakGrowthMb"] for r in rounds)
        return {
            "benchmark": f"{PARALLEL} parallel {BODY_MB} MB bodies without a key",
            "rounds": rounds,
            "worstPeakGrowthMb": worst,
            "targets": {"peak RSS growth < 50 MB": worst < 50},
        }
    finally:
        server.terminate()
        server.wait(timeout=10)
        database.drop()
