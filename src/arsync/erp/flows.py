"""ERP connection use cases that own a transaction or call the ERP, each the one entry point the
API, the UI and the CLI call. The changes themselves are ``erp.service``'s."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from arsync.db import transaction
from arsync.erp import service
from arsync.erp.models import Connection
from arsync.erp.port import ErpConnector
from arsync.errors import ConnectorError, InvalidInput, RevokeFailed
from arsync.outbound import OutboundPolicy, validate_base_url
from arsync.tenancy.scope import Scope
from arsync.vault import Vault
from arsync.xero.flows import XeroConnections


class ConnectionFlows:
    """Saving a REST connection, rotating its key and checking its health, each committed on its own.

    ``scope`` is the caller's tenant and environment; None only for the operator's CLI.
    """

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
        """Create or update the environment's REST connection (see ``service.save_rest``)."""
        base_url = validate_base_url(base_url)
        self.outbound.check_url(base_url, "baseUrl")
        scope = Scope(tenant_id, environment_id)
        with self.session_factory() as session:
            current = service.rest_connection(session, scope)
            if current is not None:
                session.expunge(current)
        if current is not None and current.status == "ACTIVE" and current.base_url != base_url:
            self._try_new_address(current, base_url)
        with transaction(self.session_factory) as session:
            return service.save_rest(session, scope, base_url, bank_account_code, vault=self.vault)

    def _try_new_address(self, working: Connection, base_url: str) -> None:
        """A working connection moves to a new address only once that address passes the health
        check with the connection's key; otherwise it is kept as it is (a typo would otherwise
        fail it and pause its nightly sync)."""
        trial = Connection(**{column.key: getattr(working, column.key) for column in Connection.__table__.columns})
        trial.base_url = base_url
        error = self._health_error(trial)
        if error is not None:
            raise InvalidInput(
                f"{base_url} did not pass the health check ({error.message}); the working connection to "
                f"{working.base_url} was kept",
                details={"field": "baseUrl"},
            )

    def rotate_key(self, connection_id: str, *, scope: Scope | None) -> tuple[Connection, str]:
        """Replace the middleware key; the old one is no longer sent from this moment."""
        with transaction(self.session_factory) as session:
            connection = service.get_connection(session, connection_id, scope)
            return connection, service.replace_key(connection, vault=self.vault)

    def _health_error(self, connection: Connection) -> ConnectorError | None:
        """``POST /health`` against the connection's address: None when it answers ok."""
        connector = self.connector_factory(connection)
        try:
            answer = connector.health()
            if not answer.ok:
                return ConnectorError("middleware answered ok: false", endpoint="/health", http_status=200)
            return None
        except ConnectorError as exc:
            return exc
        finally:
            connector.close()

    def check_health(self, connection_id: str, *, scope: Scope | None) -> Connection:
        """Call ``POST /health`` (no transaction held meanwhile) and record ACTIVE or FAILED with the reason."""
        with self.session_factory() as session:
            connection = service.get_connection(session, connection_id, scope)
        error = self._health_error(connection)
        with transaction(self.session_factory) as session:
            return service.record_health(service.get_connection(session, connection_id, scope), error)


def remove_connection(
    session: Session, scope: Scope, connection_id: str, *, xero: XeroConnections, force: bool
) -> Connection:
    """Delete a connection and its sync history; synced ledger records stay.

    A native (Xero) connection's tokens are revoked at Xero first; unless ``force``, a revocation
    Xero does not confirm keeps the connection and raises RevokeFailed.
    """
    connection = service.get_connection(session, connection_id, scope)
    if connection.transport == "native" and not xero.disconnect(connection) and not force:
        raise RevokeFailed("Xero did not confirm that it revoked arsync's access; try again, or delete anyway")
    session.delete(connection)
    return connection
