"""The Developer Sandbox page: run the conformance checks against a middleware from the browser.

Runs are kept per tenant in the database (``arsync.sandbox.flows``); the page polls a
running one with htmx until it ends. The token is used for the run only: it is never stored,
shown, or written to a report (requests record ``$TOKEN``). A passing run can be shared as a
public conformance summary and badge.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from arsync.errors import ArsyncError, NotFound
from arsync.outbound import validate_base_url
from arsync.sandbox import report as reports
from arsync.sandbox.checks import CheckResult, Report, select_checks
from arsync.sandbox.flows import SandboxHistory
from arsync.sandbox.report import badge_svg
from arsync.ui.base import ActionDep, Ui, UiDep, plain_words, redirect, render

router = APIRouter(include_in_schema=False)

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


def result_groups(results: list[CheckResult]) -> list[dict[str, Any]]:
    """The results by endpoint group, groups with blocking failures first."""
    grouped: dict[str, list[CheckResult]] = {key: [] for key, _, _ in GROUPS}
    for result in results:
        grouped[group_of(result.name)].append(result)
    views = []
    for index, (key, label, path) in enumerate(GROUPS):
        members = sorted(grouped[key], key=lambda r: (VERDICT_ORDER[r.verdict], not r.mandatory, r.name))
        blockers = sum(1 for r in members if r.verdict == "FAIL" and r.mandatory)
        views.append({
            "key": key, "label": label, "path": path, "results": members, "blockers": blockers,
            "counts": {v: sum(1 for r in members if r.verdict == v) for v in VERDICT_ORDER}, "order": index,
        })  # fmt: skip
    return sorted((v for v in views if v["results"]), key=lambda v: (v["blockers"] == 0, v["order"]))


def _history(request: Request) -> SandboxHistory:
    history: SandboxHistory = request.app.state.sandbox_history
    return history


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
            current = _history(request).get(ui.tenant.id, run)
        except ArsyncError as exc:
            return redirect(f"/sandbox?product=nudge{_endpoint_param(endpoint)}", error=plain_words(exc))
    return render(
        ui, request, "sandbox.html", run=current, endpoint=normal_endpoint(endpoint), endpoint_raw=endpoint,
        groups=GROUPS, result_groups=result_groups(current.results) if current else [],
        total=len(select_checks(None)),
        history=_history(request).recent(ui.tenant.id),
    )  # fmt: skip


def _endpoint_param(endpoint: str | None) -> str:
    key = normal_endpoint(endpoint)
    return f"&endpoint={key}" if key else ""


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
        # The target is a mock ERP started for the run (see history.builtin_mock_erp), never a
        # URL built from this request.
        run_id = _history(request).start(ui.tenant.id, "", "", allow_writes=True, builtin=True)
        return redirect(f"/sandbox?product=nudge&run={run_id}{_endpoint_param(endpoint)}")
    try:
        base_url = validate_base_url(base_url)
        ui.container.outbound.check_url(base_url, "base_url")
    except ArsyncError as exc:
        return redirect(f"/sandbox?product=nudge{_endpoint_param(endpoint)}", error=plain_words(exc))
    if not token.strip():
        return redirect(
            f"/sandbox?product=nudge{_endpoint_param(endpoint)}",
            error="Enter the token your middleware expects (the Bearer key arsync would send).",
        )
    run_id = _history(request).start(ui.tenant.id, base_url, token.strip(), allow_writes=allow_writes, builtin=builtin)
    return redirect(f"/sandbox?product=nudge&run={run_id}{_endpoint_param(endpoint)}")


@router.get("/sandbox/runs/{run_id}", response_class=HTMLResponse)
def run_progress(
    request: Request, ui: UiDep, run_id: str, endpoint: Annotated[str | None, Query(max_length=100)] = None
) -> Response:
    """The results panel alone: htmx polls it while the run is going."""
    run = _history(request).get(ui.tenant.id, run_id)
    return render(
        ui, request, "_sandbox_results.html", run=run, endpoint=normal_endpoint(endpoint),
        result_groups=result_groups(run.results),
    )  # fmt: skip


@router.get("/sandbox/runs/{run_id}/report.json")
def report_json(request: Request, ui: UiDep, run_id: str) -> Response:
    report = _finished_report(request, ui, run_id)
    return Response(reports.to_json(report), media_type="application/json", headers=_download(run_id, "json"))


@router.get("/sandbox/runs/{run_id}/report.xml")
def report_junit(request: Request, ui: UiDep, run_id: str) -> Response:
    report = _finished_report(request, ui, run_id)
    return Response(reports.to_junit(report), media_type="application/xml", headers=_download(run_id, "xml"))


def _finished_report(request: Request, ui: Ui, run_id: str) -> Report:
    run = _history(request).get(ui.tenant.id, run_id)
    report = run.report()
    if report is None:
        raise NotFound(
            f"sandbox run {run_id} has no report yet" if not run.done else f"sandbox run {run_id} could not run"
        )
    return report


@router.post("/sandbox/runs/{run_id}/share")
def share_run(request: Request, ui: ActionDep, run_id: str) -> Response:
    back = f"/sandbox?product=nudge&run={run_id}"
    try:
        _history(request).share(ui.tenant.id, run_id)
    except ArsyncError as exc:
        return redirect(back, error=plain_words(exc))
    return redirect(back, notice="Shared: anyone with the links below can see this run's summary and badge.")


@router.get("/sandbox/shared/{share_token}.json")
def shared_summary(request: Request, share_token: str) -> Response:
    """Public: the conformance summary of a run its tenant shared."""
    summary = _history(request).shared(share_token)
    return Response(orjson.dumps(summary, option=orjson.OPT_INDENT_2), media_type="application/json",
                    headers={"Cache-Control": "public, max-age=300"})  # fmt: skip


@router.get("/sandbox/shared/{share_token}.svg")
def shared_badge(request: Request, share_token: str) -> Response:
    """Public: the run's badge, for a middleware's README."""
    summary = _history(request).shared(share_token)
    return Response(badge_svg(summary), media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=300"})


def _download(run_id: str, extension: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="arsync-sandbox-{run_id}.{extension}"'}
