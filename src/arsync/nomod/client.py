"""An HTTP client for the parts of Nomod's API arsync uses, with its errors made exact.

Every failure becomes a :class:`NomodError` whose message is one of the five stable ones.
Timeouts, connection errors, 429 (``Retry-After`` honoured) and 5xx are retried a bounded
number of times; anything else is answered at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from arsync import outbound
from arsync.errors import ArsyncError, OutboundRefused
from arsync.http_retry import HttpRetryOptions, parse_retry_after

CUSTOMER_NOT_FOUND = "Customer not found"
EMAIL_EXISTS = "Email already exists"
INVALID_EMAIL = "Invalid email format"
MISSING_FIELDS = "Missing required fields"
API_ERROR = "Nomod API error"

CODES = {
    CUSTOMER_NOT_FOUND: "NOMOD_CUSTOMER_NOT_FOUND",
    EMAIL_EXISTS: "NOMOD_EMAIL_EXISTS",
    INVALID_EMAIL: "NOMOD_INVALID_EMAIL",
    MISSING_FIELDS: "NOMOD_MISSING_FIELDS",
    API_ERROR: "NOMOD_API_ERROR",
}


# What the platform API answers with for each, when a request runs into it.
RESPONSE_STATUS = {
    CUSTOMER_NOT_FOUND: 404,
    EMAIL_EXISTS: 409,
    INVALID_EMAIL: 422,
    MISSING_FIELDS: 422,
    API_ERROR: 502,
}


class NomodError(ArsyncError):
    """A Nomod call (or its prerequisites) failed. ``message`` is one of the five stable ones."""

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        http_status: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.code = CODES[message]
        self.response_status = RESPONSE_STATUS[message]
        self.transient = transient
        self.unauthorized = http_status == 401
        self.retry_after = retry_after
        self.http_status = http_status
        self.detail = detail
        super().__init__(message, details={"httpStatus": http_status, "detail": detail, "transient": transient})

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail, "httpStatus": self.http_status}


KNOWN_MESSAGES = {EMAIL_EXISTS, INVALID_EMAIL, MISSING_FIELDS, CUSTOMER_NOT_FOUND}


class NomodClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        options: HttpRetryOptions | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options or HttpRetryOptions()
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=self.options.timeout_seconds,
            headers={"X-API-KEY": api_key, "Accept": "application/json", "User-Agent": "arsync"},
            event_hooks=outbound.EVENT_HOOKS,
        )

    def close(self) -> None:
        self._client.close()

    def create_customer(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/customers", payload)

    def create_invoice(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/invoices", payload)

    def create_link(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/links", payload)

    def get_charge(self, charge_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/charges/{charge_id}", None)

    # Plumbing ----------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = error.retry_after if isinstance(error, NomodError) else None
        return self.options.wait_before_retry(state.attempt_number, retry_after)

    def _call(self, method: str, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        retrying = Retrying(
            stop=stop_after_attempt(self.options.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, NomodError) and e.transient),
            sleep=self._sleep,
            reraise=True,
        )
        result: dict[str, Any] = retrying(self._attempt, method, path, payload)
        return result

    def _attempt(self, method: str, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        where = f"{method} {path}"
        try:
            response = self._client.request(
                method,
                path,
                content=orjson.dumps(payload) if payload is not None else None,
                headers={"Content-Type": "application/json"} if payload is not None else None,
            )
        except OutboundRefused as exc:
            raise NomodError(API_ERROR, detail=f"{where}: {exc.message}") from None
        except httpx.TimeoutException:
            raise NomodError(API_ERROR, detail=f"{where}: timed out", transient=True) from None
        except httpx.TransportError as exc:
            raise NomodError(API_ERROR, detail=f"{where}: {type(exc).__name__}", transient=True) from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                raise NomodError(API_ERROR, detail=f"{where}: answer is not JSON", http_status=status) from None
            if not isinstance(body, dict):
                raise NomodError(API_ERROR, detail=f"{where}: answer is not a JSON object", http_status=status)
            return body
        remote = _remote_message(response.content)
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after")) if status == 429 else None
            raise NomodError(
                API_ERROR, detail=f"{where}: HTTP {status} {remote}".strip(), http_status=status,
                transient=True, retry_after=retry_after,
            )  # fmt: skip
        if remote in KNOWN_MESSAGES:
            raise NomodError(remote, detail=f"{where}: HTTP {status}", http_status=status)
        hint = " (check the Nomod API key)" if status in (401, 403) else ""
        raise NomodError(API_ERROR, detail=f"{where}: HTTP {status} {remote}{hint}".strip(), http_status=status)


def _remote_message(raw: bytes) -> str:
    """The ``error.message`` of a Nomod error body, if it is one."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message[:300] if isinstance(message, str) else ""
