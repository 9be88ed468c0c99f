"""Push benchmark: dispatch invoices through the API and time how fast they reach the ERP.

``arsync serve --no-worker``, one ``arsync worker`` and the mock ERP each run as their own
process on PostgreSQL. The invoices are created and finalized beforehand; the measured part
is POST /api/v1/invoices/{id}/dispatch for each, from 8 concurrent clients.

Latency is dispatch to push: from the invoice's ``dispatchedAt`` to its push's ``succeededAt``,
both stamped by the database side of arsync.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from arsync.bootstrap import bootstrap
from arsync.config import Settings
from arsync.db import transaction
from arsync.erp.models import Push
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import Customer, Invoice
from arsync.tenancy import service as tenancy
from arsync.tenancy.scope import Scope
from bench.common import ARSYNC, Database, MockErpProcess, free_port, wait_until_up

INVOICES = 2000
CLIENTS = 8


def _seed(database_url: str, mock_url: str, invoices: int) -> tuple[Any, list[str]]:
    container = bootstrap(Settings(database_url=database_url))
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, "push-bench", "prod")
    scope = Scope(created.tenant_id, created.environment_id)
    saved, _ = container.connections.save_rest(scope.tenant_id, scope.environment_id, mock_url, "090")
    assert container.sync.run(saved.id).status == "SUCCEEDED"
    ids: list[str] = []
    with transaction(container.session_factory) as session:
        customers = session.scalars(select(Customer.id).where(Customer.erp_debtor_id.is_not(None))).all()
        for n in range(invoices):
            invoice = ledger.create_invoice(
                session,
                scope,
                schemas.InvoiceCreate(
                    customer_id=customers[n % len(customers)],
                    invoice_number=f"AR-BENCH-{n:06d}",
                    issue_date=date(2026, 3, 1),
                    due_date=date(2026, 3, 31),
                    currency="ZAR",
                    lines=[schemas.LineIn(description="Work", quantity=Decimal(1), unit_price=Decimal("99.95"))],
                ),
            )
            ledger.finalize_invoice(session, scope, invoice.id)
            ids.append(invoice.id)
    container.close()
    return created, ids


async def _dispatch_all(base: str, headers: dict[str, str], invoice_ids: list[str]) -> int:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for invoice_id in invoice_ids:
        queue.put_nowait(invoice_id)
    failures = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            invoice_id = queue.get_nowait()
            response = await client.post(f"{base}/api/v1/invoices/{invoice_id}/dispatch")
            failures += response.status_code != 200

    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(CLIENTS)))
    return failures


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)]


def run(invoices: int = INVOICES, timeout: float = 600) -> dict[str, Any]:
    database = Database()
    mock = MockErpProcess({"debtors": 200, "invoices": 0, "payments": 0})
    processes: list[subprocess.Popen[bytes]] = []
    try:
        created, invoice_ids = _seed(database.url, mock.url, invoices)
        env = dict(os.environ, ARSYNC_DATABASE_URL=database.url)
        port = free_port()
        server = subprocess.Popen(
            [ARSYNC, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(server)
        processes.append(
            subprocess.Popen([ARSYNC, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/api/v1/health", server, "arsync serve")
        headers = created.headers
        started = time.monotonic()
        failures = asyncio.run(_dispatch_all(base, headers, invoice_ids))
        dispatch_seconds = time.monotonic() - started

        container = bootstrap(Settings(database_url=database.url), upgrade_schema=False)
        deadline = time.monotonic() + timeout
        while True:
            with container.session_factory() as session:
                rows = session.execute(
                    select(Invoice.dispatched_at, Push.succeeded_at, Push.status).join(
                        Push, Push.invoice_id == Invoice.id
                    )
                ).all()
            if sum(r.status != "PENDING" for r in rows) >= invoices or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        container.close()
        succeeded = [r for r in rows if r.status == "SUCCEEDED"]
        latencies = [(r.succeeded_at - r.dispatched_at).total_seconds() * 1000 for r in succeeded]
        first = min(r.dispatched_at for r in rows)
        last = max(r.succeeded_at for r in succeeded)
        pushed_in_erp = httpx.get(f"{mock.url}/_mock/state").json()["data"]["pushedInvoices"]
        p50, p99 = _percentile(latencies, 0.50), _percentile(latencies, 0.99)
        result = {
            "invoices": invoices,
            "dispatchFailures": failures,
            "dispatchesPerSecond": invoices / dispatch_seconds,
            "pushesSucceeded": len(succeeded),
            "pushesLost": invoices - len(succeeded),
            "invoicesInErp": pushed_in_erp,
            "pushesPerSecond": len(succeeded) / (last - first).total_seconds(),
            "latencyP50Ms": p50,
            "latencyP99Ms": p99,
            "p99OverP50": p99 / p50,
        }
        print(
            f"  {invoices} dispatches at {result['dispatchesPerSecond']:.0f}/s; pushed {len(succeeded)} "
            f"({pushed_in_erp} in the ERP) at {result['pushesPerSecond']:.0f}/s; "
            f"latency p50 {p50:.0f} ms, p99 {p99:.0f} ms ({p99 / p50:.1f}x)",
            flush=True,
        )
        return result
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)
        mock.stop()
        database.drop()
