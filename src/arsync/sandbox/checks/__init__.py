"""The Developer Sandbox: named conformance checks of a middleware against the Nudge REST contract v1.

Each check sends the requests the platform sends and judges the answers: PASS, FAIL, WARN or
SKIP, with a reason. A FAIL names what was expected, what came back, the JSON path that broke
and a ``curl`` line that reproduces it.

Checks are kept apart so that one breach fails one check. A server error (5xx, timeout) is
reported by ``server.no_5xx`` alone; the checks it interrupted are skipped. A check that only
means something once another passed (a concurrent push after an idempotent retry, a paging
comparison after the list ends) names that check in ``requires`` and is skipped otherwise.

``run_checks`` is the one way in; the CLI and the web page both call it, with a progress
callback.
"""

from arsync.sandbox.checks._catalog import BASIS, all_checks, basis
from arsync.sandbox.checks._core import (
    ENTITIES,
    VERDICTS,
    Check,
    CheckResult,
    Context,
    Outcome,
    Tier,
    Verdict,
)
from arsync.sandbox.checks._quality import latency_by_endpoint
from arsync.sandbox.checks._runner import Progress, Report, SuiteCannotRun, preflight, run_checks, select_checks

__all__ = [
    "BASIS",
    "ENTITIES",
    "VERDICTS",
    "Check",
    "CheckResult",
    "Context",
    "Outcome",
    "Progress",
    "Report",
    "SuiteCannotRun",
    "Tier",
    "Verdict",
    "all_checks",
    "basis",
    "latency_by_endpoint",
    "preflight",
    "run_checks",
    "select_checks",
]
