"""Imports every model so that ``Base.metadata`` is complete (used by Alembic and tests)."""

from arsync.db import Base
from arsync.erp.models import Connection, SyncRun
from arsync.ledger.models import CashApplication, Customer, Invoice, InvoiceLine, Payment
from arsync.tenancy.models import ApiKey, Environment, Tenant

__all__ = [
    "ApiKey", "Base", "CashApplication", "Connection", "Customer", "Environment", "Invoice", "InvoiceLine",
    "Payment", "SyncRun", "Tenant",
]  # fmt: skip
