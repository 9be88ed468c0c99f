"""One measured step of the sync benchmark, run in its own process.

``ceiling``: fetch and JSON-decode every page of the three lists; no validation, no database.
``sync``: one arsync sync of a connection (full or incremental, or a reconciliation) into the
configured database.
Prints one JSON object with the wall time, records, this process's CPU and its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path

import httpx
import orjson

from arsync.bootstrap import bootstrap
from arsync.config import Settings
from bench.common import erp_pages


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that over
    from the parent at fork, so a child of a large benchmark process would report the parent's."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match, "no VmHWM in /proc/self/status"
    return int(match.group(1)) / 1024


def cpu_seconds() -> float:
    """This process's CPU so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ceiling(base_url: str, token: str, page_size: int) -> dict[str, object]:
    records = 0
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        started, cpu_started = time.perf_counter(), cpu_seconds()
        for entity in ("debtors", "invoices", "payments"):
            for decoded in erp_pages(client, entity, page_size, orjson.loads):
                records += len(decoded[entity])
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    return {"records": records, "wallSeconds": wall, "recordsPerSecond": records / wall, "peakRssMb": peak_rss_mb(),
            "cpuSeconds": round(cpu, 2)}  # fmt: skip


def sync(database_url: str, connection_id: str, full: bool, page_size: int, kind: str) -> dict[str, object]:
    container = bootstrap(Settings(database_url=database_url, sync_page_size=page_size), upgrade_schema=False)
    started, cpu_started = time.perf_counter(), cpu_seconds()
    run = container.sync.run(connection_id, trigger="bench", full=full, kind=kind)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    container.close()
    records = sum(int(stats["records"]) for stats in run.stats.values())
    return {
        "status": run.status,
        "error": run.error,
        "records": records,
        "counts": run.stats,
        "wallSeconds": wall,
        "recordsPerSecond": records / wall if wall else 0.0,
        "peakRssMb": peak_rss_mb(),
        "cpuSeconds": round(cpu, 2),  # while it ran, as wallSeconds
        "report": run.report,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["ceiling", "sync"])
    parser.add_argument("--base-url")
    parser.add_argument("--token", default="ask_bench")
    parser.add_argument("--database-url")
    parser.add_argument("--connection-id")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--reconcile", action="store_true", help="A reconciliation run instead of a sync.")
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()
    if args.mode == "ceiling":
        result: dict[str, object] = dict(ceiling(args.base_url, args.token, args.page_size))
    else:
        kind = "reconcile" if args.reconcile else "sync"
        result = sync(args.database_url, args.connection_id, args.full, args.page_size, kind)
    sys.stdout.write(json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main()
