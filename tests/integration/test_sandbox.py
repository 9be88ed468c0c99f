"""The Developer Sandbox over loopback HTTP: against the mock ERP (it passes, and each broken variant
fails one check) and against middlewares written fresh for the tests."""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from arsync.mocks.erp import BREAKAGES, MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.sandbox import report
from arsync.sandbox.checks import CheckResult, SuiteCannotRun, all_checks, basis, run_checks
from tests.contract_middleware import ContractMiddleware
from tests.contract_middleware import create_app as create_contract_app

TOKEN = "ask_sandbox_secret_7f3a9c"

# Each broken variant of the mock and the one check aimed at it.
AIMED_AT = {
    "no-auth": "auth.missing_token",
    "wrong-version-echo": "schema_version.echo",
    "endless-has-more": "invoices.terminates",
    "non-idempotent-push": "invoices.push_retry",
    "nonstandard-errors": "error_body.shape",
    "page2-500": "server.no_5xx",
    "ignore-modified-since": "debtors.modified_since_future",
    "ignore-idempotency-key": "payments.push_retry",
}


def _serve(*breakages: str) -> RunningServer:
    state = MockErpState(MockErpData(60, 120, 90, seed=5), token=TOKEN, breakages=frozenset(breakages))
    return serve_in_thread(create_mock_erp_app(state))


@pytest.fixture(scope="module")
def conforming() -> Iterator[RunningServer]:
    with _serve() as server:
        yield server


def test_there_are_at_least_25_named_checks() -> None:
    names = [c.name for c in all_checks()]
    assert len(names) >= 25 and len(set(names)) == len(names)


def test_the_mock_erp_passes_every_check(conforming: RunningServer) -> None:
    seen: list[tuple[str, int, int]] = []

    def progress(result: CheckResult, index: int, total: int) -> None:
        seen.append((result.name, index, total))

    result = run_checks(conforming.url, TOKEN, token_env="MW_TOKEN", allow_writes=True, progress=progress)
    verdicts = {r.name: r.verdict for r in result.results}
    assert set(verdicts.values()) == {"PASS"}, {
        n: (v, r.reason) for n, v, r in ((r.name, r.verdict, r) for r in result.results) if v != "PASS"
    }
    assert result.warnings == [] and not result.failed
    assert [s[1] for s in seen] == list(range(1, len(all_checks()) + 1)) and seen[-1][2] == len(all_checks())


@pytest.mark.parametrize("breakage", sorted(AIMED_AT))
def test_each_broken_variant_fails_exactly_its_check(breakage: str) -> None:
    assert set(AIMED_AT) == set(BREAKAGES)
    with _serve(breakage) as server:
        result = run_checks(server.url, TOKEN, token_env="MW_TOKEN", allow_writes=True)
    flagged = [r for r in result.results if r.verdict == "FAIL" or (r.verdict == "WARN" and r.tier == "SHOULD")]
    assert [r.name for r in flagged] == [AIMED_AT[breakage]], [(r.name, r.reason) for r in flagged]
    (failure,) = flagged
    # A SHOULD breach (working, but costly) warns and does not fail the run; a MUST breach fails it.
    assert (failure.verdict, bool(result.failed)) == (("FAIL", True) if failure.tier == "MUST" else ("WARN", False))
    assert failure.reason and failure.expected is not None and failure.actual is not None
    assert failure.curl and failure.curl.startswith("curl ") and TOKEN not in failure.curl
    if breakage != "no-auth":  # that one reproduces a request sent without a token
        assert '"Authorization: Bearer $MW_TOKEN"' in failure.curl


def test_writes_are_opt_in(conforming: RunningServer) -> None:
    result = run_checks(conforming.url, TOKEN, only=["invoices.push", "payments.push"])
    assert {r.verdict for r in result.results} == {"SKIP"}
    assert all("--allow-writes" in r.reason for r in result.results)


def test_only_selects_checks_and_refuses_unknown_names(conforming: RunningServer) -> None:
    result = run_checks(conforming.url, TOKEN, only=["auth.*", "health"])
    assert [r.name for r in result.results] == ["health", "auth.missing_token", "auth.invalid_token",
                                                "auth.malformed_header"]  # fmt: skip
    with pytest.raises(ValueError, match="no check is named"):
        run_checks(conforming.url, TOKEN, only=["no.such.check"])


def test_a_refused_token_or_a_dead_server_cannot_be_checked(conforming: RunningServer) -> None:
    with pytest.raises(SuiteCannotRun, match="every call got 401: check the token"):
        run_checks(conforming.url, "ask_not_the_token", token_env="MW_TOKEN")
    with pytest.raises(SuiteCannotRun, match="cannot reach"):
        run_checks("http://127.0.0.1:9", TOKEN, timeout=2)


