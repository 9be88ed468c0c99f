"""The Nomod connection and customer sync.

Customer sync makes sure an arsync customer exists in Nomod, once: the mapping is checked
first, then name and email are validated, then the Nomod customer is created, then the
mapping and the customer's metadata are stored in one transaction. A failure at any step
writes nothing. Concurrent syncs of one customer are serialised (an advisory lock on
PostgreSQL, a per-customer lock in embedded mode), so Nomod gets one customer, and the
mapping's unique key backs that up.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from arsync.db import transaction, utcnow
from arsync.errors import InvalidInput
from arsync.ledger.models import Customer
from arsync.nomod.client import (
    API_ERROR,
    CUSTOMER_NOT_FOUND,
    INVALID_EMAIL,
    MISSING_FIELDS,
    NomodClient,
    NomodError,
    NomodOptions,
)
from arsync.nomod.models import EntityIntegrationMapping, NomodConnection
from arsync.tenancy.scope import Scope, in_scope
from arsync.vault import Vault, mask

PROVIDER = "nomod"
LOCK_STRIPES = 64
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ClientFactory = Callable[[str, str], NomodClient]


def split_name(name: str) -> tuple[str, str | None]:
    """``first_name`` and ``last_name`` for Nomod: the first word, and the rest."""
    first, _, rest = name.strip().partition(" ")
    return first, rest.strip() or None


class NomodService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        vault: Vault,
        options: NomodOptions | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.vault = vault
        self.options = options or NomodOptions()
        self.client_factory = client_factory or (lambda url, key: NomodClient(url, key, self.options))
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    # The connection -------------------------------------------------------------------------

    def save_connection(
        self,
        scope: Scope,
        *,
        api_key: str,
        invoice_sync_outbound: bool,
        base_url: str,
        webhook_secret: str | None = None,
    ) -> NomodConnection:
        """Create or update the environment's Nomod connection."""
        api_key = api_key.strip()
        if not api_key.startswith("sk_") or len(api_key) < 8:
            raise InvalidInput(
                "apiKey must be a Nomod secret key (sk_test_… or sk_live_…)", details={"field": "apiKey"}
            )
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput("baseUrl must be an http(s) URL", details={"field": "baseUrl"})
        if webhook_secret is not None and not webhook_secret.startswith("whsec_"):
            raise InvalidInput("webhookSecret must start with whsec_", details={"field": "webhookSecret"})
        now = utcnow()
        with transaction(self.session_factory) as session:
            connection = self.connection(session, scope)
            if connection is None:
                connection = NomodConnection(tenant_id=scope.tenant_id, environment_id=scope.environment_id)
                session.add(connection)
            connection.base_url = base_url.rstrip("/")
            connection.api_key_encrypted = self.vault.encrypt(api_key)
            connection.api_key_hint = mask(api_key)
            if webhook_secret is not None:
                connection.webhook_secret_encrypted = self.vault.encrypt(webhook_secret)
            connection.invoice_sync_outbound = invoice_sync_outbound
            connection.status, connection.status_reason, connection.last_error = "ACTIVE", None, None
            connection.updated_at = now
            session.flush()
            session.expunge(connection)
            return connection

    @staticmethod
    def connection(session: Session, scope: Scope) -> NomodConnection | None:
        return session.scalar(select(NomodConnection).where(in_scope(NomodConnection, scope)))

    # Customer sync -------------------------------------------------------------------------

    def ensure_customer(self, scope: Scope, customer_id: str) -> str:
        """The customer's Nomod id; creates the Nomod customer the first time. Raises NomodError."""
        with self.session_factory() as session:
            known = mapped_id(session, scope, "customer", customer_id)
        if known is not None:
            return known
        with self._one_at_a_time(customer_id), transaction(self.session_factory) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"nomod:customer:{customer_id}"))))
            known = mapped_id(session, scope, "customer", customer_id)
            if known is not None:
                return known
            customer = session.get(Customer, customer_id)
            if customer is None or (customer.tenant_id, customer.environment_id) != (
                scope.tenant_id,
                scope.environment_id,
            ):
                raise NomodError(CUSTOMER_NOT_FOUND, detail=f"customer {customer_id}")
            name, email = (customer.name or "").strip(), (customer.email or "").strip()
            if not name or not email:
                raise NomodError(MISSING_FIELDS, detail="a customer needs a name and an email for Nomod")
            if not EMAIL.match(email):
                raise NomodError(INVALID_EMAIL, detail=f"{email!r} is not an email address")
            connection = self.connection(session, scope)
            if connection is None:
                raise NomodError(API_ERROR, detail="this environment has no Nomod connection")
            first_name, last_name = split_name(name)
            now = utcnow()
            created = self._call(
                connection,
                lambda client: client.create_customer(
                    {
                        "first_name": first_name,
                        "last_name": last_name,
                        "email": email,
                        "phone_number": customer.phone,
                        "metadata": {
                            "arsync_customer_id": customer.id,
                            "arsync_environment": scope.environment_id,
                            "arsync_sync_timestamp": now.isoformat(),
                        },
                    }
                ),
            )
            nomod_id = created.get("id")
            if not isinstance(nomod_id, str) or not nomod_id:
                raise NomodError(API_ERROR, detail="Nomod answered without a customer id")
            session.add(
                EntityIntegrationMapping(
                    tenant_id=scope.tenant_id,
                    environment_id=scope.environment_id,
                    entity_type="customer",
                    entity_id=customer.id,
                    provider=PROVIDER,
                    provider_id=nomod_id,
                )
            )
            customer.metadata_ = (customer.metadata_ or {}) | {
                "nomod_customer_id": nomod_id,
                "nomod_sync_timestamp": now.isoformat(),
            }
            customer.updated_at = now
            return nomod_id

    def _call(self, connection: NomodConnection, call: Callable[[NomodClient], dict[str, object]]) -> dict[str, object]:
        client = self.client_factory(connection.base_url, self.vault.decrypt(connection.api_key_encrypted))
        try:
            return call(client)
        except NomodError as exc:
            if exc.unauthorized:
                self._mark_failed(connection.id, exc)
            raise
        finally:
            client.close()

    def _mark_failed(self, connection_id: str, error: NomodError) -> None:
        with transaction(self.session_factory) as session:
            connection = session.get(NomodConnection, connection_id)
            if connection is not None:
                connection.status = "FAILED"
                connection.status_reason = "Nomod rejected the API key; save the connection with a valid key"
                connection.last_error = error.as_dict() | {"at": utcnow().isoformat()}
                connection.updated_at = utcnow()

    @contextmanager
    def _one_at_a_time(self, key: str) -> Iterator[None]:
        """Serialise customer syncs of one customer within this process."""
        with self._locks[hash(key) % LOCK_STRIPES]:
            yield


def mapped_id(session: Session, scope: Scope, entity_type: str, entity_id: str) -> str | None:
    """The provider id stored for an arsync record, if any."""
    return session.scalar(
        select(EntityIntegrationMapping.provider_id).where(
            in_scope(EntityIntegrationMapping, scope),
            EntityIntegrationMapping.entity_type == entity_type,
            EntityIntegrationMapping.entity_id == entity_id,
            EntityIntegrationMapping.provider == PROVIDER,
        )
    )
