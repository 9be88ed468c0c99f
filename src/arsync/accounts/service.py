"""UI users and sessions: argon2 password hashes, random session tokens stored as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from arsync.accounts.models import SignInThrottle, UiSession, User
from arsync.db import utcnow
from arsync.errors import Conflict, InvalidInput
from arsync.ledger.schemas import check_email
from arsync.tenancy.models import Environment
from arsync.vault import hash_token

SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD_LENGTH = 10
_hasher = PasswordHasher()  # argon2id with the library's recommended cost

# Sign-in throttling, after OWASP's "Slow Down Online Guessing Attacks with Device Cookies":
# a browser that has signed in as an email before carries a signed device cookie for it, and its
# failures count against that device alone. Every other attempt counts against the (email,
# client address) pair, the email's untrusted attempts from anywhere, and the address. A subject
# at its limit within THROTTLE_WINDOW is refused for LOCK_DURATION, even with the right password;
# so an attacker can lock out only untrusted browsers, never the owner's own.
THROTTLE_WINDOW = timedelta(minutes=15)
LOCK_DURATION = timedelta(minutes=15)
FAILURE_LIMITS = {"device": 10, "pair": 5, "untrusted": 20, "address": 30}
DEVICE_COOKIE = "arsync_device"
DEVICE_LIFETIME = timedelta(days=365)


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
    lift_locks(session, user.email)
    return user


def _typed_email(email: str) -> str:
    return email.strip().lower()[:320]


def _device_signature(secret_key: str, email: str, nonce: str) -> str:
    message = f"{_typed_email(email)}|{nonce}".encode()
    return hmac.new(hashlib.sha256(b"arsync device cookie|" + secret_key.encode()).digest(), message,
                    hashlib.sha256).hexdigest()  # fmt: skip


def device_cookie(secret_key: str, email: str) -> str:
    """A new device cookie value for a browser that just signed in as ``email``."""
    nonce = secrets.token_urlsafe(16)
    return f"{nonce}.{_device_signature(secret_key, email, nonce)}"


def trusted_device(secret_key: str, email: str, cookie: str | None) -> str | None:
    """The device cookie, if it is one this server issued for ``email``."""
    nonce, _, signature = (cookie or "").partition(".")
    if not nonce or not hmac.compare_digest(signature, _device_signature(secret_key, email, nonce)):
        return None
    return cookie


def throttle_subjects(email: str, address: str | None, device: str | None = None) -> list[str]:
    """What a failed sign-in is counted against (see the note on throttling)."""
    if device is not None:
        return [f"device:{hashlib.sha256(device.encode()).hexdigest()}"]
    typed = _typed_email(email)
    subjects = [f"pair:{typed}|{address or ''}", f"untrusted:{typed}"]
    if address:
        subjects.append(f"address:{address}")
    return sorted(subjects)  # one lock order for every process


def locked_until(session: Session, subjects: list[str], now: datetime | None = None) -> datetime | None:
    """When the latest lock on any of ``subjects`` ends, or None if sign-in is open."""
    now = now or utcnow()
    ends = session.scalars(
        select(SignInThrottle.locked_until).where(
            SignInThrottle.subject.in_(subjects), SignInThrottle.locked_until > now
        )
    ).all()
    return max((end for end in ends if end is not None), default=None)


def record_failure(session: Session, subjects: list[str], now: datetime | None = None) -> None:
    """Count one failed sign-in against each subject; lock the ones that reach their limit."""
    now = now or utcnow()
    session.execute(
        delete(SignInThrottle).where(
            SignInThrottle.window_started_at < now - THROTTLE_WINDOW,
            or_(SignInThrottle.locked_until.is_(None), SignInThrottle.locked_until < now),
        )
    )
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(SignInThrottle)
        .values([{"subject": subject, "failures": 0, "window_started_at": now} for subject in subjects])
        .on_conflict_do_nothing()
    )
    rows = session.scalars(
        select(SignInThrottle)
        .where(SignInThrottle.subject.in_(subjects))
        .order_by(SignInThrottle.subject)
        .with_for_update()
    ).all()
    for row in rows:
        if row.window_started_at < now - THROTTLE_WINDOW:
            row.failures, row.window_started_at = 0, now
        row.failures += 1
        if row.failures >= FAILURE_LIMITS[row.subject.split(":", 1)[0]]:
            row.locked_until = now + LOCK_DURATION
            row.failures, row.window_started_at = 0, now


def clear_failures(session: Session, subjects: list[str]) -> None:
    """A successful sign-in forgets its device's or its (email, address) pair's failures; the
    email's untrusted count and the address's stay, as an attack may be going on."""
    kept = ("untrusted:", "address:")
    session.execute(
        delete(SignInThrottle).where(SignInThrottle.subject.in_([s for s in subjects if not s.startswith(kept)]))
    )


def lift_locks(session: Session, email: str) -> None:
    """Forget every count against ``email`` (an operator reset its password)."""
    typed = _typed_email(email)
    session.execute(
        delete(SignInThrottle).where(
            or_(SignInThrottle.subject == f"untrusted:{typed}", SignInThrottle.subject.startswith(f"pair:{typed}|"))
        )
    )


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
