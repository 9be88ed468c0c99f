"""API benchmark: real routes against a bare endpoint on the same server, PostgreSQL behind it.

``arsync serve`` runs in its own process; bench/load.py drives it from another at concurrency
32. The bare endpoint is /api/v1/health (no auth, no database).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from arsync.bootstrap import bootstrap
from arsync.config import Settings
from arsync.db import transaction
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.tenancy import service as tenancy
from arsync.tenancy.scope import Scope
from bench.common import ARSYNC, ROOT, Database, free_port, wait_until_up

CUSTOMERS = 1000


def _seed(database_url: str, secret_key: str) -> tuple[Any, str]:
    container = bootstrap(Settings(database_url=database_url, secret_key=secret_key))
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, "api-bench", "prod")
        scope = Scope(created.tenant_id, created.environment_id)
        first = None
        for n in range(CUSTOMERS):
            customer = ledger.create_customer(
                session, scope, schemas.CustomerCreate(name=f"Customer {n}", email=f"c{n}@example.com")
            )
            first = first or customer.id
    # Production's autovacuum keeps planner statistics; a database seeded a moment ago has none
    # (and autovacuum may be off), so the planner would sort the whole table for every page.
    with container.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE")
    container.close()
    assert first is not None
    return created, first


def _load(url: str, headers: dict[str, str], seconds: float) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.load", url, "--concurrency", "32", "--seconds", str(seconds)]
    for name, value in headers.items():
        args += ["--header", f"{name}: {value}"]
    output = subprocess.run(args, cwd=ROOT.parent, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def run(seconds: float = 10.0) -> dict[str, Any]:
    secret_key = os.environ["ARSYNC_SECRET_KEY"]
    database = Database()
    server = None
    try:
        created, customer_id = _seed(database.url, secret_key)
        port = free_port()
        env = dict(os.environ, ARSYNC_DATABASE_URL=database.url)
        server = subprocess.Popen(
            [ARSYNC, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/api/v1/health", server, "arsync serve")
        headers = created.headers
        results = {
            "bare": _load(f"{base}/api/v1/health", {}, seconds),
            "getCustomer": _load(f"{base}/api/v1/customers/{customer_id}", headers, seconds),
            "listCustomers100": _load(f"{base}/api/v1/customers?limit=100", headers, seconds),
        }
        for name, figures in results.items():
            print(
                f"  {name}: {figures['requestsPerSecond']:,.0f} req/s, p50 {figures['p50Ms']:.1f} ms, "
                f"p99 {figures['p99Ms']:.1f} ms, errors {figures['errors']}",
                flush=True,
            )
        bare = results["bare"]["requestsPerSecond"]
        results["ratios"] = {
            "getCustomerVsBare": results["getCustomer"]["requestsPerSecond"] / bare,
            "listCustomers100VsBare": results["listCustomers100"]["requestsPerSecond"] / bare,
        }
        return results
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        database.drop()
