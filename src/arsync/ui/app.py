"""Puts the UI on the FastAPI app: sign-in, pages, static files, the built-in mock and error pages."""

from __future__ import annotations

import math
import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from arsync.accounts import service as accounts
from arsync.db import transaction, utcnow
from arsync.errors import ArsyncError, NotFound
from arsync.sandbox.flows import SandboxHistory
from arsync.ui.base import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ActionDep,
    CsrfRejected,
    LoginRequired,
    get_container,
    local_path,
    plain_words,
    redirect,
    render,
)
from arsync.ui.pages_cash import router as cash_router
from arsync.ui.pages_invoice_form import router as invoice_form_router
from arsync.ui.pages_ledger import router as ledger_router
from arsync.ui.pages_notifications import router as notifications_router
from arsync.ui.pages_reports import router as reports_router
from arsync.ui.pages_sandbox import router as sandbox_router
from arsync.ui.pages_settings import router as settings_router
from arsync.ui.pages_sync import router as sync_router
from arsync.web import errors as api_errors

router = APIRouter(include_in_schema=False)
STATIC_DIR = Path(__file__).parent / "static"


def _login_page(request: Request, *, error: str | None = None, email: str = "", next_url: str = "/") -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        None, request, "login.html", login_csrf=token, error=error, email=email, next_url=local_path(next_url),
        status_code=401 if error else 200,
    )  # fmt: skip
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/login"
    )
    return response


def _too_many_failures(request: Request, until: datetime, email: str, next_url: str) -> Response:
    wait = max(1, math.ceil((until - utcnow()).total_seconds() / 60))
    response = _login_page(
        request,
        error=(
            f"Too many failed sign-ins for this email or from this address. Try again in {wait} minutes, "
            "or from a browser you have signed in with before."
        ),
        email=email,
        next_url=next_url,
    )
    response.status_code = 429
    response.headers["Retry-After"] = str(wait * 60)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: Annotated[str | None, Query(max_length=500)] = None) -> Response:
    return _login_page(request, next_url=next or "/")


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not secrets.compare_digest(expected, csrf_token):
        return _login_page(request, error="Your sign-in form expired. Please try again.", email=email, next_url=next)
    container = get_container(request)
    secret_key = container.settings.resolved_secret_key
    device = accounts.trusted_device(secret_key, email, request.cookies.get(accounts.DEVICE_COOKIE))
    subjects = accounts.throttle_subjects(email, request.client.host if request.client else None, device)
    with transaction(container.session_factory) as session:
        locked_until = accounts.locked_until(session, subjects)
        token = None
        if locked_until is None:
            user = accounts.authenticate(session, email, password)
            if user is None:
                accounts.record_failure(session, subjects)
            else:
                accounts.clear_failures(session, subjects)
                token, _ = accounts.open_session(session, user)
    if locked_until is not None:
        return _too_many_failures(request, locked_until, email, next)
    if token is None:
        return _login_page(request, error="The email or password is not right.", email=email, next_url=next)
    response = redirect(next)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(accounts.SESSION_LIFETIME.total_seconds()), httponly=True,
        samesite="lax", secure=request.url.scheme == "https", path="/",
    )  # fmt: skip
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    if device is None:
        response.set_cookie(
            accounts.DEVICE_COOKIE, accounts.device_cookie(secret_key, email),
            max_age=int(accounts.DEVICE_LIFETIME.total_seconds()), httponly=True, samesite="strict",
            secure=request.url.scheme == "https", path="/login",
        )  # fmt: skip
    return response


@router.post("/logout")
def logout(request: Request, ui: ActionDep) -> Response:
    with ui.write() as session:
        accounts.close_session(session, request.cookies.get(SESSION_COOKIE))
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/environment")
def switch_environment(
    request: Request, ui: ActionDep, environment_id: Annotated[str, Form(max_length=40)]
) -> Response:
    try:
        with ui.write() as session:
            environment = accounts.switch_environment(
                session, accounts.SignedIn(ui.user, ui.ui_session), environment_id
            )
            name = environment.name
    except ArsyncError as exc:
        return redirect("/", error=plain_words(exc))
    return redirect("/", notice=f"You are now in the {name} environment.")


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/openapi.json", "/docs", "/redoc"))


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    return render(None, request, "error.html", status_code=status, title=title, message=message)


def install_ui(app: FastAPI) -> None:
    """Add the pages to ``app`` (whose ``state.container`` is set) and HTML error pages for them."""
    app.state.sandbox_history = SandboxHistory(app.state.container.session_factory, app.state.container.outbound)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # The form's /invoices/new and /invoices/{id}/edit come before the ledger's /invoices/{id}.
    for part in (
        router,
        invoice_form_router,
        ledger_router,
        cash_router,
        reports_router,
        sync_router,
        settings_router,
        notifications_router,
        sandbox_router,
    ):
        app.include_router(part)

    async def login_required(request: Request, _exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": "/login"})
        return redirect(f"/login?next={target}" if request.method == "GET" else "/login")

    async def csrf_rejected(request: Request, _exc: Exception) -> Response:
        return _error_page(
            request, 403, "This form has expired",
            "For your security the form could not be sent. Go back, reload the page and try again.",
        )  # fmt: skip

    async def arsync_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ArsyncError)
        if not _is_page(request):
            return await api_errors.arsync_error(request, exc)
        title = "Not found" if isinstance(exc, NotFound) else "That did not work"
        return _error_page(request, exc.status_code, title, plain_words(exc))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if not _is_page(request):
            return await api_errors.validation_error(request, exc)
        return _error_page(
            request, 400, "Please check the address", "A value in the page address or form is not valid."
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not _is_page(request):
            return await api_errors.http_error(request, exc)
        if exc.status_code == 404:
            return _error_page(request, 404, "Page not found", "There is no page at this address.")
        page = _error_page(request, exc.status_code, "That did not work", str(exc.detail))
        page.headers.update(exc.headers or {})
        return page

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(CsrfRejected, csrf_rejected)
    app.add_exception_handler(ArsyncError, arsync_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
