"""The REST-middleware connector: the Nudge REST contract v1 over httpx.

Reads: transient failures (timeouts, connection errors, 502/503/504 and 429) are retried a
bounded number of times with exponential backoff, honouring a capped ``Retry-After``.
Pushes are sent once per call (see ``push_invoice``). Everything else fails at once with an
error naming the endpoint, page, HTTP status and contract code.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import certifi
import httpx
import orjson
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from arsync import metrics
from arsync.erp import contract
from arsync.erp.port import Page, PushAttempt
from arsync.errors import (
    AuthenticationFailed,
    ConnectorError,
    ContractViolation,
    RemoteError,
    TransientError,
)
from arsync.http_retry import HttpRetryOptions, parse_retry_after
from arsync.outbound import OutboundPolicy

ModelT = TypeVar("ModelT", bound=contract.ContractModel)
TRANSIENT_STATUSES = {429, 502, 503, 504}


@dataclass(frozen=True)
class RestOptions(HttpRetryOptions):
    max_response_bytes: int = 64 * 1024 * 1024


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every connector.

    httpx builds a new context (loading the whole CA bundle) per client by default, which costs
    tens of milliseconds of CPU; a push opens a client each time, so the context is shared.
    """
    return ssl.create_default_context(cafile=certifi.where())


class RestConnector:
    """An :class:`~arsync.erp.port.ErpConnector` for middleware speaking the Nudge contract."""

    def __init__(
        self,
        base_url: str,
        token: str,
        options: RestOptions | None = None,
        *,
        outbound: OutboundPolicy,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options or RestOptions()
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=base_url,
            timeout=self.options.timeout_seconds,
            transport=transport,
            verify=_tls_context(),
            event_hooks=outbound.event_hooks | {"response": [metrics.erp_response_hook("rest")]},
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "arsync",
            },
        )

    def close(self) -> None:
        self._client.close()

    # The six operations -------------------------------------------------------------

    def health(self) -> contract.HealthResponse:
        return self._call("/health", contract.HealthRequest(), contract.HealthResponse)

    def list_debtors(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Debtor]:
        body = self._call("/debtors/list", self._list(page, limit, modified_since), contract.DebtorPage, page)
        return Page(page, body.debtors, body.has_more)

    def list_invoices(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Invoice]:
        body = self._call("/invoices/list", self._list(page, limit, modified_since), contract.InvoicePage, page)
        return Page(page, body.invoices, body.has_more)

    def list_payments(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Payment]:
        body = self._call("/payments/list", self._list(page, limit, modified_since), contract.PaymentPage, page)
        return Page(page, body.payments, body.has_more)

    # A push is sent once per call, with the push's Idempotency-Key (an additive header; the
    # contract ignores unknown headers). Repeating it after a timeout here could create the
    # record twice at a middleware that does not honour the key, so the push service repeats
    # it, counted, and only after looking up whether the first one arrived.
    def push_invoice(self, request: contract.InvoicePushRequest, attempt: PushAttempt) -> str:
        return self._send_once("/invoices/push", request, contract.InvoicePushResponse, attempt).erp_invoice_id

    def push_payment(self, request: contract.PaymentPushRequest, attempt: PushAttempt) -> str:
        return self._send_once("/payments/push", request, contract.PaymentPushResponse, attempt).erp_payment_id

    def _send_once(
        self, endpoint: str, request: contract.ContractModel, response_model: type[ModelT], attempt: PushAttempt
    ) -> ModelT:
        headers = {"Idempotency-Key": attempt.idempotency_key}
        return self._attempt(endpoint, contract.dumps(request), response_model, None, headers)

    # Plumbing ---------------------------------------------------------------------

    @staticmethod
    def _list(page: int, limit: int, modified_since: datetime | None) -> contract.ListRequest:
        return contract.ListRequest(page=page, limit=limit, modified_since=modified_since)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = error.retry_after if isinstance(error, ConnectorError) else None
        return self.options.wait_before_retry(state.attempt_number, retry_after)

    def _call(
        self,
        endpoint: str,
        request: contract.ContractModel,
        response_model: type[ModelT],
        page: int | None = None,
    ) -> ModelT:
        body = contract.dumps(request)
        retrying = Retrying(
            stop=stop_after_attempt(self.options.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            result: ModelT = retrying(self._attempt, endpoint, body, response_model, page)
            return result
        except TransientError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise TransientError(
                f"{exc.message} (gave up after {attempts} attempts)",
                endpoint=endpoint,
                page=page,
                http_status=exc.http_status,
                contract_code=exc.contract_code,
            ) from exc

    def _attempt(
        self,
        endpoint: str,
        body: bytes,
        response_model: type[ModelT],
        page: int | None,
        headers: dict[str, str] | None = None,
    ) -> ModelT:
        try:
            with self._client.stream("POST", endpoint, content=body, headers=headers) as response:
                raw = self._read_capped(response, endpoint, page)
        except httpx.TimeoutException as exc:
            metrics.count_erp_failure("rest", "timeout")
            raise TransientError(
                f"timed out after {self.options.timeout_seconds:g}s ({type(exc).__name__})",
                endpoint=endpoint,
                page=page,
            ) from exc
        except httpx.TransportError as exc:
            metrics.count_erp_failure("rest", "transport")
            raise TransientError(f"connection failed ({type(exc).__name__})", endpoint=endpoint, page=page) from exc

        status = response.status_code
        if status == 200:
            return self._parse(raw, response_model, endpoint, page)
        code, message = self._error_fields(raw)
        if status == 401:
            error_type: type[ConnectorError] = AuthenticationFailed
            message = message or "the middleware rejected the API key"
        elif status in TRANSIENT_STATUSES:
            error_type = TransientError
            message = message or f"HTTP {status}"
        else:
            error_type = RemoteError
            message = message or f"unexpected HTTP {status}"
        retry_after = parse_retry_after(response.headers.get("retry-after")) if status == 429 else None
        raise error_type(
            message, endpoint=endpoint, page=page, http_status=status, contract_code=code, retry_after=retry_after
        )

    def _read_capped(self, response: httpx.Response, endpoint: str, page: int | None) -> bytes:
        limit = self.options.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise ContractViolation(
                    f"response larger than {limit} bytes; return smaller pages",
                    endpoint=endpoint, page=page, http_status=response.status_code,
                )  # fmt: skip
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _error_fields(raw: bytes) -> tuple[str | None, str | None]:
        """``(code, message)`` from a standard error body, if the body is one."""
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None, None
        if not isinstance(parsed, dict):
            return None, None
        code = parsed.get("code") if isinstance(parsed.get("code"), str) else None
        error = parsed.get("error")
        message = error if isinstance(error, str) else None
        return code, message[:500] if message else None

    @staticmethod
    def _parse(raw: bytes, model: type[ModelT], endpoint: str, page: int | None) -> ModelT:
        try:
            return contract.parse_response(raw, model)
        except contract.ResponseBreach as breach:
            raise ContractViolation(breach.message, endpoint=endpoint, page=page, http_status=200) from None
