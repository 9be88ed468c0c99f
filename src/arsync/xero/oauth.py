"""Xero's identity endpoints: the authorize URL (with PKCE), code exchange, refresh, revocation.

httpx does the HTTP; the OAuth steps are four form posts, so no OAuth library is pulled in.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

import httpx
from pydantic import TypeAdapter, ValidationError

from arsync.db import utcnow
from arsync.errors import ReauthRequired, RemoteError, TransientError
from arsync.xero import api

# Xero apps created on or after 2 March 2026 may ask only for granular scopes; the broad
# accounting.transactions stays available to older apps until September 2027 (Xero developer
# changelog and FAQ on the scope change). arsync reads contacts, invoices and payments and writes
# invoices and payments.
GRANULAR_SCOPES = "offline_access accounting.contacts accounting.invoices accounting.payments"
BROAD_SCOPES = "offline_access accounting.transactions accounting.contacts"
_tenants = TypeAdapter(list[api.Tenant])


@dataclass(frozen=True)
class XeroApp:
    """The Xero app arsync signs in as, and where Xero lives."""

    client_id: str
    client_secret: str
    redirect_uri: str
    authorize_url: str
    token_url: str
    revoke_url: str
    api_url: str
    scopes: str = GRANULAR_SCOPES
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "expires_at": self.expires_at.isoformat()}  # fmt: skip

    @classmethod
    def from_dict(cls, stored: dict[str, str]) -> TokenSet:
        return cls(stored["access_token"], stored["refresh_token"], datetime.fromisoformat(stored["expires_at"]))


def pkce_pair() -> tuple[str, str]:
    """A code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class XeroOAuth:
    def __init__(self, app: XeroApp, transport: httpx.BaseTransport | None = None) -> None:
        self.app = app
        self._transport = transport

    def authorize_url(self, state: str, code_challenge: str) -> str:
        query = urlencode({
            "response_type": "code", "client_id": self.app.client_id, "redirect_uri": self.app.redirect_uri,
            "scope": self.app.scopes, "state": state, "code_challenge": code_challenge, "code_challenge_method": "S256",
        })  # fmt: skip
        return f"{self.app.authorize_url}?{query}"

    def exchange(self, code: str, code_verifier: str) -> TokenSet:
        return self._token({"grant_type": "authorization_code", "code": code,
                            "redirect_uri": self.app.redirect_uri, "code_verifier": code_verifier})  # fmt: skip

    def refresh(self, refresh_token: str) -> TokenSet:
        """A new pair; Xero rotates the refresh token on every use."""
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def revoke(self, refresh_token: str) -> None:
        with self._client() as client:
            response = client.post(self.app.revoke_url, data={"token": refresh_token}, auth=self._auth())
        if response.status_code != 200:
            raise RemoteError(f"Xero did not revoke the token (HTTP {response.status_code})",
                              endpoint="/connect/revocation", http_status=response.status_code)  # fmt: skip

    def tenants(self, access_token: str) -> list[api.Tenant]:
        """The organisations this authorization may use (``GET /connections``)."""
        with self._client() as client:
            response = client.get(
                f"{self.app.api_url}/connections", headers={"Authorization": f"Bearer {access_token}"}
            )
        if response.status_code != 200:
            raise RemoteError(f"Xero did not list the organisations (HTTP {response.status_code})",
                              endpoint="/connections", http_status=response.status_code)  # fmt: skip
        try:
            return _tenants.validate_json(response.content)
        except ValidationError as exc:
            raise RemoteError("Xero's organisation list is not what its API documents", endpoint="/connections",
                              http_status=200) from exc  # fmt: skip

    def _auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.app.client_id, self.app.client_secret)

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=self.app.timeout_seconds, transport=self._transport)

    def _token(self, form: dict[str, str]) -> TokenSet:
        asked_at = utcnow()
        try:
            with self._client() as client:
                response = client.post(self.app.token_url, data=form, auth=self._auth())
        except httpx.HTTPError as exc:
            raise TransientError(f"Xero's token endpoint did not answer ({type(exc).__name__})",
                                 endpoint="/connect/token") from exc  # fmt: skip
        if response.status_code in {429, 500, 502, 503, 504}:
            raise TransientError(f"Xero's token endpoint answered HTTP {response.status_code}",
                                 endpoint="/connect/token", http_status=response.status_code)  # fmt: skip
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200:
            error = body.get("error", f"HTTP {response.status_code}") if isinstance(body, dict) else "?"
            if error in {"invalid_grant", "invalid_client", "unauthorized_client"}:
                raise ReauthRequired(f"Xero refused the authorization ({error})", endpoint="/connect/token",
                                     http_status=response.status_code)  # fmt: skip
            raise RemoteError(f"Xero's token endpoint answered {error}", endpoint="/connect/token",
                              http_status=response.status_code)  # fmt: skip
        try:
            return TokenSet(str(body["access_token"]), str(body["refresh_token"]),
                            asked_at + timedelta(seconds=float(body["expires_in"])))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise RemoteError("Xero's token answer lacks access_token, refresh_token or expires_in",
                              endpoint="/connect/token", http_status=200) from exc  # fmt: skip
