"""UI users and sessions: argon2 password hashes, random session tokens stored as hashes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from arsync.db import utcnow
from arsync.errors import Conflict, InvalidInput
from arsync.ledger.schemas import check_email
from arsync.tenancy.models import Environment
from arsync.ui.models import UiSession, User
from arsync.vault import hash_token

SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD_LENGTH = 10
_hasher = PasswordHasher()  # argon2id with the library's recommended cost


@cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so a wrong email takes as long as a wrong password."""
    return _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class SignedIn:
    user: User
    session: UiSession


def _normal_email(email: str) -> str:
    try:
        cleaned = check_email(email.strip().lower())
    except ValueError:
        raise InvalidInput(f"{email!r} is not an email address", details={"field": "email"}) from None
    if not cleaned:
        raise InvalidInput("an email address is required", details={"field": "email"})
    return cleaned


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters", details={"field": "password"}
        )


def create_user(session: Session, tenant_id: str, email: str, password: str) -> User:
    email = _normal_email(email)
    _check_password(password)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user with the email {email} already exists")
    user = User(tenant_id=tenant_id, email=email, password_hash=_hasher.hash(password))
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, email: str, password: str) -> User:
    user = session.scalar(select(User).where(User.email == _normal_email(email)))
    if user is None:
        raise InvalidInput(f"no user has the email {email}", details={"field": "email"})
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    session.execute(delete(UiSession).where(UiSession.user_id == user.id))  # sign out everywhere
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user if the password matches; None for a wrong email or password alike."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    try:
        _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_sign_in_at = utcnow()
    return user


def first_environment(session: Session, tenant_id: str) -> Environment:
    environment = session.scalar(
        select(Environment).where(Environment.tenant_id == tenant_id).order_by(Environment.created_at, Environment.id)
    )
    if environment is None:
        raise Conflict("this tenant has no environment; create one with arsync tenant create")
    return environment


def open_session(session: Session, user: User) -> tuple[str, UiSession]:
    """A new sign-in session in the user's first environment; the token goes in the cookie."""
    now = utcnow()
    session.execute(delete(UiSession).where(UiSession.expires_at < now))
    token = secrets.token_urlsafe(32)
    row = UiSession(
        token_hash=hash_token(token),
        user_id=user.id,
        environment_id=first_environment(session, user.tenant_id).id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    session.add(row)
    session.flush()
    return token, row


def load_session(session: Session, token: str | None) -> SignedIn | None:
    if not token:
        return None
    row = session.get(UiSession, hash_token(token))
    if row is None or row.expires_at <= utcnow():
        return None
    user = session.get(User, row.user_id)
    if user is None:
        return None
    return SignedIn(user, row)


def close_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(UiSession).where(UiSession.token_hash == hash_token(token)))


def environments(session: Session, tenant_id: str) -> list[Environment]:
    return list(
        session.scalars(select(Environment).where(Environment.tenant_id == tenant_id).order_by(Environment.name))
    )


def switch_environment(session: Session, signed_in: SignedIn, environment_id: str) -> Environment:
    environment = session.get(Environment, environment_id)
    if environment is None or environment.tenant_id != signed_in.user.tenant_id:
        raise InvalidInput("that environment is not one of your organisation's", details={"field": "environment"})
    row = session.get(UiSession, signed_in.session.token_hash)
    assert row is not None
    row.environment_id = environment.id
    return environment
