"""Saving REST connections, checking their health and rotating their middleware key."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from arsync.config import new_token
from arsync.db import transaction, utcnow
from arsync.erp.models import Connection
from arsync.erp.port import ErpConnector
from arsync.errors import ConnectorError, InvalidInput, InvalidState, NotApplicable, NotFound
from arsync.outbound import OutboundPolicy, validate_base_url
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


class ConnectionService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        vault: Vault,
        connector_factory: Callable[[Connection], ErpConnector],
        outbound: OutboundPolicy,
    ) -> None:
        self.session_factory = session_factory
        self.vault = vault
        self.connector_factory = connector_factory
        self.outbound = outbound

    def save_rest(
        self, tenant_id: str, environment_id: str, base_url: str, bank_account_code: str | None = None
    ) -> tuple[Connection, str | None]:
        """Create the environment's REST connection, or update its URL and bank code.

        Returns the connection and, when a key was generated (on creation), the key itself:
        the only time it is ever shown.
        """
        base_url = validate_base_url(base_url)
        self.outbound.check_url(base_url, "baseUrl")
        bank_account_code = clean_account_code(bank_account_code)
        with transaction(self.session_factory) as session:
            connection = session.scalar(
                select(Connection).where(
                    Connection.tenant_id == tenant_id,
                    Connection.environment_id == environment_id,
                    Connection.transport == "rest",
                )
            )
            key = None
            if connection is None:
                key = new_token(MIDDLEWARE_KEY_PREFIX)
                connection = Connection(
                    tenant_id=tenant_id,
                    environment_id=environment_id,
                    transport="rest",
                    provider="nudge-rest",
                    base_url=base_url,
                    secret_encrypted=self.vault.encrypt(key),
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

    @staticmethod
    def set_account_codes(session: Session, connection: Connection, changes: dict[str, str | None]) -> Connection:
        """Change where payments (``bank_account_code``) and, on native connections, invoice lines
        (``sales_account_code``) are posted. Keys left out stay; a None removes the code."""
        if changes.get("sales_account_code") is not None and connection.transport != "native":
            raise NotApplicable(  # a fact about this connection, not a malformed value
                "salesAccountCode applies to native connections (Xero); REST middleware posts lines itself",
                details={"field": "salesAccountCode"},
            )
        if "bank_account_code" in changes:
            connection.bank_account_code = clean_account_code(changes["bank_account_code"])
        if "sales_account_code" in changes:
            connection.sales_account_code = clean_account_code(changes["sales_account_code"], "salesAccountCode")
        connection.updated_at = utcnow()
        return connection

    def rotate_key(self, connection_id: str, *, scope: Scope | None) -> tuple[Connection, str]:
        """Replace the middleware key; the old one is no longer sent from this moment.

        ``scope`` is the caller's tenant and environment; None only for the operator's CLI.
        """
        key = new_token(MIDDLEWARE_KEY_PREFIX)
        with transaction(self.session_factory) as session:
            connection = self._get(session, connection_id, scope)
            if connection.transport != "rest":
                raise InvalidState("a native connection has no middleware key; reconnect it instead")
            connection.secret_encrypted = self.vault.encrypt(key)
            connection.secret_hint = mask(key)
            connection.status, connection.status_changed_at = "PENDING", utcnow()
            connection.updated_at = utcnow()
        return connection, key

    def check_health(self, connection_id: str, *, scope: Scope | None) -> Connection:
        """Call ``POST /health`` and record ACTIVE or FAILED with the reason (``scope`` as for rotate_key)."""
        with self.session_factory() as session:
            connection = self._get(session, connection_id, scope)
        connector = self.connector_factory(connection)
        error: ConnectorError | None = None
        try:
            answer = connector.health()
            if not answer.ok:
                error = ConnectorError("middleware answered ok: false", endpoint="/health", http_status=200)
        except ConnectorError as exc:
            error = exc
        finally:
            connector.close()
        now = utcnow()
        with transaction(self.session_factory) as session:
            connection = self._get(session, connection_id, scope)
            connection.status = "ACTIVE" if error is None else "FAILED"
            connection.status_reason = None if error is None else str(error)
            connection.last_error = None if error is None else error.as_dict() | {"at": now.isoformat()}
            connection.status_changed_at = now
            connection.updated_at = now
        return connection

    @staticmethod
    def _get(session: Session, connection_id: str, scope: Scope | None) -> Connection:
        if scope is not None:
            return get_scoped(session, Connection, connection_id, scope, "connection")
        connection = session.get(Connection, connection_id)
        if connection is None:
            raise NotFound(f"connection {connection_id} not found")
        return connection
