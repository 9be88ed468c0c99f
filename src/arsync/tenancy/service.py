"""Creating tenants, environments and platform API keys; resolving them by id or name."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from arsync.config import new_token
from arsync.db import utcnow
from arsync.errors import Conflict, EnvironmentExists, InvalidInput, NotFound
from arsync.tenancy.models import ApiKey, Environment, Tenant
from arsync.vault import hash_token, mask

API_KEY_PREFIX = "ark"


def api_headers(api_key: str, tenant_id: str, environment_id: str) -> dict[str, str]:
    """The headers every authenticated API request carries."""
    return {"Authorization": f"Bearer {api_key}", "X-Tenant-ID": tenant_id, "X-Environment-ID": environment_id}


@dataclass(frozen=True)
class NewTenant:
    tenant_id: str
    environment_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return api_headers(self.api_key, self.tenant_id, self.environment_id)


def _clean_name(value: str, what: str) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise InvalidInput(f"{what} name must not be empty", details={"field": what})
    if len(cleaned) > 100:
        raise InvalidInput(f"{what} name is longer than 100 characters", details={"field": what})
    return cleaned


def create_tenant(session: Session, name: str, environment: str = "prod") -> NewTenant:
    """A new tenant with one environment and its first API key."""
    name = _clean_name(name, "tenant")
    if session.scalar(select(Tenant).where(Tenant.name == name)) is not None:
        raise Conflict(f"a tenant named {name!r} already exists")
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    env = ensure_environment(session, tenant.id, environment)
    _, key = issue_api_key(session, tenant.id, env.id)
    return NewTenant(tenant.id, env.id, key)


def ensure_environment(session: Session, tenant_id: str, name: str) -> Environment:
    name = _clean_name(name, "environment")
    env = session.scalar(select(Environment).where(Environment.tenant_id == tenant_id, Environment.name == name))
    if env is None:
        env = Environment(tenant_id=tenant_id, name=name)
        session.add(env)
        session.flush()
    return env


def create_environment(session: Session, tenant_id: str, name: str) -> Environment:
    """A new environment of a tenant (a name it does not have yet)."""
    name = _clean_name(name, "environment")
    if session.scalar(select(Environment.id).where(Environment.tenant_id == tenant_id, Environment.name == name)):
        raise EnvironmentExists(f"the tenant already has an environment named {name!r}")
    return ensure_environment(session, tenant_id, name)


def issue_api_key(session: Session, tenant_id: str, environment_id: str) -> tuple[ApiKey, str]:
    """A new platform key for one (tenant, environment); the plaintext is returned once."""
    plaintext = new_token(API_KEY_PREFIX)
    record = ApiKey(
        tenant_id=tenant_id, environment_id=environment_id, key_hash=hash_token(plaintext), hint=mask(plaintext)
    )
    session.add(record)
    session.flush()
    return record, plaintext


def revoke_api_keys(session: Session, tenant_id: str, environment_id: str) -> int:
    """Revoke every live key of a (tenant, environment); returns how many."""
    keys = session.scalars(
        select(ApiKey).where(
            ApiKey.tenant_id == tenant_id, ApiKey.environment_id == environment_id, ApiKey.revoked_at.is_(None)
        )
    ).all()
    for key in keys:
        key.revoked_at = utcnow()
    return len(keys)


def resolve_tenant(session: Session, tenant_ref: str) -> Tenant:
    """A tenant given by id or by name."""
    tenant = session.scalar(select(Tenant).where(or_(Tenant.id == tenant_ref, Tenant.name == tenant_ref)))
    if tenant is None:
        raise NotFound(f"tenant {tenant_ref!r} not found")
    return tenant


def resolve_scope(session: Session, tenant_ref: str, environment_ref: str) -> tuple[Tenant, Environment]:
    """A tenant and one of its environments, each given by id or by name."""
    tenant = resolve_tenant(session, tenant_ref)
    env = session.scalar(
        select(Environment).where(
            Environment.tenant_id == tenant.id,
            or_(Environment.id == environment_ref, Environment.name == environment_ref),
        )
    )
    if env is None:
        raise NotFound(f"environment {environment_ref!r} not found in tenant {tenant.name!r}")
    return tenant, env
