"""ERP connection changes made inside the caller's transaction: the REST connection's settings,
its middleware key, account codes and the recorded health. ``erp.flows`` owns the transactions
and the calls to the ERP."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from arsync.config import new_token
from arsync.db import utcnow
from arsync.erp.models import Connection
from arsync.errors import ConnectorError, InvalidInput, InvalidState, NotApplicable, NotFound
from arsync.tenancy.scope import Scope, get_scoped
from arsync.vault import Vault, mask

MIDDLEWARE_KEY_PREFIX = "ask"


def clean_account_code(code: str | None, field: str = "bankAccountCode") -> str | None:
    """An ERP account code as given, trimmed; ``field`` names it in the error."""
    if code is None:
        return None
    code = code.strip()
    if not code or len(code) > 50:
        raise InvalidInput(f"{field} must be 1 to 50 characters", details={"field": field})
    return code


def get_connection(session: Session, connection_id: str, scope: Scope | None) -> Connection:
    """The connection in ``scope`` (the caller's tenant and environment); None only for the operator's CLI."""
    if scope is not None:
        return get_scoped(session, Connection, connection_id, scope, "connection")
    connection = session.get(Connection, connection_id)
    if connection is None:
        raise NotFound(f"connection {connection_id} not found")
    return connection


def rest_connection(session: Session, scope: Scope) -> Connection | None:
    """The environment's REST connection (there is at most one)."""
    return session.scalar(
        select(Connection).where(
            Connection.tenant_id == scope.tenant_id,
            Connection.environment_id == scope.environment_id,
            Connection.transport == "rest",
        )
    )


def save_rest(
    session: Session, scope: Scope, base_url: str, bank_account_code: str | None, *, vault: Vault
) -> tuple[Connection, str | None]:
    """Create the environment's REST connection, or update its URL and bank code (``base_url``
    already checked). Returns the connection and, on creation, the generated key: the only time
    it is ever shown."""
    bank_account_code = clean_account_code(bank_account_code)
    connection = rest_connection(session, scope)
    key = None
    if connection is None:
        key = new_token(MIDDLEWARE_KEY_PREFIX)
        connection = Connection(
            tenant_id=scope.tenant_id,
            environment_id=scope.environment_id,
            transport="rest",
            provider="nudge-rest",
            base_url=base_url,
            secret_encrypted=vault.encrypt(key),
            secret_hint=mask(key),
            bank_account_code=bank_account_code,
            status="PENDING",
        )
        session.add(connection)
    else:
        if connection.base_url != base_url:
            connection.status, connection.status_changed_at = "PENDING", utcnow()
        connection.base_url = base_url
        connection.bank_account_code = bank_account_code
        connection.updated_at = utcnow()
    session.flush()
    return connection, key


def update_settings(session: Session, connection: Connection, changes: dict[str, str | None]) -> Connection:
    """Change where payments (``bank_account_code``) and, on native connections, invoice lines
    (``sales_account_code``) are posted, and when it syncs by itself (``sync_schedule``, checked
    cron). Keys left out stay; a None removes the code, or goes back to the server's schedule."""
    if changes.get("sales_account_code") is not None and connection.transport != "native":
        raise NotApplicable(  # a fact about this connection, not a malformed value
            "salesAccountCode applies to native connections (Xero); REST middleware posts lines itself",
            details={"field": "salesAccountCode"},
        )
    if "bank_account_code" in changes:
        connection.bank_account_code = clean_account_code(changes["bank_account_code"])
    if "sales_account_code" in changes:
        connection.sales_account_code = clean_account_code(changes["sales_account_code"], "salesAccountCode")
    if "sync_schedule" in changes:
        schedule = changes["sync_schedule"]
        if schedule != connection.sync_cron:
            connection.sync_cron = schedule
            # From now on: a new schedule does not start at once for a slot it would have had earlier.
            connection.schedule_slot_at = utcnow()
    connection.updated_at = utcnow()
    return connection


def replace_key(connection: Connection, *, vault: Vault) -> str:
    """A new middleware key for a REST connection; the old one is no longer sent from this moment."""
    if connection.transport != "rest":
        raise InvalidState("a native connection has no middleware key; reconnect it instead")
    key = new_token(MIDDLEWARE_KEY_PREFIX)
    connection.secret_encrypted = vault.encrypt(key)
    connection.secret_hint = mask(key)
    connection.status, connection.status_changed_at = "PENDING", utcnow()
    connection.updated_at = utcnow()
    return key


def record_health(connection: Connection, error: ConnectorError | None) -> Connection:
    """ACTIVE, or FAILED with the reason, as the health check found it."""
    now = utcnow()
    connection.status = "ACTIVE" if error is None else "FAILED"
    connection.status_reason = None if error is None else str(error)
    connection.last_error = None if error is None else error.as_dict() | {"at": now.isoformat()}
    connection.status_changed_at = now
    connection.updated_at = now
    return connection
