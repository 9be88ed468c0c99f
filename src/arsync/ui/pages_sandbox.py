"""The Developer Sandbox page: run the conformance checks against a middleware from the browser.

A run executes in a background thread of this process and keeps its results in memory (the
last ``MAX_KEPT_RUNS``); the page polls it with htmx until it ends. The token is used for the
run only: it is never stored, shown, or written to a report (requests record ``$TOKEN``).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from arsync import outbound
from arsync.erp.service import validate_base_url
from arsync.errors import ArsyncError, NotFound
from arsync.mocks.erp import MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.sandbox import report as reports
from arsync.sandbox.checks import CheckResult, Report, SuiteCannotRun, run_checks, select_checks
from arsync.ui.base import ActionDep, Ui, UiDep, plain_words, redirect, render

router = APIRouter(include_in_schema=False)
MAX_KEPT_RUNS = 50
TOKEN_ENV = "TOKEN"
BUILTIN_MOCK_PATH = "/sandbox/mock-erp"

# Groups in page order: (key, label, request path). A check belongs to the first group whose
# test matches its name.
GROUPS = (
    ("health", "Health", "POST /health"),
    ("general", "Authentication, errors and versioning", "every endpoint"),
    ("debtors.list", "Debtors list", "POST /debtors/list"),
    ("invoices.list", "Invoices list", "POST /invoices/list"),
    ("payments.list", "Payments list", "POST /payments/list"),
    ("invoices.push", "Invoice push", "POST /invoices/push"),
    ("payments.push", "Payment push", "POST /payments/push"),
)
VERDICT_ORDER = {"FAIL": 0, "WARN": 1, "SKIP": 2, "PASS": 3}


def group_of(check_name: str) -> str:
    if check_name == "health":
        return "health"
    for entity in ("invoices", "payments"):
        if check_name.startswith(f"{entity}.push"):
            return f"{entity}.push"
    for entity in ("debtors", "invoices", "payments"):
        if check_name.startswith(f"{entity}."):
            return f"{entity}.list"
    return "general"


def normal_endpoint(value: str | None) -> str | None:
    """``/invoices/push``, ``invoices/push`` and ``invoices.push`` all name one group."""
    if not value:
        return None
    key = value.strip().strip("/").replace("/", ".").lower()
    if key in ("debtors", "invoices", "payments"):
        key += ".list"
    return key if any(key == g[0] for g in GROUPS) else None


@dataclass
class SandboxRun:
    id: str
    tenant_id: str
    base_url: str
    builtin: bool
    allow_writes: bool
    total: int
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    results: list[CheckResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report: Report | None = None
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for r in self.results if r.verdict == v) for v in VERDICT_ORDER}

    def blockers(self) -> int:
        return sum(1 for r in self.results if r.verdict == "FAIL" and r.mandatory)

    def groups(self) -> list[dict[str, Any]]:
        grouped: dict[str, list[CheckResult]] = {key: [] for key, _, _ in GROUPS}
        for result in list(self.results):
            grouped[group_of(result.name)].append(result)
        views = []
        for index, (key, label, path) in enumerate(GROUPS):
            results = sorted(grouped[key], key=lambda r: (VERDICT_ORDER[r.verdict], not r.mandatory, r.name))
            blockers = sum(1 for r in results if r.verdict == "FAIL" and r.mandatory)
            views.append({
                "key": key, "label": label, "path": path, "results": results, "blockers": blockers,
                "counts": {v: sum(1 for r in results if r.verdict == v) for v in VERDICT_ORDER}, "order": index,
            })  # fmt: skip
        return sorted((v for v in views if v["results"]), key=lambda v: (v["blockers"] == 0, v["order"]))


class SandboxRuns:
    """The runs this process started, newest last; each visible to its own tenant only."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, SandboxRun] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, tenant_id: str, base_url: str, token: str, *, allow_writes: bool, builtin: bool) -> SandboxRun:
        run = SandboxRun(
            id=secrets.token_hex(6), tenant_id=tenant_id, base_url=base_url, builtin=builtin,
            allow_writes=allow_writes, total=len(select_checks(None)),
        )  # fmt: skip
        with self._lock:
            self._runs[run.id] = run
            while len(self._runs) > MAX_KEPT_RUNS:
                self._runs.popitem(last=False)
        threading.Thread(target=self._execute, args=(run, token), name=f"sandbox-{run.id}", daemon=True).start()
        return run

    def get(self, tenant_id: str, run_id: str) -> SandboxRun:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None or run.tenant_id != tenant_id:
            raise NotFound(f"sandbox run {run_id} not found (runs are kept in memory until the server restarts)")
        return run

    @staticmethod
    def _execute(run: SandboxRun, token: str) -> None:
        try:
            run.report = run_checks(
                run.base_url, token, token_env=TOKEN_ENV, allow_writes=run.allow_writes,
                progress=lambda result, _i, _n: run.results.append(result),
                on_start=run.warnings.extend, guarded=not run.builtin,
            )  # fmt: skip
        except SuiteCannotRun as exc:
            run.error = str(exc)
        except Exception as exc:  # the page must show the run ended, whatever happened
            run.error = f"the sandbox stopped unexpectedly: {type(exc).__name__}: {exc}"
        finally:
            run.finished_at = datetime.now(UTC)


