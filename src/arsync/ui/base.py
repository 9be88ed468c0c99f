"""What every UI page shares: sign-in and CSRF checks, rendering, flash messages, wording."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session

from arsync import money
from arsync.accounts import service as accounts
from arsync.accounts.models import UiSession, User
from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.errors import ArsyncError, ConnectorError, InvalidInput, NotFound
from arsync.tenancy.models import Environment, Tenant
from arsync.tenancy.scope import Scope

SESSION_COOKIE = "arsync_session"
LOGIN_CSRF_COOKIE = "arsync_login_csrf"
FLASH_COOKIE = "arsync_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
T = TypeVar("T")


class LoginRequired(Exception):
    """No valid session cookie: the browser goes to the sign-in page."""


class CsrfRejected(Exception):
    """A form without this session's CSRF token."""


@dataclass
class Ui:
    """The signed-in user's view of arsync: who, which tenant and environment, and the wiring."""

    container: Container
    user: User
    ui_session: UiSession
    tenant: Tenant
    environment: Environment
    environments: list[Environment]

    @property
    def scope(self) -> Scope:
        return Scope(self.tenant.id, self.environment.id)

    @property
    def csrf_token(self) -> str:
        return self.ui_session.csrf_token

    def db(self) -> Session:
        """A read-only session with one snapshot: a page never mixes states from two commits."""
        return self.container.read_session_factory()

    def write(self) -> AbstractContextManager[Session]:
        """The one way a UI action changes data: a session committed when the block ends, or
        rolled back if it raises (the API's request-scoped session does the same for its routes)."""
        return transaction(self.container.session_factory)


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def current_ui(request: Request) -> Ui:
    container = get_container(request)
    with container.session_factory() as session:
        signed_in = accounts.load_session(session, request.cookies.get(SESSION_COOKIE))
        if signed_in is None:
            raise LoginRequired()
        tenant = session.get(Tenant, signed_in.user.tenant_id)
        environment = session.get(Environment, signed_in.session.environment_id)
        assert tenant is not None and environment is not None
        choices = accounts.environments(session, tenant.id)
        session.expunge_all()
    return Ui(container, signed_in.user, signed_in.session, tenant, environment, choices)


UiDep = Annotated[Ui, Depends(current_ui)]


async def checked_ui(request: Request, ui: UiDep) -> Ui:
    """``current_ui`` for a state-changing request: it must carry the session's CSRF token."""
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        presented = field if isinstance(field, str) else None
    if not presented or not secrets.compare_digest(presented, ui.csrf_token):
        raise CsrfRejected()
    return ui


ActionDep = Annotated[Ui, Depends(checked_ui)]


# Rendering ------------------------------------------------------------------------------


