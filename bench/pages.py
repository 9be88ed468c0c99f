"""Ledger pages on a large ledger: 500,000 invoices of 50,000 customers in five currencies, on
PostgreSQL, served by ``arsync serve`` in its own process and read by a signed-in browser session.

Measured, sequentially (one person at the keyboard): the invoice list as it opens (newest
first), sorted and filtered, overdue only, searched by customer, and its last page; the
aging report, a currency over time, and one customer's statement; and the CSV export of one
currency's 100,000 invoices, streamed, with the server's peak RSS before and after
(``VmHWM``), against an export ten times smaller.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from arsync.accounts import service as accounts
from arsync.bootstrap import bootstrap
from arsync.config import Settings
from arsync.db import transaction
from arsync.tenancy import service as tenancy
from bench.common import ARSYNC, Database, free_port, wait_until_up

INVOICES, CUSTOMERS = 500_000, 50_000
CURRENCIES = ("USD", "EUR", "ZAR", "KWD", "AED")  # 100,000 invoices each
EMAIL, PASSWORD = "bench@example.com", "a long bench passphrase"
RUNS = 15

PAGES = {
    "invoicesNewestFirst": "/invoices",
    "invoicesSortedFiltered": "/invoices?status=FINALIZED&currency=USD&sort=outstanding&order=desc",
    "invoicesOverdueByDue": "/invoices?overdue=1&sort=due&order=asc",
    "invoicesDueRange": "/invoices?due_from=2026-01-01&due_to=2026-01-31&sort=customer&order=asc",
    "invoicesSearchCustomer": "/invoices?q=Customer%2012345",
    "invoicesLastPage": "/invoices?page=20000",
    "agingReport": "/reports/aging",
    "trendReport": "/reports/trend",
    "customerStatement": f"/customers/cust_{12345:022x}/statement",  # the seed's ids, as _SEED makes them
}

# Rows made in PostgreSQL itself: a Python loop over 500k ORM objects would take longer than the
# measurements. Invoice n belongs to customer n mod 50,000, is issued over two years, due 30
# days later; a fifth is paid, a tenth drafts, a fifth part paid, in every currency alike.
_SEED = [
    """INSERT INTO customers (id, tenant_id, environment_id, name, email, metadata, status, created_at, updated_at)
       SELECT 'cust_' || lpad(to_hex(g), 22, '0'), :tenant, :env, 'Customer ' || g, 'c' || g || '@example.com',
              '{}'::jsonb, 'active', now(), now()
       FROM generate_series(0, :customers - 1) AS g""",
    """INSERT INTO invoices (id, tenant_id, environment_id, customer_id, invoice_number, issue_date, due_date, currency,
                             amount_total, amount_outstanding, status, created_at, updated_at)
       SELECT 'inv_' || lpad(to_hex(g), 22, '0'), :tenant, :env, 'cust_' || lpad(to_hex(g % :customers), 22, '0'),
              'INV-' || lpad(g::text, 7, '0'), date '2025-01-01' + (g % 730), date '2025-01-31' + (g % 730),
              (ARRAY['USD','EUR','ZAR','KWD','AED'])[1 + (g / 5) % 5], 100 + (g % 9973) / 10.0,
              CASE WHEN g % 5 = 0 THEN 0 WHEN g % 5 = 1 THEN (100 + (g % 9973) / 10.0) / 2
                   ELSE 100 + (g % 9973) / 10.0 END,
              CASE WHEN g % 5 = 0 THEN 'PAID' WHEN g % 10 = 3 THEN 'DRAFT' ELSE 'FINALIZED' END, now(), now()
       FROM generate_series(0, :invoices - 1) AS g""",
]


def _seed(database_url: str, secret_key: str) -> None:
    container = bootstrap(Settings(database_url=database_url, secret_key=secret_key))
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, "pages-bench", "prod")
        accounts.create_user(session, created.tenant_id, EMAIL, PASSWORD)
        values = {"tenant": created.tenant_id, "env": created.environment_id, "customers": CUSTOMERS,
                  "invoices": INVOICES}  # fmt: skip
        for statement in _SEED:
            session.execute(text(statement), values)
    with container.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")  # as production's autovacuum would have
    container.close()


def _sign_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=120)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, "no sign-in form"
    answer = client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token.group(1)})
    assert answer.status_code == 303, answer.text
    return client


def _timed(client: httpx.Client, path: str) -> dict[str, Any]:
    client.get(path).raise_for_status()  # a warm cache, as the second look at a page has
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return {"p50Ms": round(statistics.median(times), 1), "maxMs": round(max(times), 1), "runs": RUNS}


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match
    return int(match.group(1)) / 1024


def _export(client: httpx.Client, path: str, pid: int) -> dict[str, Any]:
    before = _peak_rss_mb(pid)
    started = time.perf_counter()
    rows, size, first_byte = -1, 0, None  # the header line is not a row
    with client.stream("GET", path) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_bytes():
            first_byte = first_byte or time.perf_counter() - started
            size += len(chunk)
            rows += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    return {"rows": rows, "megabytes": round(size / 1e6, 1), "seconds": round(seconds, 2),
            "firstByteMs": round((first_byte or 0) * 1000, 1), "rowsPerSecond": round(rows / seconds),
            "peakRssBeforeMb": round(before, 1), "peakRssAfterMb": round(_peak_rss_mb(pid), 1)}  # fmt: skip


def run() -> dict[str, Any]:
    database = Database()
    server = None
    try:
        started = time.perf_counter()
        _seed(database.url, os.environ["ARSYNC_SECRET_KEY"])
        print(f"  seeded {INVOICES:,} invoices in {time.perf_counter() - started:.0f}s", flush=True)
        port = free_port()
        server = subprocess.Popen(
            [ARSYNC, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"],
            env=dict(os.environ, ARSYNC_DATABASE_URL=database.url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/api/v1/health", server, "arsync serve")
        client = _sign_in(base)
        results: dict[str, Any] = {"invoices": INVOICES, "customers": CUSTOMERS}
        for name, path in PAGES.items():
            results[name] = _timed(client, path)
            print(f"  {name}: p50 {results[name]['p50Ms']:.0f} ms (max {results[name]['maxMs']:.0f})", flush=True)
        small = _export(client, "/invoices.csv?currency=USD&due_to=2025-03-14", server.pid)
        large = _export(client, "/invoices.csv?currency=USD", server.pid)
        results["csvExportSmall"], results["csvExportLarge"] = small, large
        for name, figures in (("small", small), ("large", large)):
            print(f"  CSV {name}: {figures['rows']:,} rows, {figures['megabytes']} MB in {figures['seconds']} s, "
                  f"peak RSS {figures['peakRssBeforeMb']} → {figures['peakRssAfterMb']} MB", flush=True)  # fmt: skip
        client.close()
        pages = [figures["p50Ms"] for name, figures in results.items() if name in PAGES]
        results["targets"] = {
            "every page p50 < 300 ms": max(pages) < 300,
            "export of 100k rows grows peak RSS < 50 MB": large["peakRssAfterMb"] - large["peakRssBeforeMb"] < 50,
        }
        return results
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        database.drop()