@dataclass
class BuiltinMock:
    """The mock ERP mounted inside the server, so the sandbox can target it with one click."""

    state: MockErpState
    token: str


def builtin_mock() -> BuiltinMock:
    token = f"ask_{secrets.token_urlsafe(24)}"
    return BuiltinMock(MockErpState(MockErpData(40, 120, 80, seed=11), token=token), token)


def mount_builtin_mock(app: Any) -> BuiltinMock:
    mock = builtin_mock()
    app.mount(BUILTIN_MOCK_PATH, create_mock_erp_app(mock.state))
    return mock


def _runs(request: Request) -> SandboxRuns:
    runs: SandboxRuns = request.app.state.sandbox_runs
    return runs


@router.get("/sandbox", response_class=HTMLResponse)
def sandbox_page(
    request: Request,
    ui: UiDep,
    product: Annotated[str, Query(max_length=40)] = "nudge",
    endpoint: Annotated[str | None, Query(max_length=100)] = None,
    run: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    if product != "nudge":
        return render(ui, request, "sandbox.html", status_code=404, product_error=(
            f"The sandbox checks the Nudge REST contract only (product=nudge), not {product!r}."
        ), checks=select_checks(None), groups=GROUPS)  # fmt: skip
    current = None
    if run:
        try:
            current = _runs(request).get(ui.tenant.id, run)
        except ArsyncError as exc:
            return redirect(f"/sandbox?product=nudge{_endpoint_param(endpoint)}", error=plain_words(exc))
    return render(
        ui, request, "sandbox.html", run=current, endpoint=normal_endpoint(endpoint), endpoint_raw=endpoint,
        groups=GROUPS, builtin_url=_builtin_url(request), total=len(select_checks(None)),
    )  # fmt: skip


def _endpoint_param(endpoint: str | None) -> str:
    key = normal_endpoint(endpoint)
    return f"&endpoint={key}" if key else ""


def _builtin_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + BUILTIN_MOCK_PATH


@router.post("/sandbox/runs")
def start_run(
    request: Request,
    ui: ActionDep,
    base_url: Annotated[str, Form(max_length=2000)] = "",
    token: Annotated[str, Form(max_length=2000)] = "",
    builtin: Annotated[bool, Form()] = False,
    allow_writes: Annotated[bool, Form()] = False,
    endpoint: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if builtin:
        mock: BuiltinMock = request.app.state.builtin_mock
        base_url, token, allow_writes = _builtin_url(request), mock.token, True
    try:
        base_url = validate_base_url(base_url)
        if not builtin:
            outbound.check_url(base_url, "base_url")
    except ArsyncError as exc:
        return redirect(f"/sandbox?product=nudge{_endpoint_param(endpoint)}", error=plain_words(exc))
    if not token.strip():
        return redirect(
            f"/sandbox?product=nudge{_endpoint_param(endpoint)}",
            error="Enter the token your middleware expects (the Bearer key arsync would send).",
        )
    run = _runs(request).start(ui.tenant.id, base_url, token.strip(), allow_writes=allow_writes, builtin=builtin)
    return redirect(f"/sandbox?product=nudge&run={run.id}{_endpoint_param(endpoint)}")


@router.get("/sandbox/runs/{run_id}", response_class=HTMLResponse)
def run_progress(
    request: Request, ui: UiDep, run_id: str, endpoint: Annotated[str | None, Query(max_length=100)] = None
) -> Response:
    """The results panel alone: htmx polls it while the run is going."""
    run = _runs(request).get(ui.tenant.id, run_id)
    return render(ui, request, "_sandbox_results.html", run=run, endpoint=normal_endpoint(endpoint))


@router.get("/sandbox/runs/{run_id}/report.json")
def report_json(request: Request, ui: UiDep, run_id: str) -> Response:
    report = _finished_report(request, ui, run_id)
    return Response(reports.to_json(report), media_type="application/json", headers=_download(run_id, "json"))


@router.get("/sandbox/runs/{run_id}/report.xml")
def report_junit(request: Request, ui: UiDep, run_id: str) -> Response:
    report = _finished_report(request, ui, run_id)
    return Response(reports.to_junit(report), media_type="application/xml", headers=_download(run_id, "xml"))


def _finished_report(request: Request, ui: Ui, run_id: str) -> Report:
    run = _runs(request).get(ui.tenant.id, run_id)
    if run.report is None:
        raise NotFound(
            f"sandbox run {run_id} has no report yet" if not run.done else f"sandbox run {run_id} could not run"
        )
    return run.report


def _download(run_id: str, extension: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="arsync-sandbox-{run_id}.{extension}"'}
