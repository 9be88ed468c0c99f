"""HTTP for the sandbox: the platform's own requests, every exchange kept for the report.

Requests carry the headers the REST connector sends. The token is never stored: recorded
requests and ``curl`` lines show it as ``$VAR`` (the environment variable it came from).
"""

from __future__ import annotations

import email.utils
import hashlib
import shlex
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import orjson

from arsync import __version__
from arsync.errors import OutboundRefused
from arsync.outbound import OutboundPolicy

Auth = Literal["token", "none", "wrong", "basic", "empty"]
MAX_KEPT_BODY = 4000


@dataclass
class Exchange:
    """One request and what came back (or why nothing did)."""

    method: str
    path: str
    auth: Auth
    request_body: str | None
    status: int | None = None
    content_type: str | None = None
    response_body: str = ""
    elapsed_ms: float = 0.0
    error: str | None = None
    curl: str = ""
    parsed: Any = field(default=None, repr=False)
    raw: bytes = field(default=b"", repr=False)  # the body as received, for validation
    parse_error: str | None = None
    server_date: datetime | None = None  # the answer's Date header: the server's own clock

    @property
    def server_error(self) -> bool:
        return self.error is not None or (self.status is not None and self.status >= 500)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "auth": self.auth,
            "requestBody": self.request_body,
            "status": self.status,
            "contentType": self.content_type,
            "responseBody": self.response_body[:MAX_KEPT_BODY],
            "elapsedMs": round(self.elapsed_ms, 1),
            "error": self.error,
            "curl": self.curl,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Exchange:
        """An exchange read back from ``as_dict`` (a stored run); the raw body is not kept."""
        return cls(
            data["method"], data["path"], data["auth"], data["requestBody"], status=data["status"],
            content_type=data["contentType"], response_body=data["responseBody"], elapsed_ms=data["elapsedMs"],
            error=data["error"], curl=data["curl"],
        )  # fmt: skip


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


class SandboxClient:
    def __init__(
        self, base_url: str, token: str, token_env: str, *, timeout: float = 30.0, guard: OutboundPolicy | None = None
    ) -> None:
        """``guard``: the target was given by a tenant of this server, so this address rule applies."""
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.token_env = token_env
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout, event_hooks=guard.event_hooks if guard else None
        )
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def mask(self, text: str) -> str:
        return text.replace(self._token, f"${self.token_env}") if self._token else text

    def post(
        self, path: str, body: bytes | None, *, auth: Auth = "token", content_type: str = "application/json"
    ) -> Exchange:
        headers = {
            "Content-Type": content_type,
            "Accept": "application/json",
            "User-Agent": f"arsync-sandbox/{__version__}",
        }
        shown_auth = {
            "token": f"Bearer ${self.token_env}",
            "wrong": "Bearer ask_sandbox_wrong_token",
            "basic": "Basic c2FuZGJveDpzYW5kYm94",
            "empty": "Bearer ",
        }.get(auth)
        if path.endswith("/push") and body is not None:
            # As arsync sends pushes: one key per record. A byte-identical retry is the same
            # record, so it carries the same key; any other body gets its own.
            headers["Idempotency-Key"] = "sandbox-" + hashlib.blake2b(body, digest_size=12).hexdigest()
        if auth == "token":
            headers["Authorization"] = f"Bearer {self._token}"
        elif shown_auth is not None:
            headers["Authorization"] = shown_auth
        text = body.decode(errors="replace") if body is not None else None
        exchange = Exchange("POST", path, auth, self.mask(text) if text is not None else None)
        key = headers.get("Idempotency-Key")
        exchange.curl = self._curl(path, shown_auth, content_type, exchange.request_body, key)
        started = time.perf_counter()
        try:
            response = self._client.post(path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            exchange.error = f"{type(exc).__name__}: {exc}"[:300]
        except OutboundRefused as exc:
            exchange.error = exc.message[:300]
        else:
            exchange.status = response.status_code
            exchange.content_type = response.headers.get("content-type")
            exchange.server_date = _http_date(response.headers.get("date"))
            exchange.response_body = self.mask(response.text)
            exchange.raw = response.content
            try:
                exchange.parsed = orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                exchange.parse_error = str(exc)
        exchange.elapsed_ms = (time.perf_counter() - started) * 1000
        with self._lock:
            self.exchanges.append(exchange)
        return exchange

    def _curl(self, path: str, auth: str | None, content_type: str, body: str | None, key: str | None) -> str:
        parts = ["curl", "-sS", "-X", "POST", shlex.quote(f"{self.base_url}{path}")]
        if auth is not None:
            # Double quotes so the shell expands $VAR; the token itself never appears.
            parts += ["-H", f'"Authorization: {auth}"']
        parts += ["-H", shlex.quote(f"Content-Type: {content_type}")]
        if key is not None:
            parts += ["-H", shlex.quote(f"Idempotency-Key: {key}")]
        if body is not None:
            parts += ["--data", shlex.quote(body)]
        return " ".join(parts)
