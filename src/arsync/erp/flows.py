"""ERP connection use cases that reach past the connection table, each the one entry point the API
and the UI call."""

from __future__ import annotations

from sqlalchemy.orm import Session

from arsync.erp.models import Connection
from arsync.errors import RevokeFailed
from arsync.tenancy.scope import Scope, get_scoped
from arsync.xero.service import XeroConnections


def remove_connection(
    session: Session, scope: Scope, connection_id: str, *, xero: XeroConnections, force: bool
) -> Connection:
    """Delete a connection and its sync history; synced ledger records stay.

    A native (Xero) connection's tokens are revoked at Xero first; unless ``force``, a revocation
    Xero does not confirm keeps the connection and raises RevokeFailed.
    """
    connection = get_scoped(session, Connection, connection_id, scope, "connection")
    if connection.transport == "native" and not xero.disconnect(connection) and not force:
        raise RevokeFailed("Xero did not confirm that it revoked arsync's access; try again, or delete anyway")
    session.delete(connection)
    return connection
