"""The sync benchmark's correctness check, and what the synced ledger costs in PostgreSQL.

``ledger_equals_erp``: ``arsync export --json`` (run as a user runs it) against every page the
mock ERP lists now, record by record, keyed by ERP id: each debtor's name and email; each
invoice's debtor, number, dates, currency, amounts, status and line amounts; each payment's
invoice, amount and date. Debtors the ERP never listed but invoices name are expected too, and
payments whose invoice the ERP does not list are expected to be kept aside, not in the ledger.

``storage``: bytes of the ledger's tables with their indexes and TOAST, per record synced.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from arsync.db import make_engine
from bench.common import ARSYNC, erp_pages

LEDGER_TABLES = ("customers", "invoices", "invoice_lines", "payments", "parked_payments")
EXAMPLES = 5


def _erp_pages(base_url: str, token: str, entity: str, page_size: int) -> Any:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        # Money comes as JSON numbers: read exactly, as arsync does, not as floats.
        for decoded in erp_pages(client, entity, page_size, partial(json.loads, parse_float=Decimal)):
            yield from decoded[entity]


def _invoice_key(debtor: str | None, number: str, issued: str, due: str, currency: str, total: Any,
                 outstanding: Any, status: str, lines: list[Any]) -> tuple[Any, ...]:  # fmt: skip
    return (debtor, number, issued, due, currency, Decimal(total), Decimal(outstanding), status,
            tuple(Decimal(amount) for amount in lines))  # fmt: skip


def _expected(base_url: str, token: str, page_size: int) -> dict[str, dict[str, tuple[Any, ...]]]:
    debtors = {d["erpDebtorId"]: (d["name"], d.get("email")) for d in _erp_pages(base_url, token, "debtors", page_size)}
    invoices = {}
    for i in _erp_pages(base_url, token, "invoices", page_size):
        invoices[i["erpInvoiceId"]] = _invoice_key(
            i["erpDebtorId"], i["invoiceNumber"], i["issueDate"], i["dueDate"], i["currency"], i["amountTotal"],
            i["amountOutstanding"], i["status"], [line["amount"] for line in i["lines"]],
        )  # fmt: skip
        debtors.setdefault(i["erpDebtorId"], (i.get("debtorName") or i["erpDebtorId"], None))
    payments = {
        p["erpPaymentId"]: (p["erpInvoiceId"], Decimal(p["amount"]), p["paymentDate"])
        for p in _erp_pages(base_url, token, "payments", page_size)
        if p["erpInvoiceId"] in invoices
    }
    return {"debtors": debtors, "invoices": invoices, "payments": payments}


def _ledger_invoice(i: dict[str, Any], debtor_of: dict[str, str]) -> tuple[Any, ...]:
    return _invoice_key(
        debtor_of.get(i["customerId"]), i["invoiceNumber"], i["issueDate"], i["dueDate"], i["currency"],
        i["amountTotal"], i["amountOutstanding"], i["erpStatus"], [line["amount"] for line in i["lines"]],
    )  # fmt: skip


def _exported(database_url: str, tenant: str, environment: str) -> dict[str, dict[str, tuple[Any, ...]]]:
    env = dict(os.environ, ARSYNC_DATABASE_URL=database_url)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledger.json"
        with path.open("wb") as out:
            command = [ARSYNC, "export", "--tenant", tenant, "--environment", environment, "--json"]
            subprocess.run(command, env=env, stdout=out, check=True)
        ledger = orjson.loads(path.read_bytes())
    debtor_of = {c["id"]: c["erpDebtorId"] for c in ledger["customers"]}
    found: dict[str, dict[str, tuple[Any, ...]]] = {
        "debtors": {c["erpDebtorId"]: (c["name"], c["email"]) for c in ledger["customers"]},
        "invoices": {i["erpInvoiceId"]: _ledger_invoice(i, debtor_of) for i in ledger["invoices"]},
        "payments": {
            p["erpPaymentId"]: (p["erpInvoiceId"], Decimal(p["amount"]), p["paymentDate"]) for p in ledger["payments"]
        },
    }
    for entity, rows in (("debtors", ledger["customers"]), ("invoices", ledger["invoices"]),
                         ("payments", ledger["payments"])):  # fmt: skip
        if len(found[entity]) != len(rows):
            found[entity]["<duplicate ERP ids>"] = (len(rows) - len(found[entity]),)
    return found


def ledger_equals_erp(
    base_url: str, token: str, page_size: int, database_url: str, tenant: str, environment: str
) -> dict[str, Any]:
    """Counts per entity and the differences (a few examples of each kind); ``equal`` says it all."""
    expected = _expected(base_url, token, page_size)
    found = _exported(database_url, tenant, environment)
    report: dict[str, Any] = {"equal": True}
    for entity, want in expected.items():
        got = found[entity]
        missing = [key for key in want if key not in got]
        extra = [key for key in got if key not in want]
        different = [key for key, value in want.items() if key in got and got[key] != value]
        report[entity] = {"erp": len(want), "ledger": len(got), "missing": len(missing), "extra": len(extra),
                          "different": len(different),
                          "examples": [f"missing {k}" for k in missing[:EXAMPLES]]
                          + [f"extra {k}" for k in extra[:EXAMPLES]]
                          + [f"{k}: ERP {want[k]} ≠ ledger {got[k]}" for k in different[:EXAMPLES]]}  # fmt: skip
        report["equal"] = report["equal"] and not (missing or extra or different)
    return report


def storage(database_url: str, records: int) -> dict[str, Any]:
    """The ledger tables' size in PostgreSQL (heap, indexes, TOAST), in all and per record."""
    engine = make_engine(database_url)
    with engine.connect() as connection:
        sizes = {
            table: int(connection.execute(sa.text("SELECT pg_total_relation_size(:t)"), {"t": table}).scalar_one())
            for table in LEDGER_TABLES
        }
        indexes = int(connection.execute(sa.text(
            "SELECT sum(pg_indexes_size(t)) FROM unnest(CAST(:tables AS regclass[])) AS t"
        ), {"tables": list(LEDGER_TABLES)}).scalar_one())  # fmt: skip
    engine.dispose()
    total = sum(sizes.values())
    return {"bytes": total, "indexBytes": indexes, "records": records, "bytesPerRecord": round(total / records, 1),
            "byTable": sizes}  # fmt: skip
