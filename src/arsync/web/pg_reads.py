"""The customer read routes on PostgreSQL: one statement checks the API key and renders the JSON.

The statements are the ledger's (``ledger/repository.py``, built with SQLAlchemy Core from the
customer read shape); they are run here without the ORM, because these are the API's busiest
routes and the general path is too heavy for them. There, a read costs a session, two worker-thread hops, the key
query and the read (each in its own REPEATABLE READ transaction) and a Pydantic model per row:
about 3 ms of CPU on the server's single event loop. Here one statement, sent from the event
loop through an asyncpg pool (its per-query cost is a fraction of psycopg's), looks the key up
and has PostgreSQL build the response body, so the API process only checks the key's scope and
passes the text on. The key is read on every request (no cache), so a revoked key stops at
once, as on every other route.

The pool is small on purpose (``ARSYNC_API_READ_CONNECTIONS``, default 4): the API process has
one event loop, and on a small machine many busy PostgreSQL backends take the CPU it needs.

The rules are the general path's (``deps.scope_of_key`` decides 401/403, a record outside the
scope is 404) and the JSON values are the same; tests compare the two paths on PostgreSQL.

Prepared statements are allowed here, unlike on the ORM engine: every statement run here is driven
by an index that matches its predicates and order (the key's hash; the customer's id; tenant,
environment, id), so a generic plan cannot turn into a scan of the whole table, and PostgreSQL
plans them again when ANALYZE updates the tables' statistics.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import asyncpg
from sqlalchemy import make_url

from arsync.ledger import repository
from arsync.ledger.repository import PgStatement
from arsync.schemas import PageParams
from arsync.vault import hash_token
from arsync.web.deps import ApiCredentials, KeyRow, require_api_key, scope_of_key


def like_contains(text: str) -> str:
    """A LIKE pattern for "contains ``text``", escaped with '/' as SQLAlchemy's autoescape does."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """Replaces the pool's reset on release (RESET ALL, UNLISTEN *, … : one more round trip per request).

    The statements here change no session state: no SET, LISTEN, cursor or advisory lock. asyncpg
    still rolls back a transaction left open before calling this.
    """


class PgReads:
    """The async connection pool and the statements above; one per app (a pool lives on one event loop)."""

    def __init__(self, database_url: str, max_connections: int) -> None:
        self.max_connections = max_connections
        self.conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _connections(self) -> asyncpg.Pool:
        """The pool, opened by the first request (also when the server runs without a lifespan)."""
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.conninfo, min_size=1, max_size=self.max_connections, reset=_nothing_to_reset
                    )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _authorized_row(
        self, credentials: ApiCredentials, statement: PgStatement, **values: Any
    ) -> tuple[Any, ...]:
        """Run ``statement`` (which starts with the key lookup) and apply the key rules to its first columns."""
        key_hash = hash_token(require_api_key(credentials))
        pool = await self._connections()
        row = await pool.fetchrow(statement.sql, *statement.args(key_hash=key_hash, **values))
        scope_of_key(None if row is None else KeyRow(*row[:3]), credentials)
        assert row is not None  # scope_of_key refuses a missing key
        return tuple(row[3:])

    async def customer(self, credentials: ApiCredentials, customer_id: str) -> str | None:
        """The customer's JSON, or None when it is not in the key's scope."""
        (body,) = await self._authorized_row(credentials, repository.customer_by_id(), customer_id=customer_id)
        return cast(str | None, body)

    async def customer_page(
        self,
        credentials: ApiCredentials,
        paging: PageParams,
        *,
        name: str | None,
        email: str | None,
        erp_debtor_id: str | None,
    ) -> str:
        """A ``Page`` of customers as JSON text."""
        values = {"name": like_contains(name.lower()) if name else None, "email": email.lower() if email else None}
        values["erp_debtor_id"] = erp_debtor_id or None
        given = {key: value for key, value in values.items() if value is not None}
        statement = repository.customer_page(tuple(given))
        items, has_more = await self._authorized_row(
            credentials, statement, limit=paging.limit, offset=paging.offset, **given
        )
        more = "true" if has_more else "false"
        return f'{{"items":[{items}],"page":{paging.page},"limit":{paging.limit},"hasMore":{more}}}'