def test_reports_carry_every_check_and_never_the_token() -> None:
    with _serve("page2-500") as server:
        result = run_checks(server.url, TOKEN, token_env="MW_TOKEN", allow_writes=True)
    as_json = report.to_json(result)
    as_xml = report.to_junit(result)
    assert TOKEN.encode() not in as_json and TOKEN.encode() not in as_xml

    document = orjson.loads(as_json)
    assert len(document["checks"]) == len(all_checks()) and document["writePrefix"] == f"SBX-{result.run_id}"
    assert document["summary"]["FAIL"] == 1 and document["summary"]["mandatoryFailed"] == 1
    health = next(c for c in document["checks"] if c["name"] == "health")
    (exchange,) = health["exchanges"]
    assert exchange["status"] == 200 and exchange["elapsedMs"] >= 0 and '"schemaVersion":"1"' in exchange["requestBody"]
    assert '"ok":true' in exchange["responseBody"].replace(" ", "")

    suite = ET.fromstring(as_xml)
    cases = suite.findall("testcase")
    assert len(cases) == len(all_checks()) == int(suite.get("tests", "0"))
    failures = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["server.no_5xx"] and suite.get("failures") == "1"
    assert "reproduce: curl" in (failures[0].find("failure").text or "")  # type: ignore[union-attr]
    skipped = [c.get("name") for c in cases if c.find("skipped") is not None]
    assert int(suite.get("skipped", "0")) == len(skipped) > 0


# Middlewares written fresh for these tests (tests/contract_middleware.py), not the mock ERP ---------


@contextmanager
def _fresh(**options: Any) -> Iterator[tuple[ContractMiddleware, RunningServer]]:
    erp = ContractMiddleware.with_records(**options)
    with serve_in_thread(create_contract_app(erp)) as server:
        yield erp, server


def _must_failures(report: Any) -> list[tuple[str, str]]:
    return [(r.name, r.reason) for r in report.failed]


def test_a_correct_fresh_middleware_passes_with_no_must_failure() -> None:
    with _fresh() as (erp, server):
        report = run_checks(server.url, erp.token, token_env="MW_TOKEN", allow_writes=True)
    assert _must_failures(report) == []
    assert [r.name for r in report.results if r.verdict == "FAIL"] == []


def test_a_server_side_page_cap_is_legal() -> None:
    """Pages shorter than limit with hasMore: true; the seeds say to page until hasMore is false."""
    with _fresh(page_cap=25) as (erp, server):
        report = run_checks(server.url, erp.token, token_env="MW_TOKEN", allow_writes=True)
    assert _must_failures(report) == []


def test_has_more_computed_from_the_requested_limit_is_caught_as_lost_records() -> None:
    with _fresh(page_cap=25, has_more_from_limit=True) as (erp, server):
        report = run_checks(server.url, erp.token, token_env="MW_TOKEN")
    failed = {name: reason for name, reason in _must_failures(report)}
    assert "invoices.no_gaps" in failed and "hasMore was false while records remained" in failed["invoices.no_gaps"]
    gap = next(r for r in report.results if r.name == "invoices.no_gaps")
    assert gap.curl and "/invoices/list" in gap.curl


def test_a_list_that_ignores_the_token_fails_naming_its_endpoint_with_a_working_curl() -> None:
    with _fresh(open_paths=frozenset({"/invoices/list"})) as (erp, server):
        report = run_checks(server.url, erp.token, token_env="MW_TOKEN", only=["auth.*"])
        failed = [r for r in report.results if r.verdict == "FAIL"]
        assert [r.name for r in failed][:1] == ["auth.missing_token"], [(r.name, r.reason) for r in failed]
        failure = failed[0]
        assert "/invoices/list" in failure.reason and failure.curl is not None
        # The curl reproduces the breach: run as a shell would, it gets the 200 the check saw.
        argv = shlex.split(failure.curl)
        url, body = argv[4], argv[argv.index("--data") + 1]
        answer = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200 and "invoices" in answer.json()


# Each bug a fresh middleware has, and the one check that must flag it (MUST fails, SHOULD warns).
FRESH_BUGS = {
    "reject_three_decimals": ("invoices.push_real_data", "FAIL"),
    "ascii_only": ("server.no_5xx", "FAIL"),
    "push_without_version": ("invoices.push", "FAIL"),
    "date_only_filter": ("invoices.modified_since_precise", "FAIL"),
    "slow_health": ("latency", "WARN"),
    "overpaid_invoice": ("invoices.sanity", "WARN"),
    "hide_pushed": ("invoices.push_visible", "FAIL"),
    "list_without_version": ("schema_version.echo", "FAIL"),
    "text_content_type": ("content_type", "FAIL"),
    "overlap_pages": ("invoices.no_gaps", "FAIL"),
    "us_dates": ("invoices.schema", "FAIL"),
}


@pytest.mark.parametrize("bug", sorted(FRESH_BUGS))
def test_each_bug_of_a_fresh_middleware_is_flagged_by_its_check(bug: str) -> None:
    value: Any = 2.2 if bug == "slow_health" else True
    with _fresh(**{bug: value}) as (erp, server):
        report = run_checks(server.url, erp.token, token_env="MW_TOKEN", allow_writes=True)
    # Latency is judged against a wall clock, so a loaded test machine can slow a correct page past
    # the check's 2 s; only the bug that is about latency is held to it.
    flagged = [(r.name, r.verdict) for r in report.results
               if (r.verdict == "FAIL" or (r.verdict == "WARN" and r.tier == "SHOULD"))
               and (r.name != "latency" or bug == "slow_health")]  # fmt: skip
    assert flagged == [FRESH_BUGS[bug]], [(r.name, r.verdict, r.reason) for r in report.results if r.verdict != "PASS"]
    ((name, _),) = flagged
    result = next(r for r in report.results if r.name == name)
    assert result.curl and result.curl.startswith("curl "), "the evidence must be a request to run"


def test_the_readme_lists_every_check_with_its_tier_and_basis() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for check in all_checks():
        assert f"| `{check.name}` | {check.tier} | {basis(check.name)} |" in readme, check.name