def render(ui: Ui | None, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    flash = _read_flash(request)
    response = templates.TemplateResponse(
        request, template, {"ui": ui, "flash": flash, **context}, status_code=status_code
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    response.headers["Cache-Control"] = "no-store"
    return response


def local_path(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/``: never an open redirect."""
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


def redirect(url: str, *, notice: str | None = None, error: str | None = None) -> RedirectResponse:
    """A 303 to ``url`` (a path on this site) carrying a one-time message for the next page."""
    response = RedirectResponse(local_path(url), status_code=303)
    if notice or error:
        value = json.dumps({"kind": "error" if error else "notice", "text": error or notice})
        response.set_cookie(FLASH_COOKIE, quote(value), max_age=60, httponly=True, samesite="lax", path="/")
    return response


def back_to(request: Request, fallback: str) -> str:
    """The page the form was on (same site only), else ``fallback``."""
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        if parts.netloc == request.url.netloc and parts.path.startswith("/"):
            return parts.path + (f"?{parts.query}" if parts.query else "")
    return fallback


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(unquote(raw))
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None
    return {"kind": "error" if value.get("kind") == "error" else "notice", "text": value["text"][:1000]}


def act(request: Request, fallback: str, action: Callable[[], T], done: Callable[[T], str]) -> Response:
    """Run a form's action, then go back with ``done(result)``, or with the error in plain words."""
    try:
        result = action()
    except (ArsyncError, ValidationError) as exc:
        return redirect(back_to(request, fallback), error=plain_words(exc))
    return redirect(back_to(request, fallback), notice=done(result))


# Wording --------------------------------------------------------------------------------

FIELD_NAMES = {
    "baseUrl": "ERP address",
    "base_url": "ERP address",
    "bankAccountCode": "bank account code",
    "bank_account_code": "bank account code",
    "apiKey": "Nomod API key",
    "customerId": "customer",
    "customer_id": "customer",
    "invoiceNumber": "invoice number",
    "invoice_number": "invoice number",
    "issueDate": "issue date",
    "issue_date": "issue date",
    "dueDate": "due date",
    "due_date": "due date",
    "unitPrice": "unit price",
    "unit_price": "unit price",
    "invoiceId": "invoice",
    "invoice_id": "invoice",
}


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def plain_words(exc: Exception) -> str:
    """An error as an AR team reads it: what went wrong and what to do, without stack traces."""
    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors()[:5]:
            where = " ".join(FIELD_NAMES.get(str(p), str(p)) for p in error["loc"] if not isinstance(p, int))
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where or 'input'}: {message}")
        return "Please check the form. " + "; ".join(problems) + "."
    if isinstance(exc, NotFound):
        return _sentence(f"{exc.message}. It may have been deleted, or it belongs to another environment")
    if isinstance(exc, ConnectorError):
        return f"The ERP did not accept the request: {_sentence(exc.message)} What to do: {_sentence(exc.hint)}"
    if isinstance(exc, InvalidInput):
        field = (exc.details or {}).get("field")
        label = FIELD_NAMES.get(str(field), str(field)) if field else None
        return _sentence(f"{label}: {exc.message}" if label else exc.message)
    if isinstance(exc, ArsyncError):
        return _sentence(exc.message)
    return "Something went wrong on our side. Please try again; if it keeps happening, contact your administrator."


PLAIN_FAILURES = {
    "AuthenticationFailed": "The ERP refused arsync's key.",
    "TransientError": "The ERP did not answer in time or was unavailable, even after several tries.",
    "ContractViolation": "The ERP sent data in a form arsync cannot read.",
    "PagingError": "The ERP kept sending pages without end, or the same page twice.",
    "ReauthRequired": "Xero needs someone to sign in again and allow arsync access.",
    "RateLimitExhausted": "Xero's daily limit of requests was reached.",
    "RemoteError": "The ERP answered with an error.",
    "Abandoned": "The sync stopped part-way because the server running it stopped.",
    "InternalError": "arsync hit an error of its own.",
}


def error_advice(error: dict[str, Any] | None) -> tuple[str, str | None]:
    """A stored error (sync run, push or connection) as (what happened, what to do)."""
    if not error:
        return "", None
    where = error.get("endpoint")
    page = error.get("page")
    status = error.get("httpStatus")
    bits = []
    if where:
        bits.append(f"calling {where}" + (f" page {page}" if page else ""))
    if status:
        bits.append(f"HTTP {status}")
    if error.get("code"):
        bits.append(str(error["code"]))
    message = str(error.get("message") or "no details").strip().rstrip(".")
    detail = _sentence(message + (f" ({', '.join(bits)})" if bits else ""))
    remote = error.get("detail")  # what a payment provider said, e.g. "POST /v1/invoices: HTTP 503 Down"
    if remote:
        detail += f" {_sentence(str(remote))}"
    lead = PLAIN_FAILURES.get(str(error.get("kind")))
    hint = error.get("hint")
    return (f"{lead} Details: {detail}" if lead else detail), (_sentence(str(hint)) if hint else None)


def fmt_datetime(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def fmt_money(value: Decimal | str | None, currency: str) -> str:
    """An amount (a Decimal, or the API's exact string) as ``money.display`` shows it."""
    if value is None or value == "":
        return "—"
    return money.display(Decimal(value), currency)


templates.env.filters["dt"] = fmt_datetime
templates.env.filters["money"] = fmt_money
templates.env.tests["nonzero"] = lambda amount: Decimal(amount) != 0
templates.env.filters["duration"] = fmt_duration
templates.env.globals["CSRF_FIELD"] = CSRF_FIELD
