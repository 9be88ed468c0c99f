"""The access token of one Xero connection: refreshed before it expires and after a 401.

Only one refresh runs at a time per connection, across processes: the refresh holds the
connection's lock (a PostgreSQL advisory lock, plus a thread lock) and looks again once it has
it. If another worker refreshed meanwhile, its token is used and no second refresh happens.
The rotated refresh token is committed before the new access token is handed out. A refused
refresh marks the connection NEEDS_REAUTH.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import orjson
from sqlalchemy.orm import Session, sessionmaker

from arsync.db import exclusive_transaction, utcnow
from arsync.erp.models import Connection
from arsync.errors import NotFound, ReauthRequired
from arsync.vault import Vault
from arsync.xero.oauth import TokenSet, XeroOAuth

log = logging.getLogger(__name__)
REFRESH_MARGIN = timedelta(seconds=60)
REAUTH_REASON = "Xero refused the refresh token; reconnect Xero to resume syncing"


def seal(vault: Vault, tokens: TokenSet) -> str:
    return vault.encrypt(orjson.dumps(tokens.as_dict()).decode())


def unseal(vault: Vault, sealed: str) -> TokenSet:
    return TokenSet.from_dict(orjson.loads(vault.decrypt(sealed)))


class XeroTokens:
    def __init__(
        self, session_factory: sessionmaker[Session], vault: Vault, oauth: XeroOAuth, connection_id: str
    ) -> None:
        self.session_factory = session_factory
        self.vault = vault
        self.oauth = oauth
        self.connection_id = connection_id

    def access_token(self) -> str:
        """A token that is valid for at least another minute."""
        with self.session_factory() as session:
            tokens = unseal(self.vault, self._connection(session).secret_encrypted)
        if tokens.expires_at - REFRESH_MARGIN > utcnow():
            return tokens.access_token
        return self.refresh(tokens.access_token)

    def refresh(self, stale_access_token: str) -> str:
        """A new access token, unless another worker already replaced ``stale_access_token``."""
        refused: ReauthRequired | None = None
        with exclusive_transaction(self.session_factory, f"xero-token:{self.connection_id}") as session:
            connection = self._connection(session)
            current = unseal(self.vault, connection.secret_encrypted)
            if current.access_token != stale_access_token and current.expires_at - REFRESH_MARGIN > utcnow():
                return current.access_token
            try:
                fresh = self.oauth.refresh(current.refresh_token)
            except ReauthRequired as exc:
                refused = exc
                now = utcnow()
                connection.status, connection.status_reason = "NEEDS_REAUTH", REAUTH_REASON
                connection.status_changed_at = connection.updated_at = now
                connection.last_error = exc.as_dict() | {"at": now.isoformat()}
            else:
                connection.secret_encrypted = seal(self.vault, fresh)
                connection.updated_at = utcnow()
        if refused is not None:
            log.warning("connection %s needs to be reconnected: %s", self.connection_id, refused)
            raise ReauthRequired(REAUTH_REASON, endpoint="/connect/token", http_status=refused.http_status)
        log.info("connection %s: Xero access token refreshed", self.connection_id)
        return fresh.access_token

    def _connection(self, session: Session) -> Connection:
        connection = session.get(Connection, self.connection_id)
        if connection is None:
            raise NotFound(f"connection {self.connection_id} not found")
        return connection
