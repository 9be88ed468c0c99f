"""The mock ERP's data: deterministic records of any size, generated on demand.

Nothing is materialised: record ``i`` is computed from ``(seed, i)`` whenever a page asks for
it, so a 500,000-invoice ERP costs no memory. Changes made through :meth:`MockErpData.mutate`
and records created by pushes are the only state kept, with the deletions and unannounced
changes a test makes (:meth:`MockErpData.delete`, :meth:`MockErpData.change_unannounced`).

The data deliberately contains the two edge cases the sync must handle:

* every 50th invoice belongs to a debtor that ``/debtors/list`` does not return;
* every 100th payment points at an invoice that does not exist.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
ORPHAN_INVOICE_EVERY = 50
UNMATCHED_PAYMENT_EVERY = 100
THREE_DECIMAL_EVERY = 7

_NAMES = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Tyrell", "Cyberdyne")
_SUFFIXES = ("Ltd", "LLC", "Holdings", "Trading", "Group", "Partners")
_SERVICES = ("Consulting", "Licences", "Support", "Hardware", "Training", "Hosting")
_ENTITIES = ("debtors", "invoices", "payments")
Record = dict[str, Any]


class KeyReused(ValueError):
    """An Idempotency-Key came again with a different request body."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for a different request")


def _mix(index: int, seed: int, salt: int = 0) -> int:
    """A cheap deterministic hash of (index, seed, salt) in [0, 2**32)."""
    value = (index * 2654435761 + seed * 40503 + salt * 2246822519) & 0xFFFFFFFF
    value ^= value >> 15
    value = (value * 2246822519) & 0xFFFFFFFF
    return value ^ (value >> 13)


def debtor_id(index: int) -> str:
    return f"DEB-{index + 1:06d}"


def invoice_id(index: int) -> str:
    return f"INV-{index + 1:07d}"


def payment_id(index: int) -> str:
    return f"PAY-{index + 1:07d}"


@dataclass
class _Change:
    version: int
    modified_at: datetime


