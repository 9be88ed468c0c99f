"""Every error arsync raises on purpose: one class per stable code, with the HTTP status an API
answer carries (``status_code``) and, where there is one, what the user can do (``hint``).

    ArsyncError                     INTERNAL_ERROR 500; base: a stable ``code`` and a human ``message``
    ├── Unauthorized                UNAUTHORIZED 401: missing, unknown or revoked API key
    ├── Forbidden                   FORBIDDEN 403: a key used outside its tenant and environment
    ├── NotFound                    NOT_FOUND 404: no such record in this tenant and environment
    ├── InvalidInput                VALIDATION_FAILED 422: the caller sent something unusable (names the field)
    ├── Conflict                    CONFLICT 409: the request clashes with current state
    │   ├── InvalidState            INVALID_STATE: the record's status does not allow it
    │   ├── ErpOwned                ERP_OWNED: the ERP owns the record; change it there
    │   ├── DuplicateInvoiceNumber  DUPLICATE_INVOICE_NUMBER
    │   ├── OverApplication         OVER_APPLICATION: more cash than the invoice has outstanding
    │   ├── EnvironmentExists       ENVIRONMENT_EXISTS
    │   ├── NotApplicable           NOT_APPLICABLE: a setting this kind of connection does not have
    │   ├── XeroNotConfigured       XERO_NOT_CONFIGURED: the server has no Xero app credentials
    │   └── RevokeFailed            REVOKE_FAILED: Xero did not confirm a revocation
    ├── PrerequisiteMissing         PREREQUISITE_MISSING 409: a push waits on something else first
    ├── NomodError                  a Nomod call, or what it needs, failed; Nomod's own words in ``detail``
    │   ├── NomodApiError           NOMOD_API_ERROR 502
    │   ├── NomodCustomerNotFound   NOMOD_CUSTOMER_NOT_FOUND 404
    │   ├── NomodEmailExists        NOMOD_EMAIL_EXISTS 409
    │   ├── NomodInvalidEmail       NOMOD_INVALID_EMAIL 422
    │   └── NomodMissingFields      NOMOD_MISSING_FIELDS 422
    └── ConnectorError              ERP_ERROR 502: an ERP call failed; carries endpoint, page, status, contract code
        ├── TransientError          timeouts, resets, 502/503/504, 429: retried with backoff
        ├── AuthenticationFailed    ERP_UNAUTHORIZED: 401 from the middleware
        ├── ContractViolation       ERP_CONTRACT_VIOLATION: a body that breaks the Nudge contract
        ├── PagingError             ERP_PAGING_ERROR: paging that does not advance, or exceeds the page cap
        ├── ReauthRequired          ERP_NEEDS_REAUTH: a native ERP refused the refresh token (NEEDS_REAUTH)
        ├── RateLimitExhausted      ERP_RATE_LIMITED: a native ERP's daily call limit is used up
        ├── OutboundRefused         OUTBOUND_ADDRESS_REFUSED: a host arsync does not call (see outbound.py)
        └── RemoteError             any other non-success answer

Secrets never go into an error: messages are built from endpoints, ids and contract codes.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ArsyncError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    status_code: ClassVar[int] = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class Unauthorized(ArsyncError):
    code = "UNAUTHORIZED"
    status_code = 401


class Forbidden(ArsyncError):
    code = "FORBIDDEN"
    status_code = 403


class NotFound(ArsyncError):
    code = "NOT_FOUND"
    status_code = 404


class InvalidInput(ArsyncError):
    code = "VALIDATION_FAILED"
    status_code = 422


class Conflict(ArsyncError):
    code = "CONFLICT"
    status_code = 409


class InvalidState(Conflict):
    code = "INVALID_STATE"


class ErpOwned(Conflict):
    code = "ERP_OWNED"


class DuplicateInvoiceNumber(Conflict):
    code = "DUPLICATE_INVOICE_NUMBER"


class OverApplication(Conflict):
    code = "OVER_APPLICATION"


class EnvironmentExists(Conflict):
    code = "ENVIRONMENT_EXISTS"


class NotApplicable(Conflict):
    code = "NOT_APPLICABLE"


class XeroNotConfigured(Conflict):
    code = "XERO_NOT_CONFIGURED"


class RevokeFailed(Conflict):
    code = "REVOKE_FAILED"


class PrerequisiteMissing(ArsyncError):
    """The push cannot be sent until something else happens first (a sync, another push)."""

    code = "PREREQUISITE_MISSING"
    status_code = 409

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message, details={"hint": hint})
        self.hint = hint


class NomodError(ArsyncError):
    """A Nomod call (or its prerequisites) failed. ``message`` is its class's stable one."""

    stable_message: ClassVar[str] = "Nomod API error"
    code = "NOMOD_API_ERROR"
    status_code = 502

    def __init__(
        self,
        *,
        detail: str | None = None,
        http_status: int | None = None,
        transient: bool = False,
        uncertain: bool = False,
        retry_after: float | None = None,
        nomod_code: str | None = None,
    ) -> None:
        # The request may have been carried out although no answer came back (timeout, 5xx).
        self.uncertain = uncertain
        self.nomod_code = nomod_code
        self.transient = transient
        self.unauthorized = http_status == 401
        self.retry_after = retry_after
        self.http_status = http_status  # Nomod's answer's status, not arsync's
        self.detail = detail
        super().__init__(
            self.stable_message, details={"httpStatus": http_status, "detail": detail, "transient": transient}
        )

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail, "httpStatus": self.http_status,
                "nomodCode": self.nomod_code, "uncertain": self.uncertain}  # fmt: skip


