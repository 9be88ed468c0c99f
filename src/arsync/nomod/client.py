"""An HTTP client for the parts of Nomod's API arsync uses, with its errors made exact.

Every failure becomes a :class:`~arsync.errors.NomodError` of one of the five stable kinds,
chosen by Nomod's ``error.code``; Nomod's own words stay in ``detail``. Reads are retried a
bounded number of times after timeouts, connection errors, 429 (``Retry-After`` honoured)
and 5xx. Creates are retried only where nothing reached Nomod (connection refused, 429).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from arsync.errors import (
    NomodApiError,
    NomodCustomerNotFound,
    NomodEmailExists,
    NomodError,
    NomodInvalidEmail,
    NomodMissingFields,
    OutboundRefused,
)
from arsync.http_retry import HttpRetryOptions, parse_retry_after
from arsync.outbound import OutboundPolicy

# Nomod's documented error codes (API reference, "requests-responses": ``error.code``), each
# onto the stable error it means. Nomod documents no code for a duplicate email; that one is
# recognised by its wording (unknown; see _looks_like_duplicate_email).
CODE_ERRORS: dict[str, type[NomodError]] = {
    "invalid_email": NomodInvalidEmail,
    "field_required": NomodMissingFields,
    "invalid_customer": NomodCustomerNotFound,
}
# The seed's own wording, which some Nomod-compatible servers answer with instead of a code.
KNOWN_MESSAGES: dict[str, type[NomodError]] = {
    kind.stable_message: kind
    for kind in (NomodEmailExists, NomodInvalidEmail, NomodMissingFields, NomodCustomerNotFound)
}
PAGE_SIZE = 100


class NomodClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        options: HttpRetryOptions | None = None,
        *,
        outbound: OutboundPolicy,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options or HttpRetryOptions()
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=self.options.timeout_seconds,
            headers={"X-API-KEY": api_key, "Accept": "application/json", "User-Agent": "arsync"},
            event_hooks=outbound.event_hooks,
        )

    def close(self) -> None:
        self._client.close()

    # Creates are not repeated after an uncertain failure: Nomod documents no idempotency key,
    # so the caller looks for what the first try made before it tries again.

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Create one object: ``/v1/customers``, ``/v1/invoices`` or ``/v1/links``."""
        return self._call("POST", path, payload)

    def get_charge(self, charge_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/charges/{charge_id}", None)

    def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/invoices/{invoice_id}", None)

    def count(self, path: str) -> int:
        """How many objects a list endpoint holds (``count`` of its first page, one object long)."""
        return int(self._call("GET", path, None, params={"page": "1", "page_size": "1"}).get("count") or 0)

    def find(
        self, path: str, matches: Callable[[dict[str, Any]], bool], *, max_pages: int = 5
    ) -> dict[str, Any] | None:
        """The first object of a list endpoint (``/v1/customers``, ``/v1/invoices``, ``/v1/links``) that matches.

        Lists page with ``page``/``page_size`` into ``{count, next, previous, results}`` (Nomod API
        reference, pagination). Their order is unknown, so the first and the last pages are read,
        ``max_pages`` in all.
        """
        first = self._call("GET", path, None, params={"page": "1", "page_size": str(PAGE_SIZE)})
        pages = max(1, -(-int(first.get("count") or 0) // PAGE_SIZE))
        wanted = [1, *range(max(2, pages - max_pages + 2), pages + 1)]
        for number in wanted:
            body = (
                first
                if number == 1
                else self._call("GET", path, None, params={"page": str(number), "page_size": str(PAGE_SIZE)})
            )
            for item in body.get("results") or []:
                if isinstance(item, dict) and matches(item):
                    return item
        return None

    # Plumbing ----------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = error.retry_after if isinstance(error, NomodError) else None
        return self.options.wait_before_retry(state.attempt_number, retry_after)

    def _call(
        self, method: str, path: str, payload: dict[str, Any] | None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        def repeatable(error: BaseException) -> bool:
            if not isinstance(error, NomodError) or not error.transient:
                return False
            return method == "GET" or not error.uncertain

        retrying = Retrying(
            stop=stop_after_attempt(self.options.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(repeatable),
            sleep=self._sleep,
            reraise=True,
        )
        result: dict[str, Any] = retrying(self._attempt, method, path, payload, params)
        return result

    def _attempt(
        self, method: str, path: str, payload: dict[str, Any] | None, params: dict[str, str] | None
    ) -> dict[str, Any]:
        where = f"{method} {path}"
        try:
            response = self._client.request(
                method,
                path,
                params=params,
                content=orjson.dumps(payload) if payload is not None else None,
                headers={"Content-Type": "application/json"} if payload is not None else None,
            )
        except OutboundRefused as exc:
            raise NomodApiError(detail=f"{where}: {exc.message}") from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached Nomod: safe to try again.
            raise NomodApiError(detail=f"{where}: {type(exc).__name__}", transient=True) from None
        except httpx.TimeoutException:
            raise NomodApiError(detail=f"{where}: timed out", transient=True, uncertain=True) from None
        except httpx.TransportError as exc:
            raise NomodApiError(detail=f"{where}: {type(exc).__name__}", transient=True, uncertain=True) from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                raise NomodApiError(detail=f"{where}: answer is not JSON", http_status=status) from None
            if not isinstance(body, dict):
                raise NomodApiError(detail=f"{where}: answer is not a JSON object", http_status=status)
            return body
        code, remote = _remote_error(response.content)
        said = f"HTTP {status}" + (f" {code}" if code else "") + (f": {remote}" if remote else "")
        if status == 429 or code == "throttled":
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise NomodApiError(detail=f"{where}: {said}", http_status=status, transient=True,
                             retry_after=retry_after)  # fmt: skip
        if status >= 500:
            # Nomod may have stored the record before failing.
            raise NomodApiError(detail=f"{where}: {said}", http_status=status, transient=True,
                             uncertain=True)  # fmt: skip
        kind = _stable_error(path, status, code, remote)
        hint = " (check the Nomod API key)" if status in (401, 403) else ""
        raise kind(detail=f"{where}: {said}{hint}", http_status=status, nomod_code=code)


def _stable_error(path: str, status: int, code: str, remote: str) -> type[NomodError]:
    """Which of the five stable errors a refused request means."""
    if code in CODE_ERRORS:
        return CODE_ERRORS[code]
    if code == "not_found" and path.startswith("/v1/customers"):
        return NomodCustomerNotFound
    if remote in KNOWN_MESSAGES:
        return KNOWN_MESSAGES[remote]
    if status in (400, 409) and _looks_like_duplicate_email(remote):
        return NomodEmailExists
    return NomodApiError


def _looks_like_duplicate_email(remote: str) -> bool:
    # Unknown: Nomod documents no code for it. Seen wordings say "email" and "already exists".
    lowered = remote.lower()
    return "email" in lowered and ("already exists" in lowered or "already in use" in lowered)


def _remote_error(raw: bytes) -> tuple[str, str]:
    """``error.code`` and ``error.message`` of a Nomod error body, where it is one."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "", ""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code, message = error.get("code"), error.get("message")
    return (code[:100] if isinstance(code, str) else "", message[:300] if isinstance(message, str) else "")
