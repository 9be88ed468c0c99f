"""Request dependencies: the container, the request's session (one commit) and the caller's scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from arsync.bootstrap import Container
from arsync.errors import Forbidden, Unauthorized
from arsync.tenancy.models import ApiKey
from arsync.tenancy.scope import Scope
from arsync.vault import hash_token

bearer = HTTPBearer(auto_error=False, description="A platform API key (ark_…)")


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_session(request: Request, container: ContainerDep) -> AsyncIterator[Session]:
    """The request's session.

    Writes run in one transaction that commits after the endpoint and before the response.
    GET requests only read, from one snapshot (see ``Container.read_session_factory``).

    This is an async dependency on purpose: a sync one costs two worker-thread hops per request.
    Opening a session does no I/O (it connects on its first query), so only commit and rollback
    go to a worker thread. Closing a GET's session ends its read-only transaction on the event
    loop: one short round trip with nothing to undo, cheaper than a thread hop.
    """
    if request.method in {"GET", "HEAD"}:
        with container.read_session_factory() as session:
            yield session
        return
    session = container.session_factory()
    try:
        yield session
        await run_in_threadpool(session.commit)
    except BaseException:
        await run_in_threadpool(session.rollback)
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


# Built once: every authenticated request runs it.
API_KEY_BY_HASH = select(ApiKey.tenant_id, ApiKey.environment_id, ApiKey.revoked_at).where(
    ApiKey.key_hash == bindparam("key_hash")
)


def get_scope(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_tenant_id: Annotated[str | None, Header(description="Your tenant id (ten_…)")] = None,
    x_environment_id: Annotated[str | None, Header(description="Your environment id (env_…)")] = None,
) -> Scope:
    """The (tenant, environment) the API key is bound to; 401 for a bad key, 403 for other ids."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Missing or invalid Authorization header. Use: Authorization: Bearer <key>")
    key = session.execute(API_KEY_BY_HASH, {"key_hash": hash_token(credentials.credentials)}).first()
    if key is None or key.revoked_at is not None:
        raise Unauthorized("Unknown or revoked API key")
    if not x_tenant_id or not x_environment_id:
        raise Unauthorized("X-Tenant-ID and X-Environment-ID headers are required")
    if (x_tenant_id, x_environment_id) != (key.tenant_id, key.environment_id):
        raise Forbidden("This API key belongs to another tenant or environment")
    return Scope(key.tenant_id, key.environment_id)


ScopeDep = Annotated[Scope, Depends(get_scope)]
