"""Encryption of connection secrets at rest, and hashing of platform API keys."""

from __future__ import annotations

import hashlib

from cryptography.fernet import Fernet, InvalidToken


class Vault:
    """Encrypts and decrypts secrets with a Fernet key (AES-128-CBC + HMAC-SHA256)."""

    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except ValueError as exc:
            raise ValueError("ARSYNC_SECRET_KEY must be a urlsafe-base64 32-byte Fernet key") from exc

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("stored secret cannot be decrypted: was ARSYNC_SECRET_KEY changed?") from exc


def mask(secret: str) -> str:
    """A hint safe to show: the prefix and the last four characters, e.g. ``ask_…7f3a``."""
    prefix, sep, _ = secret.partition("_")
    head = f"{prefix}_" if sep and len(prefix) <= 5 else ""
    return f"{head}…{secret[-4:]}"


def hash_token(token: str) -> str:
    """SHA-256 of a high-entropy token (API key, session token, OAuth state); enough because it is never guessable."""
    return hashlib.sha256(token.encode()).hexdigest()
