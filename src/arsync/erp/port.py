"""The interface every ERP transport implements (REST middleware, native connectors).

Sync and push code depend on :class:`ErpConnector` only, never on a transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Literal, Protocol, TypeVar, runtime_checkable

from arsync.erp import contract

Entity = Literal["debtors", "invoices", "payments"]
ENTITIES: tuple[Entity, ...] = ("debtors", "invoices", "payments")
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of records as the ERP returned it."""

    number: int
    items: list[T]
    has_more: bool
    # ERP ids of records the ERP reports as removed (a Xero payment with Status DELETED). The REST
    # contract has no delete signal, so its pages leave this empty.
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PushAttempt:
    """What a connector needs to push without duplicates.

    ``idempotency_key`` is the same on every attempt of one push. Connectors send a push once
    per call; deciding whether an earlier attempt reached the ERP, and looking it up, is the
    push service's (see ``arsync.erp.push``).
    """

    idempotency_key: str


@dataclass(frozen=True)
class NewDebtor:
    """A customer made in arsync, to be created as a debtor in the ERP.

    ``reference`` is arsync's customer id, stored on the ERP's record so that after an uncertain
    failure the record can be found again instead of made twice.
    """

    reference: str
    name: str
    email: str | None


@runtime_checkable
class CreatesDebtors(Protocol):
    """What a connector that can create debtors implements besides :class:`ErpConnector` (Xero's
    contacts; the REST contract has no such endpoint)."""

    def find_debtor(self, reference: str) -> str | None: ...

    def create_debtor(self, debtor: NewDebtor, attempt: PushAttempt) -> str: ...


class ErpConnector(Protocol):
    """List and push operations against one ERP connection."""

    def health(self) -> contract.HealthResponse: ...

    def list_debtors(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Debtor]: ...

    def list_invoices(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Invoice]: ...

    def list_payments(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Payment]: ...

    def push_invoice(self, request: contract.InvoicePushRequest, attempt: PushAttempt) -> str: ...

    def push_payment(self, request: contract.PaymentPushRequest, attempt: PushAttempt) -> str: ...

    def close(self) -> None: ...
