"""Connecting and disconnecting Xero.

1. ``begin`` stores a one-time ``state`` (10 minutes, hashed) with the PKCE verifier, tied to a
   tenant and environment, and returns Xero's authorize URL.
2. ``complete`` (the OAuth callback) checks the state, exchanges the code and lists the
   organisations. With one organisation it saves the connection, tokens encrypted, and starts
   the full import (contacts, invoices, payments) as a sync run triggered by ``connect``. With
   several, it keeps the tokens (encrypted) on the state and asks which one; ``choose`` finishes.
3. ``disconnect`` revokes the tokens at Xero and deletes the connection.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from arsync.db import transaction, utcnow
from arsync.erp.models import Connection, OAuthState, SyncRun
from arsync.erp.service import clean_account_code
from arsync.erp.sync import SyncEngine
from arsync.errors import ConnectorError, Forbidden, InvalidInput, NotFound, Unauthorized, XeroNotConfigured
from arsync.tenancy.scope import Scope
from arsync.vault import Vault, hash_token
from arsync.xero import api
from arsync.xero.oauth import TokenSet, XeroOAuth, pkce_pair
from arsync.xero.tokens import seal, unseal

STATE_LIFETIME = timedelta(minutes=10)
PROVIDER = "xero"


@dataclass(frozen=True)
class Caller:
    """Who is finishing an authorization: the tenant and environment, and the UI session's token
    hash when it is a signed-in browser (None for an API key)."""

    tenant_id: str
    environment_id: str
    session_hash: str | None


@dataclass
class ConnectResult:
    """What the callback tells the user: connected (with the import run) or pick an organisation."""

    status: str  # CONNECTED | CHOOSE_ORGANISATION
    connection: Connection | None = None
    sync_run: SyncRun | None = None
    organisations: list[dict[str, Any]] = field(default_factory=list)


class XeroConnections:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        vault: Vault,
        oauth: XeroOAuth | None,
        sync: SyncEngine,
    ) -> None:
        self.session_factory = session_factory
        self.vault = vault
        self._oauth = oauth
        self.sync = sync

    @property
    def configured(self) -> bool:
        return self._oauth is not None

    @property
    def oauth(self) -> XeroOAuth:
        if self._oauth is None:
            raise XeroNotConfigured(
                "Xero is not configured on this server: set ARSYNC_XERO_CLIENT_ID and ARSYNC_XERO_CLIENT_SECRET",
            )
        return self._oauth

    def begin(
        self,
        scope: Scope,
        bank_account_code: str | None = None,
        sales_account_code: str | None = None,
        *,
        session_hash: str | None = None,
    ) -> str:
        """The URL to send the user to; the state in it works once, for 10 minutes.

        The account codes, when given, replace the connection's on completion. ``session_hash``:
        the UI session starting it, which alone may then finish it.
        """  # fmt: skip
        oauth = self.oauth
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        with transaction(self.session_factory) as session:
            session.add(OAuthState(
                state_hash=hash_token(state), tenant_id=scope.tenant_id, environment_id=scope.environment_id,
                provider=PROVIDER, code_verifier_encrypted=self.vault.encrypt(verifier),
                bank_account_code=clean_account_code(bank_account_code),
                sales_account_code=clean_account_code(sales_account_code, "salesAccountCode"),
                expires_at=utcnow() + STATE_LIFETIME, session_hash=session_hash,
            ))  # fmt: skip
        return oauth.authorize_url(state, challenge)

    def complete(self, state: str, code: str | None, error: str | None, browser: Caller | None) -> ConnectResult:
        """The OAuth callback, in ``browser`` (the signed-in arsync session it carries, if any)."""
        pending = self._use_state(state, browser)  # an unknown state is a 404, whatever else came
        if error:
            raise InvalidInput(f"Xero did not authorize arsync ({error}); start again from Connect Xero",
                               details={"field": "error"})  # fmt: skip
        if not code:
            raise InvalidInput("the callback has no code; start again from Connect Xero", details={"field": "code"})
        verifier = self.vault.decrypt(pending.code_verifier_encrypted)
        tokens = self.oauth.exchange(code, verifier)
        organisations = self.oauth.tenants(tokens.access_token)
        if not organisations:
            raise InvalidInput("the Xero user gave access to no organisation; start again and tick one",
                               details={"field": "organisations"})  # fmt: skip
        if len(organisations) == 1:
            return self._connect(pending, tokens, organisations[0])
        with transaction(self.session_factory) as session:
            row = session.get(OAuthState, pending.state_hash)
            assert row is not None
            row.tokens_encrypted = seal(self.vault, tokens)
            row.organisations = [{"tenantId": o.tenantId, "tenantName": o.tenantName} for o in organisations]
            row.used_at = None  # the choice still needs it, within its lifetime
        return ConnectResult("CHOOSE_ORGANISATION", organisations=row.organisations or [])

    def choose(self, state: str, xero_tenant_id: str, caller: Caller) -> ConnectResult:
        """Finish a callback that found several organisations."""
        pending = self._use_state(state, caller)
        offered = {o["tenantId"]: o for o in pending.organisations or []}
        if pending.tokens_encrypted is None or xero_tenant_id not in offered:
            raise InvalidInput(f"organisation {xero_tenant_id!r} was not offered for this authorization",
                               details={"field": "xeroTenantId"})  # fmt: skip
        chosen = api.Tenant(tenantId=xero_tenant_id, tenantName=offered[xero_tenant_id].get("tenantName"))
        return self._connect(pending, unseal(self.vault, pending.tokens_encrypted), chosen)

    def offered(self, state: str, caller: Caller) -> list[dict[str, Any]]:
        """The organisations a pending authorization may pick from (does not use the state up)."""
        with self.session_factory() as session:
            row = session.get(OAuthState, hash_token(state))
            foreign = row is not None and (row.tenant_id, row.environment_id) != (
                caller.tenant_id,
                caller.environment_id,
            )
            if row is None or foreign or row.expires_at < utcnow() or not row.organisations:
                raise NotFound("this authorization link is unknown, used or expired; start again from Connect Xero",
                               details={"field": "state"})  # fmt: skip
            return list(row.organisations)

    def disconnect(self, connection: Connection) -> bool:
        """Revoke the tokens at Xero; True if Xero confirmed. The caller deletes the connection."""
        try:
            self.oauth.revoke(unseal(self.vault, connection.secret_encrypted).refresh_token)
        except ConnectorError:
            return False
        return True

    def _use_state(self, state: str, caller: Caller | None) -> OAuthState:
        """The pending authorization, used up, if ``caller`` may finish it.

        Against login CSRF (RFC 6749, section 10.12): the browser that comes back from Xero must
        be signed in to arsync in the tenant and environment that started the authorization,
        and be the very session that started it when that was a UI session (the organisation
        choice may also be made with that tenant's API key, when an API key started it).
        Otherwise a victim who follows an attacker's link would connect the victim's Xero
        organisation into the attacker's tenant.
        """
        with transaction(self.session_factory) as session:
            row = session.scalar(select(OAuthState).where(OAuthState.state_hash == hash_token(state)).with_for_update())
            if row is None or row.used_at is not None or row.expires_at < utcnow():
                raise NotFound("this authorization link is unknown, used or expired; start again from Connect Xero",
                               details={"field": "state"})  # fmt: skip
            if caller is None:
                raise Unauthorized(
                    "sign in to arsync in this browser, in the organisation that started it, to finish connecting Xero"
                )
            elsewhere = (caller.tenant_id, caller.environment_id) != (row.tenant_id, row.environment_id)
            refused = elsewhere or (row.session_hash is not None and row.session_hash != caller.session_hash)
            row.used_at = utcnow()  # a link that reached the wrong browser is spent too
            session.flush()
            session.expunge(row)
        if refused:
            raise Forbidden(
                "this Xero authorization was started in another arsync session or organisation, so it was not "
                "used; start again from Connect Xero in this browser"
            )
        return row

    def _connect(self, pending: OAuthState, tokens: TokenSet, organisation: api.Tenant) -> ConnectResult:
        now = utcnow()
        with transaction(self.session_factory) as session:
            connection = session.scalar(select(Connection).where(
                Connection.tenant_id == pending.tenant_id, Connection.environment_id == pending.environment_id,
                Connection.transport == "native",
            ))  # fmt: skip
            if connection is None:
                connection = Connection(tenant_id=pending.tenant_id, environment_id=pending.environment_id,
                                        transport="native", provider=PROVIDER)  # fmt: skip
                session.add(connection)
            elif connection.external_tenant_id != organisation.tenantId:
                connection.sync_watermark = None  # another organisation: import everything again
            connection.base_url = self.oauth.app.api_url
            connection.secret_encrypted = seal(self.vault, tokens)
            connection.secret_hint = "OAuth tokens"
            connection.external_tenant_id = organisation.tenantId
            connection.external_tenant_name = organisation.tenantName
            if pending.bank_account_code:
                connection.bank_account_code = pending.bank_account_code
            if pending.sales_account_code:
                connection.sales_account_code = pending.sales_account_code
            connection.status, connection.status_reason, connection.last_error = "ACTIVE", None, None
            connection.status_changed_at = connection.updated_at = now
            stale = session.get(OAuthState, pending.state_hash)
            if stale is not None:
                session.delete(stale)
            session.flush()
            connection_id = connection.id
        run, _ = self.sync.start(connection_id, trigger="connect", full=True, enqueue=True)
        return ConnectResult("CONNECTED", connection=connection, sync_run=run)
