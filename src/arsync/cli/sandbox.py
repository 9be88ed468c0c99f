"""``arsync sandbox check``: the Developer Sandbox from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arsync.cli.common import console, err_console, secret_from_env
from arsync.errors import InvalidInput
from arsync.outbound import validate_base_url
from arsync.sandbox import report as sandbox_report
from arsync.sandbox.checks import CheckResult, SuiteCannotRun, run_checks

sandbox_app = typer.Typer(
    add_completion=False, help="The Developer Sandbox: check a middleware against the contract.", no_args_is_help=True
)

VERDICT_STYLE = {"PASS": "green", "FAIL": "red", "WARN": "yellow", "SKIP": "dim"}


@sandbox_app.command("check")
def sandbox_check(
    base_url: Annotated[str, typer.Option("--base-url", help="The middleware's base URL.")],
    token_env: Annotated[
        str, typer.Option("--token-env", help="Environment variable holding the middleware token (never printed).")
    ],
    allow_writes: Annotated[
        bool, typer.Option("--allow-writes", help="Also run the push checks; they create SBX-<run id> records.")
    ] = False,
    only: Annotated[str | None, typer.Option("--only", help="Comma-separated check names or prefixes.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    junit_file: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report here.")] = None,
    badge_file: Annotated[
        Path | None, typer.Option("--badge", help="Write an SVG conformance badge here (for a README).")
    ] = None,
    page_size: Annotated[int, typer.Option(min=1, max=10_000, help="limit for list walks (the platform's)")] = 1000,
    max_pages: Annotated[int, typer.Option(min=1, help="Page cap per list walk.")] = 1000,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per request.")] = 30.0,
    strict: Annotated[
        bool, typer.Option("--strict", help="Also exit 1 when a SHOULD check warns (works, but costs the user).")
    ] = False,
) -> None:
    """Check a middleware against the contract.

    Exit 0 when every MUST check passes (and, with --strict, no SHOULD check warns), 1 when one
    fails, 2 when the suite could not run.
    """
    try:
        base_url = validate_base_url(base_url)
    except InvalidInput as exc:
        err_console.print(f"[red]cannot run:[/red] {exc.message}")
        raise typer.Exit(2) from None
    token = secret_from_env(token_env, "the middleware token")

    def show(result: CheckResult, index: int, total: int) -> None:
        style = VERDICT_STYLE[result.verdict]
        tier = "" if result.tier == "MUST" else f"({result.tier}) "
        console.print(f"[{style}]{result.verdict:4}[/{style}] {result.name:32} {tier}{result.reason}", soft_wrap=True)
        if result.verdict == "FAIL" or (result.verdict == "WARN" and result.curl):
            if result.path:
                console.print(f"       path:     {result.path}", soft_wrap=True)
            console.print(f"       expected: {result.expected!r}", soft_wrap=True)
            console.print(f"       actual:   {result.actual!r}", soft_wrap=True)
            if result.curl:
                console.print(f"       reproduce: {result.curl}", soft_wrap=True, markup=False, highlight=False)

    try:
        names = only.split(",") if only else None
        report = run_checks(base_url, token, token_env=token_env, allow_writes=allow_writes, only=names,
                            page_size=page_size, max_pages=max_pages, timeout=timeout,
                            progress=show, on_start=lambda warnings: _print_warnings(warnings))  # fmt: skip
    except (SuiteCannotRun, ValueError) as exc:
        err_console.print(f"[red]cannot run:[/red] {exc}")
        raise typer.Exit(2) from None
    counts = report.counts()
    if json_file:
        json_file.write_bytes(sandbox_report.to_json(report))
    if junit_file:
        junit_file.write_bytes(sandbox_report.to_junit(report))
    if badge_file:
        badge_file.write_text(sandbox_report.badge_svg(sandbox_report.conformance_of(report)))
    console.print(
        f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['WARN']} warnings, {counts['SKIP']} skipped "
        f"(run {report.run_id}{'; writes prefixed SBX-' + report.run_id if allow_writes else ''})"
    )
    raise typer.Exit(1 if report.failed or (strict and report.should_warnings) else 0)


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        console.print(f"[yellow bold]WARNING[/yellow bold] {warning}", soft_wrap=True)
