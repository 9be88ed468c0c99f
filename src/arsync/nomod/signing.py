"""Svix-style webhook signatures, as Nomod sends them and as arsync sends its own notifications.

Headers ``svix-id``, ``svix-timestamp`` (Unix seconds) and ``svix-signature`` (space-separated
``v1,<base64 HMAC-SHA256>`` entries). The signed string is ``{id}.{timestamp}.{body}`` and the
key is the base64 part of a ``whsec_…`` secret.

Written with the standard library rather than the Svix SDK: verification is one HMAC, and the
SDK is a full API client with its own dependency tree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


class InvalidSignature(Exception):
    """The webhook is not from the holder of the secret, or is too old or too new."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is not a usable ``whsec_`` secret, or None."""
    if not secret.startswith(SECRET_PREFIX):
        return "must start with whsec_"
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        return "must be whsec_ followed by base64"
    return None if key else "has an empty key after whsec_"


def _key(secret: str) -> bytes:
    problem = secret_problem(secret)
    if problem:
        raise ValueError(f"the webhook secret {problem}")
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``svix-signature`` header value for one message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "svix-id": message_id,
        "svix-timestamp": str(stamp),
        "svix-signature": sign(secret, message_id, stamp, body),
    }


def standard_headers(secret: str, message_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The same signature under the Standard Webhooks header names (``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature``; spec/standard-webhooks.md in
    github.com/standard-webhooks/standard-webhooks), which arsync's notifications carry."""
    svix = signed_headers(secret, message_id, body, timestamp)
    return {name.replace("svix-", "webhook-"): value for name, value in svix.items()}


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
    """Check a webhook's signature and age; returns its message id."""
    message_id = headers.get("svix-id")
    stamp = headers.get("svix-timestamp")
    signatures = headers.get("svix-signature")
    if not message_id or not stamp or not signatures:
        raise InvalidSignature("missing svix-id, svix-timestamp or svix-signature header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidSignature("svix-timestamp is not a Unix time") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > TOLERANCE_SECONDS:
        raise InvalidSignature("svix-timestamp is more than 5 minutes away from now")
    try:
        expected = sign(secret, message_id, timestamp, body).removeprefix("v1,")
    except ValueError as exc:  # a secret saved before secrets were checked
        raise InvalidSignature(f"{exc}; save a valid one for this connection") from None
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return message_id
    raise InvalidSignature("no signature matches")
