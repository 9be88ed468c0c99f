"""Request dependencies: the container, the request's session (one commit) and the caller's scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, NamedTuple

from fastapi import Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from arsync.bootstrap import Container
from arsync.errors import Forbidden, Unauthorized
from arsync.schemas import DEFAULT_LIMIT, LIMIT_MAX, LIMIT_MIN, PAGE_MAX, PAGE_MIN, PageParams
from arsync.tenancy.models import ApiKey
from arsync.tenancy.scope import Scope
from arsync.vault import hash_token

bearer = HTTPBearer(auto_error=False, description="A platform API key (ark_…)")


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_paging(
    page: Annotated[int, Query(ge=PAGE_MIN, le=PAGE_MAX)] = 1,
    limit: Annotated[int, Query(ge=LIMIT_MIN, le=LIMIT_MAX)] = DEFAULT_LIMIT,
) -> PageParams:
    """``page`` and ``limit`` from the query string.

    An async function rather than ``Depends(PageParams)``: FastAPI runs a class dependency in a
    worker thread, one more thread hop on every list request.
    """
    return PageParams(page=page, limit=limit)


PagingDep = Annotated[PageParams, Depends(get_paging)]


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


@dataclass(frozen=True)
class ApiCredentials:
    """What the caller sent: the bearer key and the tenant and environment headers."""

    api_key: str | None
    tenant_id: str | None
    environment_id: str | None


async def get_credentials(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_tenant_id: Annotated[str | None, Header(description="Your tenant id (ten_…)")] = None,
    x_environment_id: Annotated[str | None, Header(description="Your environment id (env_…)")] = None,
) -> ApiCredentials:
    return ApiCredentials(credentials.credentials if credentials else None, x_tenant_id, x_environment_id)


CredentialsDep = Annotated[ApiCredentials, Depends(get_credentials)]


class KeyRow(NamedTuple):
    tenant_id: str
    environment_id: str
    revoked_at: datetime | None


def require_api_key(credentials: ApiCredentials) -> str:
    if not credentials.api_key:
        raise Unauthorized("Missing or invalid Authorization header. Use: Authorization: Bearer <key>")
    return credentials.api_key


def scope_of_key(key: KeyRow | None, credentials: ApiCredentials) -> Scope:
    """The (tenant, environment) the stored key is bound to; 401 for a bad key, 403 for other ids."""
    if key is None or key.revoked_at is not None:
        raise Unauthorized("Unknown or revoked API key")
    if not credentials.tenant_id or not credentials.environment_id:
        raise Unauthorized("X-Tenant-ID and X-Environment-ID headers are required")
    if (credentials.tenant_id, credentials.environment_id) != (key.tenant_id, key.environment_id):
        raise Forbidden("This API key belongs to another tenant or environment")
    return Scope(key.tenant_id, key.environment_id)


# Built once: every authenticated request runs it.
API_KEY_BY_HASH = select(ApiKey.tenant_id, ApiKey.environment_id, ApiKey.revoked_at).where(
    ApiKey.key_hash == bindparam("key_hash")
)


def authenticate(session: Session, credentials: ApiCredentials) -> Scope:
    key_hash = hash_token(require_api_key(credentials))
    key = session.execute(API_KEY_BY_HASH, {"key_hash": key_hash}).first()
    return scope_of_key(None if key is None else KeyRow(*key), credentials)


def get_scope(session: SessionDep, credentials: CredentialsDep) -> Scope:
    return authenticate(session, credentials)


ScopeDep = Annotated[Scope, Depends(get_scope)]
