"""The Xero connector: an :class:`~arsync.erp.port.ErpConnector` over Xero's Accounting API.

Reads: contacts become debtors, ACCREC invoices become invoices (``AmountDue`` is the amount
outstanding), receivable payments become payments. ``If-Modified-Since`` makes later syncs
incremental.

Every call goes through the organisation's :class:`CallBudget`, with a token from
:class:`XeroTokens`: a 401 refreshes the token once and repeats the call. A 429 holds the
organisation for its ``Retry-After`` and repeats the call (a bounded number of times), except
the daily limit, which ends the work with the time it resets.

Writes carry an ``Idempotency-Key`` derived from the push and are sent once per call. After
an uncertain failure (a timeout, a dropped connection, a 5xx: Xero may have stored the record)
the push service looks the invoice or payment up through the list reads before repeating it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import orjson
from pydantic import BaseModel, ValidationError

from arsync import metrics
from arsync.erp import contract
from arsync.erp.port import NewDebtor, Page, PushAttempt
from arsync.errors import (
    AuthenticationFailed,
    ConnectorError,
    ContractViolation,
    RateLimitExhausted,
    ReauthRequired,
    RemoteError,
    TransientError,
)
from arsync.http_retry import HttpRetryOptions, parse_retry_after
from arsync.outbound import OutboundPolicy
from arsync.xero import api
from arsync.xero.limits import CallBudget
from arsync.xero.tokens import XeroTokens

ModelT = TypeVar("ModelT", bound=BaseModel)
ACCOUNTING = "/api.xro/2.0"
MAX_PAGE_SIZE = 1000
UNCERTAIN_STATUSES = {500, 502, 503, 504}
DAY_SPENT_RECHECK_SECONDS = 3600.0
XERO_UNAVAILABLE = "Xero was unavailable or slow; arsync tries again by itself, or Sync now later"


@dataclass(frozen=True)
class XeroOptions(HttpRetryOptions):
    max_retry_after_seconds: float = 120.0
    max_rate_limit_waits: int = 50


class XeroConnector:
    def __init__(
        self,
        tokens: XeroTokens,
        xero_tenant_id: str,
        api_url: str,
        budget: CallBudget,
        options: XeroOptions | None = None,
        *,
        sales_account_code: str | None = None,
        outbound: OutboundPolicy,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.tokens = tokens
        self.sales_account_code = sales_account_code or api.DEFAULT_SALES_ACCOUNT_CODE
        self.tenant_id = xero_tenant_id
        self.budget = budget
        self.options = options or XeroOptions()
        self._sleep = sleep
        self._day_spent = False
        self._client = httpx.Client(
            base_url=api_url.rstrip("/") + ACCOUNTING,
            timeout=self.options.timeout_seconds,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "arsync"},
            event_hooks=outbound.event_hooks | {"response": [metrics.erp_response_hook("xero")]},
        )

    def close(self) -> None:
        self._client.close()

    # Reads ----------------------------------------------------------------------------------

    def health(self) -> contract.HealthResponse:
        """The token works and still reaches this organisation."""
        tenants = self.tokens.oauth.tenants(self.tokens.access_token())
        if not any(t.tenantId == self.tenant_id for t in tenants):
            raise ReauthRequired("this Xero organisation is no longer connected to arsync", endpoint="/connections")
        return contract.HealthResponse(schema_version="1", ok=True, service="xero")

    def list_debtors(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Debtor]:
        body = self._list("/Contacts", api.ContactsPage, page, limit, modified_since, {})
        # /Contacts returns suppliers too; only customers are debtors.
        return Page(page, [api.debtor(c) for c in body.Contacts if api.is_customer(c)],
                    api.has_more(body.pagination, page, len(body.Contacts), self._size(limit)))  # fmt: skip

    def list_invoices(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Invoice]:
        body = self._list("/Invoices", api.InvoicesPage, page, limit, modified_since, {"where": 'Type=="ACCREC"'})
        try:
            invoices = [api.invoice(i) for i in body.Invoices]
        except (ValidationError, ValueError) as exc:
            raise ContractViolation(f"a Xero invoice cannot be read: {exc}", endpoint="/Invoices", page=page) from exc
        return Page(page, invoices, api.has_more(body.pagination, page, len(body.Invoices), self._size(limit)))

    def list_payments(self, page: int, limit: int, modified_since: datetime | None) -> Page[contract.Payment]:
        # Reversed payments stay in Xero with Status DELETED (xero_accounting.yaml,
        # components.schemas.Payment.Status): they are read too, so the ledger can drop them.
        where = {"where": 'PaymentType=="ACCRECPAYMENT"'}
        body = self._list("/Payments", api.PaymentsPage, page, limit, modified_since, where)
        kept = [p for p in body.Payments if p.Status != "DELETED"]
        removed = [p.PaymentID for p in body.Payments if p.Status == "DELETED"]
        return Page(page, [api.payment(p) for p in kept],
                    api.has_more(body.pagination, page, len(body.Payments), self._size(limit)), removed)  # fmt: skip

    # Writes ---------------------------------------------------------------------------------

    def push_invoice(self, request: contract.InvoicePushRequest, attempt: PushAttempt) -> str:
        return self._put(
            "/Invoices",
            api.InvoicesPage,
            api.invoice_body(request, self.sales_account_code),
            attempt,
            created_id=lambda answer: self._single(answer.Invoices, "/Invoices").InvoiceID,
            params=api.UNITDP,
        )

    def push_payment(self, request: contract.PaymentPushRequest, attempt: PushAttempt) -> str:
        if not request.bank_account_code:
            raise RemoteError(
                "Xero needs a bank account code for payments",
                endpoint="/Payments",
                hint="reconnect Xero with bankAccountCode (e.g. 090), then retry the push",
            )
        return self._put(
            "/Payments",
            api.PaymentsPage,
            api.payment_body(request),
            attempt,
            created_id=lambda answer: self._single(answer.Payments, "/Payments").PaymentID,
        )

    def find_debtor(self, reference: str) -> str | None:
        """The contact arsync made for customer ``reference`` earlier, if Xero has it."""
        body = self._call("GET", "/Contacts", api.ContactsPage, params=api.contact_number_filter(reference),
                          retry_transient=True)  # fmt: skip
        return body.Contacts[0].ContactID if body.Contacts else None

    def create_debtor(self, debtor: NewDebtor, attempt: PushAttempt) -> str:
        return self._put(
            "/Contacts",
            api.ContactsPage,
            api.contact_body(debtor),
            attempt,
            created_id=lambda answer: self._single(answer.Contacts, "/Contacts").ContactID,
        )

    def _put(
        self,
        path: str,
        model: type[ModelT],
        body: dict[str, Any],
        attempt: PushAttempt,
        *,
        created_id: Callable[[ModelT], str],
        params: dict[str, str] | None = None,
    ) -> str:
        """Create one record, once per call, under the push's Idempotency-Key.

        Xero replays its first answer for a key it has seen. A transient failure is not
        repeated here: the push service looks the record up first, then repeats it, counted.
        """
        answer = self._call("PUT", path, model, params=params, json=body, idempotency_key=attempt.idempotency_key)
        return created_id(answer)

    @staticmethod
    def _single(records: list[Any], endpoint: str) -> Any:
        if len(records) != 1:
            raise ContractViolation(f"Xero answered with {len(records)} records for one", endpoint=endpoint)
        return records[0]

    # Plumbing -------------------------------------------------------------------------------

    @staticmethod
    def _size(limit: int) -> int:
        return min(limit, MAX_PAGE_SIZE)

    def _list(
        self,
        path: str,
        model: type[ModelT],
        page: int,
        limit: int,
        modified_since: datetime | None,
        params: dict[str, str],
    ) -> ModelT:
        headers = {}
        if modified_since is not None:
            headers["If-Modified-Since"] = modified_since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        query = params | {"page": str(page), "pageSize": str(self._size(limit))}
        return self._call("GET", path, model, params=query, headers=headers, page=page, retry_transient=True)

    def _call(
        self,
        method: str,
        path: str,
        model: type[ModelT],
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        page: int | None = None,
        retry_transient: bool = False,
    ) -> ModelT:
        """One Xero call; 401, 429 and (for reads) transient failures are handled here."""
        headers = dict(headers or {})
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key[:128]
        content = contract.dumps(json) if json is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        refreshed = False
        rate_waits = 0
        failures = 0
        while True:
            if self._day_spent:
                # Xero said no calls are left today; a call now would only earn the 429.
                raise RateLimitExhausted(
                    "Xero's daily limit of calls for this organisation is used up (X-DayLimit-Remaining: 0); "
                    "calls resume when Xero's rolling 24 hours free some",
                    endpoint=path, page=page, http_status=None, retry_after=DAY_SPENT_RECHECK_SECONDS,
                )  # fmt: skip
            token = self.tokens.access_token()
            try:
                with self.budget.slot():
                    response = self._client.request(
                        method, path, params=params, content=content,
                        headers=headers | {"Authorization": f"Bearer {token}", "xero-tenant-id": self.tenant_id},
                    )  # fmt: skip
                self.budget.observe(response.headers.get("x-minlimit-remaining"))
                if response.headers.get("x-daylimit-remaining", "").strip() == "0":
                    self._day_spent = True
                error = self._error(response, path, page)
            except httpx.TimeoutException as exc:
                metrics.count_erp_failure("xero", "timeout")
                error = TransientError(f"timed out after {self.options.timeout_seconds:g}s ({type(exc).__name__})",
                                       endpoint=path, page=page, hint=XERO_UNAVAILABLE)  # fmt: skip
            except httpx.TransportError as exc:
                metrics.count_erp_failure("xero", "transport")
                error = TransientError(f"connection failed ({type(exc).__name__})", endpoint=path, page=page,
                                       hint=XERO_UNAVAILABLE)  # fmt: skip
            if error is None:
                return self._parse(response, model, path, page)
            if isinstance(error, AuthenticationFailed) and not refreshed:
                self.tokens.refresh(token)
                refreshed = True
                continue
            if isinstance(error, TransientError) and error.http_status == 429:
                rate_waits += 1
                if rate_waits > self.options.max_rate_limit_waits:
                    raise TransientError(f"still rate limited after {rate_waits - 1} waits", endpoint=path,
                                         page=page, http_status=429)  # fmt: skip
                self.budget.back_off(min(error.retry_after or 1.0, self.options.max_retry_after_seconds))
                continue
            if isinstance(error, TransientError) and retry_transient:
                failures += 1
                if failures >= self.options.max_attempts:
                    raise TransientError(f"{error.message} (gave up after {failures} attempts)", endpoint=path,
                                         page=page, http_status=error.http_status)  # fmt: skip
                self._sleep(self.options.wait_before_retry(failures))
                continue
            raise error

    def _error(self, response: httpx.Response, path: str, page: int | None) -> ConnectorError | None:
        status = response.status_code
        if status == 200:
            return None
        if status == 401:
            return AuthenticationFailed("Xero rejected the access token", endpoint=path, page=page, http_status=401,
                                        hint="reconnect Xero, then Sync now")  # fmt: skip
        if status == 403:
            return ReauthRequired("Xero refused access to this organisation", endpoint=path, page=page,
                                  http_status=403)  # fmt: skip
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if response.headers.get("x-rate-limit-problem", "").lower() == "day":
                resumes = datetime.now(UTC) + timedelta(seconds=retry_after or 0)
                return RateLimitExhausted(
                    "Xero's daily limit of calls for this organisation is used up; calls can resume after "
                    f"{resumes:%Y-%m-%d %H:%M} UTC",
                    endpoint=path, page=page, http_status=429, retry_after=retry_after,
                )  # fmt: skip
            return TransientError("rate limited by Xero", endpoint=path, page=page, http_status=429,
                                  retry_after=retry_after, hint=XERO_UNAVAILABLE)  # fmt: skip
        if status in UNCERTAIN_STATUSES:
            return TransientError(f"Xero answered HTTP {status}", endpoint=path, page=page, http_status=status,
                                  hint=XERO_UNAVAILABLE)  # fmt: skip
        return RemoteError(f"Xero refused the request: {_xero_message(response)}", endpoint=path, page=page,
                           http_status=status, hint="fix the record in arsync or Xero, then retry")  # fmt: skip

    @staticmethod
    def _parse(response: httpx.Response, model: type[ModelT], path: str, page: int | None) -> ModelT:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ContractViolation(f"Xero's answer is not what its API documents: {exc.errors()[:2]}",
                                    endpoint=path, page=page, http_status=200,
                                    hint="report this to the arsync team with the sync run id") from exc  # fmt: skip


def _xero_message(response: httpx.Response) -> str:
    """The validation messages of a Xero error body, or its status."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return f"HTTP {response.status_code}"
    messages = [
        error.get("Message")
        for element in (body.get("Elements") or [] if isinstance(body, dict) else [])
        for error in element.get("ValidationErrors") or []
    ]
    found = [m for m in messages if isinstance(m, str)]
    if found:
        return "; ".join(found)[:500]
    detail = body.get("Detail") or body.get("Message") if isinstance(body, dict) else None
    return str(detail)[:500] if detail else f"HTTP {response.status_code}"