@dataclass
class MockErpData:
    """A deterministic ERP data set plus the changes made to it since start-up."""

    debtors: int = 50
    invoices: int = 200
    payments: int = 150
    seed: int = 1
    # Put into the ids of pushed records, so separate runs of an in-memory mock never hand out
    # the same id twice (the demo starts a fresh mock each run against the same ledger).
    push_id_tag: str = ""
    _changes: dict[str, dict[int, _Change]] = field(default_factory=lambda: {entity: {} for entity in _ENTITIES})
    # Records deleted in the ERP. The Nudge REST contract's list endpoints have no delete signal
    # (no tombstones, no status for "deleted"); what a real middleware does with a deleted record
    # is unknown, so the mock takes the case reconciliation must catch: it is simply not listed.
    _deleted: dict[str, set[int]] = field(default_factory=lambda: {entity: set() for entity in _ENTITIES})
    _pushed_invoices: list[Record] = field(default_factory=list)
    _pushed_invoice_times: list[datetime] = field(default_factory=list)
    _pushed_by_number: dict[str, str] = field(default_factory=dict)
    _pushed_ids: set[str] = field(default_factory=set)
    _pushed_payments: list[Record] = field(default_factory=list)
    _pushed_payment_times: list[datetime] = field(default_factory=list)
    _idempotency_keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # key: (body digest, id)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # Record generation ----------------------------------------------------------------

    def debtor(self, index: int) -> Record:
        change = self._changes["debtors"].get(index)
        version = change.version if change else 0
        base = _NAMES[_mix(index, self.seed) % len(_NAMES)]
        return {
            "erpDebtorId": debtor_id(index),
            "name": self._debtor_name(index) + (f" (rev {version})" if version else ""),
            "email": f"ar{index + 1}@{base.lower()}.example",
        }

    def _debtor_name(self, index: int) -> str:
        base = _NAMES[_mix(index, self.seed) % len(_NAMES)]
        suffix = _SUFFIXES[_mix(index, self.seed, 1) % len(_SUFFIXES)]
        return f"{base} {suffix} {index + 1}"

    def _debtor_of_invoice(self, index: int) -> tuple[str, str]:
        if index % ORPHAN_INVOICE_EVERY == ORPHAN_INVOICE_EVERY - 1:
            return f"DEB-X{index + 1:07d}", f"Walk-in Customer {index + 1}"
        debtor_index = _mix(index, self.seed, 2) % max(self.debtors, 1)
        return debtor_id(debtor_index), self._debtor_name(debtor_index)

    def invoice(self, index: int) -> Record:
        if index >= self.invoices:
            return self._pushed_invoices[index - self.invoices]
        change = self._changes["invoices"].get(index)
        version = change.version if change else 0
        three_decimals = index % THREE_DECIMAL_EVERY == THREE_DECIMAL_EVERY - 1
        currency, places = ("KWD", 3) if three_decimals else ("ZAR", 2)
        unit = Decimal(10) ** -places
        lines: list[Record] = []
        amounts: list[Decimal] = []
        for position in range(2):
            quantity = Decimal(1 + _mix(index, self.seed, 10 + position) % 10)
            unit_price = Decimal(100 + _mix(index, self.seed, 20 + position) % 99_900) * unit
            lines.append(
                {
                    "description": _SERVICES[(index + position) % len(_SERVICES)],
                    "quantity": quantity,
                    "unitPrice": unit_price,
                    "amount": quantity * unit_price,
                }
            )
            amounts.append(quantity * unit_price)
        total = sum(amounts, Decimal(0))
        paid_share = (_mix(index, self.seed, 3) + version) % 3  # 0: open, 1: part-paid, 2: paid
        outstanding = total if paid_share == 0 else (Decimal(0) if paid_share == 2 else (total / 2).quantize(unit))
        issue = self._issue_date(index)
        debtor, debtor_name = self._debtor_of_invoice(index)
        return {
            "erpInvoiceId": invoice_id(index),
            "invoiceNumber": invoice_id(index),
            "erpDebtorId": debtor,
            "debtorName": debtor_name,
            "issueDate": issue.isoformat(),
            "dueDate": (issue + timedelta(days=30)).isoformat(),
            "currency": currency,
            "amountTotal": total,
            "amountOutstanding": outstanding,
            "status": "PAID" if outstanding == 0 else "AUTHORISED",
            "lines": lines,
        }

    def _issue_date(self, invoice_index: int) -> date:
        return date(2025, 1, 1) + timedelta(days=_mix(invoice_index, self.seed, 4) % 365)

    def payment(self, index: int) -> Record:
        if index >= self.payments:
            return self._pushed_payments[index - self.payments]
        change = self._changes["payments"].get(index)
        version = change.version if change else 0
        if index % UNMATCHED_PAYMENT_EVERY == UNMATCHED_PAYMENT_EVERY - 1 or self.invoices == 0:
            target = f"INV-MISSING-{index + 1:07d}"
            places = 2
            paid_on = BASE_TIME.date() - timedelta(days=1 + _mix(index, self.seed, 7) % 300)
        else:
            invoice_index = _mix(index, self.seed, 5) % self.invoices
            target = invoice_id(invoice_index)
            places = 3 if invoice_index % THREE_DECIMAL_EVERY == THREE_DECIMAL_EVERY - 1 else 2
            # Paid on or after the invoice was issued, within 60 days.
            paid_on = self._issue_date(invoice_index) + timedelta(days=_mix(index, self.seed, 7) % 60)
        amount = Decimal(1_000 + _mix(index, self.seed, 6) % 500_000 + version) * Decimal(10) ** -places
        return {
            "erpPaymentId": payment_id(index),
            "erpInvoiceId": target,
            "amount": amount,
            "paymentDate": paid_on.isoformat(),
        }

    # Listing -------------------------------------------------------------------------

    def size(self, entity: str) -> int:
        if entity == "debtors":
            return self.debtors
        if entity == "invoices":
            return self.invoices + len(self._pushed_invoices)
        return self.payments + len(self._pushed_payments)

    def _generated(self, entity: str) -> int:
        return {"debtors": self.debtors, "invoices": self.invoices, "payments": self.payments}[entity]

    def record(self, entity: str, index: int) -> Record:
        if entity == "debtors":
            return self.debtor(index)
        if entity == "invoices":
            return self.invoice(index)
        return self.payment(index)

    def _modified_since(self, entity: str, since: datetime) -> list[int]:
        """Indices of records created or changed after ``since``, in index order."""
        changed = [i for i, c in self._changes[entity].items() if c.modified_at > since]
        generated = self._generated(entity)
        times = {"invoices": self._pushed_invoice_times, "payments": self._pushed_payment_times}
        pushed = [generated + n for n, t in enumerate(times.get(entity, [])) if t > since]
        return sorted(changed) + pushed

    def page(self, entity: str, page: int, limit: int, modified_since: datetime | None) -> tuple[list[Record], bool]:
        """Records of one page and whether more follow."""
        start = (page - 1) * limit
        with self._lock:
            deleted = self._deleted[entity]
            if modified_since is None or modified_since < BASE_TIME:
                size = self.size(entity)
                listed: range | list[int] = range(size)
                if deleted:
                    listed = [i for i in listed if i not in deleted]
                    size = len(listed)
                indices: range | list[int] = listed[start : start + limit]
            else:
                matching = [i for i in self._modified_since(entity, modified_since) if i not in deleted]
                size = len(matching)
                indices = matching[start : start + limit]
            records = [self.record(entity, i) for i in indices]
        return records, start + limit < size

    # Changes -------------------------------------------------------------------------

    def mutate(self, counts: dict[str, int], now: datetime | None = None) -> dict[str, int]:
        """Change ``counts[entity]`` records of each entity, spread over the data set."""
        now = now or datetime.now(UTC)
        done: dict[str, int] = {}
        with self._lock:
            for entity, count in counts.items():
                if entity not in _ENTITIES:
                    raise ValueError(f"unknown entity {entity!r}; use one of {', '.join(_ENTITIES)}")
                total = self._generated(entity)
                count = min(max(count, 0), total)
                step = max(total // count, 1) if count else 1
                for n in range(count):
                    index = (n * step) % total
                    previous = self._changes[entity].get(index)
                    self._changes[entity][index] = _Change((previous.version if previous else 0) + 1, now)
                done[entity] = count
        return done

    def delete(self, entity: str, indices: list[int]) -> None:
        """Records deleted in the ERP: they stop being listed, with or without ``modifiedSince``."""
        with self._lock:
            self._deleted[entity].update(indices)

    def restore(self, entity: str, indices: list[int]) -> None:
        """Deleted records listed again, as they were (their modification time unchanged)."""
        with self._lock:
            self._deleted[entity].difference_update(indices)

    def change_unannounced(self, entity: str, indices: list[int]) -> None:
        """Change records without moving their modification time, as an ERP that edits a record
        without stamping it does: an incremental sync cannot see it, a full walk can. (Whether any
        real middleware's ``modifiedSince`` misses edits is unknown; the contract does not say
        which changes must move it, so the mock allows the worst case.)"""
        with self._lock:
            for index in indices:
                previous = self._changes[entity].get(index)
                self._changes[entity][index] = _Change((previous.version if previous else 0) + 1, BASE_TIME)

    def knows_debtor(self, erp_debtor_id: str) -> bool:
        if erp_debtor_id.startswith("DEB-X"):
            return erp_debtor_id[5:].isdigit()
        suffix = erp_debtor_id.removeprefix("DEB-")
        return suffix.isdigit() and 1 <= int(suffix) <= self.debtors

    def knows_invoice(self, erp_invoice_id: str) -> bool:
        suffix = erp_invoice_id.removeprefix("INV-")
        if suffix.isdigit() and len(suffix) == 7:
            return 1 <= int(suffix) <= self.invoices
        return erp_invoice_id in self._pushed_ids

    @staticmethod
    def _digest(request: Record) -> str:
        return hashlib.blake2b(orjson.dumps(request, default=str, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def _replayed(self, key: str | None, request: Record) -> str | None:
        """The id already given for ``key`` (the caller holds the lock); KeyReused for another body."""
        seen = self._idempotency_keys.get(key) if key is not None else None
        if seen is None:
            return None
        if seen[0] != self._digest(request):
            raise KeyReused(key or "")
        return seen[1]

    def _remember(self, key: str | None, request: Record, erp_id: str) -> None:
        if key is not None:
            self._idempotency_keys[key] = (self._digest(request), erp_id)

    def push_invoice(
        self, request: Record, now: datetime | None = None, *, idempotent: bool = True, key: str | None = None
    ) -> tuple[str, bool]:
        """Create the invoice, or return the id of the one with the same number (seed 000,
        "Idempotency": return the existing erpInvoiceId) or given for the same Idempotency-Key."""
        with self._lock:
            existing = None
            if idempotent:
                existing = self._replayed(key, request) or self._pushed_by_number.get(request["invoiceNumber"])
            if existing:
                self._remember(key, request, existing)
                return existing, False
            erp_id = f"INV-ERP-{self.push_id_tag}{len(self._pushed_invoices) + 1:06d}"
            lines = request["lines"]
            total = sum((line["amount"] for line in lines), Decimal(0))
            record = {
                "erpInvoiceId": erp_id,
                "invoiceNumber": request["invoiceNumber"],
                "erpDebtorId": request["erpDebtorId"],
                "debtorName": None,
                "issueDate": request["issueDate"],
                "dueDate": request["dueDate"],
                "currency": request["currency"],
                "amountTotal": total,
                "amountOutstanding": total,
                "status": request.get("status") or "AUTHORISED",
                "lines": lines,
            }
            self._pushed_invoices.append(record)
            self._pushed_invoice_times.append(now or datetime.now(UTC))
            self._pushed_by_number[request["invoiceNumber"]] = erp_id
            self._pushed_ids.add(erp_id)
            if idempotent:
                self._remember(key, request, erp_id)
            return erp_id, True

    def push_payment(self, request: Record, now: datetime | None = None, *, key: str | None = None) -> tuple[str, bool]:
        """Create the payment; a retry under the same Idempotency-Key returns the same id.

        Nothing else identifies a payment: two equal payments on one day are two payments. (Seed
        000's idempotency rule names only the invoice number; how a middleware should recognise
        a repeated payment is otherwise unknown, so the mock uses the key arsync sends.)
        """
        with self._lock:
            existing = self._replayed(key, request)
            if existing:
                return existing, False
            erp_id = f"PAY-ERP-{self.push_id_tag}{len(self._pushed_payments) + 1:06d}"
            self._pushed_payments.append(
                {
                    "erpPaymentId": erp_id,
                    "erpInvoiceId": request["erpInvoiceId"],
                    "amount": request["amount"],
                    "paymentDate": request["paymentDate"],
                }
            )
            self._pushed_payment_times.append(now or datetime.now(UTC))
            self._remember(key, request, erp_id)
            return erp_id, True

    def stats(self) -> dict[str, int]:
        return {
            "debtors": self.size("debtors"),
            "invoices": self.size("invoices"),
            "payments": self.size("payments"),
            "pushedInvoices": len(self._pushed_invoices),
            "pushedPayments": len(self._pushed_payments),
            "changed": sum(len(c) for c in self._changes.values()),
        }
