"""Every error arsync raises on purpose.

    ArsyncError                     base: a stable ``code`` and a human ``message``
    ├── Unauthorized                missing, unknown or revoked API key (401)
    ├── Forbidden                   a key used outside its tenant and environment (403)
    ├── NotFound                    a record does not exist in this tenant and environment
    ├── InvalidInput                the caller sent something unusable (names the field)
    ├── Conflict                    the request clashes with current state
    └── ConnectorError              an ERP call failed; carries endpoint, page, status, contract code
        ├── TransientError          timeouts, resets, 502/503/504, 429: retried with backoff
        ├── AuthenticationFailed    401 from the middleware
        ├── ContractViolation       a body that breaks the Nudge contract (incl. schemaVersion)
        ├── PagingError             paging that does not advance, or exceeds the page cap
        ├── ReauthRequired          a native ERP refused the refresh token: reconnect (NEEDS_REAUTH)
        ├── RateLimitExhausted      a native ERP's daily call limit is used up
        ├── OutboundRefused         the URL's host is an address arsync does not call (see outbound.py)
        └── RemoteError             any other non-success answer

Secrets never go into an error: messages are built from endpoints, ids and contract codes.
"""

from __future__ import annotations

from typing import Any


class ArsyncError(Exception):
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class Unauthorized(ArsyncError):
    code = "UNAUTHORIZED"


class Forbidden(ArsyncError):
    code = "FORBIDDEN"


class NotFound(ArsyncError):
    code = "NOT_FOUND"


class InvalidInput(ArsyncError):
    code = "VALIDATION_FAILED"


class Conflict(ArsyncError):
    code = "CONFLICT"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        if code:
            self.code = code


HINTS = {
    "AuthenticationFailed": "rotate the key or fix middleware config, then Sync now",
    "ContractViolation": "fix the middleware so its response matches the Nudge REST contract v1, then Sync now",
    "PagingError": "fix the middleware's paging (page, limit, hasMore), then Sync now",
    "TransientError": "the middleware was unavailable; check it is up, then Sync now",
    "RemoteError": "check the middleware logs for this request, then Sync now",
    "ReauthRequired": "reconnect Xero (GET /api/v1/connections/xero/authorize), then Sync now",
    "RateLimitExhausted": "wait until the time given in the message, then Sync now",
    "OutboundRefused": "point the connection at an address arsync may call (see ARSYNC_OUTBOUND_ALLOW_PRIVATE)",
}


class ConnectorError(ArsyncError):
    """An ERP call failed. ``str()`` gives one line naming where and why."""

    code = "ERP_ERROR"
    # What a sync that ends with this error makes of its connection (None: leave it as it is).
    connection_status: str | None = "FAILED"

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        page: int | None = None,
        http_status: int | None = None,
        contract_code: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.page = page
        self.http_status = http_status
        self.contract_code = contract_code
        self.retry_after = retry_after
        self.hint = hint or HINTS.get(type(self).__name__, HINTS["RemoteError"])
        self.message = message
        super().__init__(message, details=self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": type(self).__name__,
            "endpoint": self.endpoint,
            "page": self.page,
            "httpStatus": self.http_status,
            "code": self.contract_code,
            "message": self.message,
            "hint": self.hint,
        }

    def __str__(self) -> str:
        where = self.endpoint + (f" page {self.page}" if self.page is not None else "")
        status = f" HTTP {self.http_status}" if self.http_status is not None else ""
        code = f" {self.contract_code}" if self.contract_code else ""
        return f"{where}:{status}{code} {self.message} (hint: {self.hint})"


class TransientError(ConnectorError):
    pass


class AuthenticationFailed(ConnectorError):
    code = "ERP_UNAUTHORIZED"


class ContractViolation(ConnectorError):
    code = "ERP_CONTRACT_VIOLATION"


class PagingError(ConnectorError):
    code = "ERP_PAGING_ERROR"


class ReauthRequired(ConnectorError):
    code = "ERP_NEEDS_REAUTH"
    connection_status = "NEEDS_REAUTH"


class RateLimitExhausted(ConnectorError):
    code = "ERP_RATE_LIMITED"
    connection_status = None


class RemoteError(ConnectorError):
    pass


class OutboundRefused(ConnectorError):
    code = "OUTBOUND_ADDRESS_REFUSED"
