"""Imports every model so that ``Base.metadata`` is complete (used by Alembic and tests)."""

from arsync.accounts.models import UiSession, User
from arsync.db import Base
from arsync.erp.models import Connection, Push, SyncRun
from arsync.ledger.models import CashApplication, Customer, Invoice, InvoiceLine, Payment
from arsync.nomod.models import EntityIntegrationMapping, NomodConnection
from arsync.notify.models import NotificationDelivery, NotificationEndpoint
from arsync.sandbox.models import SandboxCheckResult, SandboxRun
from arsync.tenancy.models import ApiKey, Environment, Tenant

__all__ = [
    "ApiKey", "Base", "CashApplication", "Connection", "Customer", "EntityIntegrationMapping", "Environment",
    "Invoice", "InvoiceLine", "NomodConnection", "NotificationDelivery", "NotificationEndpoint", "Payment", "Push",
    "SandboxCheckResult", "SandboxRun", "SyncRun", "Tenant", "UiSession", "User",
]  # fmt: skip
