"""Running the suite: selection, preflight, the report."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from arsync.erp import contract
from arsync.outbound import OutboundPolicy
from arsync.sandbox.checks._catalog import (
    all_checks,
)
from arsync.sandbox.checks._core import (
    Check,
    CheckResult,
    Context,
    Outcome,
    Verdict,
    list_request,
)
from arsync.sandbox.checks._quality import (
    latency_by_endpoint,
)
from arsync.sandbox.client import SandboxClient


class SuiteCannotRun(Exception):
    """The target cannot be checked at all (unreachable, or it refuses the token everywhere)."""


@dataclass
class Report:
    base_url: str
    run_id: str
    started_at: datetime
    warnings: list[str]
    results: list[CheckResult]
    token_env: str
    latency: dict[str, dict[str, float]] = field(default_factory=dict)  # per endpoint: p50Ms, maxMs

    @property
    def failed(self) -> list[CheckResult]:
        """MUST checks that failed: the middleware breaks the contract or loses data."""
        return [r for r in self.results if r.verdict == "FAIL" and r.mandatory]

    @property
    def should_warnings(self) -> list[CheckResult]:
        """SHOULD checks that found a problem (they fail the run only with --strict)."""
        return [r for r in self.results if r.verdict == "WARN" and r.tier == "SHOULD"]

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for r in self.results if r.verdict == v) for v in ("PASS", "FAIL", "WARN", "SKIP")}


Progress = Callable[[CheckResult, int, int], None]


def select_checks(only: Iterable[str] | None) -> list[Check]:
    """All checks, or those named (a name, or a prefix ending in '.' or '*')."""
    checks = all_checks()
    wanted = [w.strip() for w in only or [] if w.strip()]
    if not wanted:
        return checks
    names = {c.name for c in checks}
    for w in wanted:
        prefix = w.rstrip("*")
        if w not in names and not any(n.startswith(prefix) for n in names):
            raise ValueError(f"no check is named {w!r}; known: {', '.join(sorted(names))}")
    return [c for c in checks if any(c.name == w or c.name.startswith(w.rstrip("*")) for w in wanted)]


def preflight(client: SandboxClient) -> list[str]:
    """Warnings that make any pass meaningless; raises SuiteCannotRun when nothing can be checked."""
    probe = client.post("/health", contract.dumps(contract.HealthRequest()))
    if probe.error is not None:
        raise SuiteCannotRun(f"cannot reach {client.base_url}/health: {probe.error}")
    if probe.status in (401, 403):
        raise SuiteCannotRun(
            f"every call got {probe.status}: check the token in ${client.token_env} (POST /health refused it)"
        )
    warnings = []
    if probe.status == 404:
        warnings.append(f"POST {client.base_url}/health is 404: is --base-url the middleware's base path?")
    elif probe.status is not None and probe.status >= 500:
        warnings.append(
            f"POST /health answered HTTP {probe.status}: the server is failing, most checks will be skipped"
        )
    unauthenticated = client.post("/debtors/list", contract.dumps(list_request(1, 1)), auth="none")
    if unauthenticated.status == 200:
        warnings.append("the server answered a request without any token: it does not check authentication")
    return warnings


def run_checks(
    base_url: str,
    token: str,
    *,
    token_env: str = "TOKEN",
    allow_writes: bool = False,
    only: Iterable[str] | None = None,
    page_size: int = 1000,
    max_pages: int = 1000,
    timeout: float = 30.0,
    progress: Progress | None = None,
    on_start: Callable[[list[str]], None] | None = None,
    guard: OutboundPolicy | None = None,
) -> Report:
    """Run the sandbox against ``base_url``; ``progress`` is called after each check.

    ``guarded``: the target came from a tenant of this server (the web UI), not from whoever runs
    the command, so arsync's outbound address rule applies.
    """
    checks = select_checks(only)
    client = SandboxClient(base_url, token, token_env, timeout=timeout, guard=guard)
    run_id = secrets.token_hex(4)
    started = datetime.now(UTC)
    try:
        warnings = preflight(client)
        if on_start is not None:
            on_start(warnings)
        ctx = Context(client, run_id, page_size, max_pages, allow_writes)
        results: list[CheckResult] = []
        for index, check in enumerate(checks, start=1):
            result = _run_one(ctx, check)
            ctx.results[check.name] = result
            results.append(result)
            if progress is not None:
                progress(result, index, len(checks))
        return Report(
            client.base_url, run_id, started, warnings, results, token_env, latency_by_endpoint(client.exchanges)
        )
    finally:
        client.close()


def _run_one(ctx: Context, check: Check) -> CheckResult:
    ctx.exchanges = []
    started = time.perf_counter()
    result = CheckResult(check.name, check.title, "PASS", "", tier=check.tier)
    if check.writes and not ctx.allow_writes:
        result.verdict, result.reason = "SKIP", "writes to the ERP; run with --allow-writes"
        return result
    # A requirement left out with --only does not block; one that ran and did not pass does.
    blocked = [n for n in check.requires if n in ctx.results and ctx.results[n].verdict not in ("PASS", "WARN")]
    if blocked:
        result.verdict, result.reason = "SKIP", f"needs {', '.join(blocked)} to pass first"
        return result
    try:
        note = check.run(ctx)
        if note:
            result.verdict, result.reason = "WARN", note
        else:
            result.reason = "as the contract requires"
    except Outcome as outcome:
        # A SHOULD check that finds a problem warns: the middleware works, at a cost.
        verdict: Verdict = "WARN" if outcome.verdict == "FAIL" and check.tier != "MUST" else outcome.verdict
        result.verdict, result.reason = verdict, outcome.reason
        result.expected, result.actual, result.path = outcome.expected, outcome.actual, outcome.path
        # Only the request that shows the problem: a check's last request may well have behaved.
        result.curl = outcome.exchange.curl if outcome.exchange else None
    except Exception as exc:  # a bug in a check must not stop the others
        result.verdict, result.reason = "FAIL", f"the check itself crashed: {type(exc).__name__}: {exc}"
        result.tier = "INFO"
    result.duration_ms = (time.perf_counter() - started) * 1000
    result.exchanges = list(ctx.exchanges)
    return result