class NomodApiError(NomodError):
    pass


class NomodCustomerNotFound(NomodError):
    stable_message = "Customer not found"
    code = "NOMOD_CUSTOMER_NOT_FOUND"
    status_code = 404


class NomodEmailExists(NomodError):
    stable_message = "Email already exists"
    code = "NOMOD_EMAIL_EXISTS"
    status_code = 409


class NomodInvalidEmail(NomodError):
    stable_message = "Invalid email format"
    code = "NOMOD_INVALID_EMAIL"
    status_code = 422


class NomodMissingFields(NomodError):
    stable_message = "Missing required fields"
    code = "NOMOD_MISSING_FIELDS"
    status_code = 422


class ConnectorError(ArsyncError):
    """An ERP call failed. ``str()`` gives one line naming where and why."""

    code = "ERP_ERROR"
    status_code = 502
    hint: str = "check the middleware logs for this request, then Sync now"
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
        if hint:
            self.hint = hint
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
    hint = "the middleware was unavailable; check it is up, then Sync now"


class AuthenticationFailed(ConnectorError):
    code = "ERP_UNAUTHORIZED"
    hint = "rotate the key or fix middleware config, then Sync now"


class ContractViolation(ConnectorError):
    code = "ERP_CONTRACT_VIOLATION"
    hint = "fix the middleware so its response matches the Nudge REST contract v1, then Sync now"


class PagingError(ConnectorError):
    code = "ERP_PAGING_ERROR"
    hint = "fix the middleware's paging (page, limit, hasMore), then Sync now"


class ReauthRequired(ConnectorError):
    code = "ERP_NEEDS_REAUTH"
    hint = "reconnect Xero (GET /api/v1/connections/xero/authorize), then Sync now"
    connection_status = "NEEDS_REAUTH"


class RateLimitExhausted(ConnectorError):
    code = "ERP_RATE_LIMITED"
    hint = "wait until the time given in the message, then Sync now"
    connection_status = None


class RemoteError(ConnectorError):
    pass


class OutboundRefused(ConnectorError):
    code = "OUTBOUND_ADDRESS_REFUSED"
    hint = "point the connection at an address arsync may call (see ARSYNC_OUTBOUND_ALLOW_PRIVATE)"
