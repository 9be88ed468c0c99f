"""``/api/v1/api-keys``: platform API keys of the caller's (tenant, environment)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from sqlalchemy import select

from arsync.db import utcnow
from arsync.schemas import ApiModel
from arsync.tenancy.models import ApiKey
from arsync.tenancy.scope import get_scoped, in_scope
from arsync.tenancy.service import issue_api_key
from arsync.web.deps import ScopeDep, SessionDep
from arsync.web.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"], responses=ERROR_RESPONSES)


class ApiKeyRead(ApiModel):
    id: str
    hint: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    api_key: str


def _read(key: ApiKey) -> ApiKeyRead:
    return ApiKeyRead(id=key.id, hint=key.hint, created_at=key.created_at, revoked_at=key.revoked_at)


@router.get("", response_model=list[ApiKeyRead])
def list_api_keys(scope: ScopeDep, session: SessionDep) -> list[ApiKeyRead]:
    """List this environment's API keys (hints only)."""
    keys = session.scalars(select(ApiKey).where(in_scope(ApiKey, scope)).order_by(ApiKey.id))
    return [_read(key) for key in keys]


@router.post("", status_code=201, response_model=ApiKeyCreated)
def create_api_key(scope: ScopeDep, session: SessionDep) -> ApiKeyCreated:
    """Issue a new API key for this environment; the key is in the response only this once."""
    record, plaintext = issue_api_key(session, scope.tenant_id, scope.environment_id)
    return ApiKeyCreated(**_read(record).model_dump(), api_key=plaintext)


@router.post("/{key_id}/revoke", response_model=ApiKeyRead)
def revoke_api_key(key_id: str, scope: ScopeDep, session: SessionDep) -> ApiKeyRead:
    """Revoke a key at once; revoking twice is harmless."""
    key = get_scoped(session, ApiKey, key_id, scope, "API key")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return _read(key)
