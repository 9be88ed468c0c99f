"""What a check is, how it ends and how answers are judged."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from arsync.erp import contract
from arsync.sandbox.client import Auth, Exchange, SandboxClient

Verdict = Literal["PASS", "FAIL", "WARN", "SKIP"]
VERDICTS: tuple[Verdict, ...] = ("FAIL", "WARN", "SKIP", "PASS")
# MUST: a contract breach or data loss (a failure exits 1). SHOULD: it works, but costs the user
# (a failure is a WARN; exit 0 unless --strict). INFO: reported, never judged.
Tier = Literal["MUST", "SHOULD", "INFO"]
ENTITIES = ("debtors", "invoices", "payments")
ID_FIELD = {"debtors": "erpDebtorId", "invoices": "erpInvoiceId", "payments": "erpPaymentId"}
PAGE_MODEL: dict[str, type[contract.ContractModel]] = {
    "debtors": contract.DebtorPage,
    "invoices": contract.InvoicePage,
    "payments": contract.PaymentPage,
}
FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)
WINDOW_PAGES, WINDOW_LIMIT = 5, 7


class Outcome(Exception):
    """How a check ended, when it ended early."""

    def __init__(
        self,
        verdict: Verdict,
        reason: str,
        *,
        expected: Any = None,
        actual: Any = None,
        path: str | None = None,
        exchange: Exchange | None = None,
    ) -> None:
        super().__init__(reason)
        self.verdict, self.reason = verdict, reason
        self.expected, self.actual, self.path, self.exchange = expected, actual, path, exchange


def fail(reason: str, **kwargs: Any) -> Outcome:
    return Outcome("FAIL", reason, **kwargs)


def skip(reason: str) -> Outcome:
    return Outcome("SKIP", reason)


@dataclass
class CheckResult:
    name: str
    title: str
    verdict: Verdict
    reason: str
    tier: Tier = "MUST"
    expected: Any = None
    actual: Any = None
    path: str | None = None
    curl: str | None = None
    duration_ms: float = 0.0
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def mandatory(self) -> bool:
        return self.tier == "MUST"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "verdict": self.verdict,
            "tier": self.tier,
            "mandatory": self.mandatory,
            "reason": self.reason,
            "expected": self.expected,
            "actual": self.actual,
            "path": self.path,
            "curl": self.curl,
            "durationMs": round(self.duration_ms, 1),
            "exchanges": [e.as_dict() for e in self.exchanges],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            data["name"], data["title"], data["verdict"], data["reason"], tier=data["tier"],
            expected=data["expected"], actual=data["actual"], path=data["path"], curl=data["curl"],
            duration_ms=data["durationMs"], exchanges=[Exchange.from_dict(e) for e in data["exchanges"]],
        )  # fmt: skip


@dataclass
class Walk:
    """A list read page by page: the records, the pages' sizes and flags, and how it ended."""

    records: list[dict[str, Any]] = field(default_factory=list)
    pages: list[tuple[int, bool]] = field(default_factory=list)  # (records on the page, hasMore)
    ended: bool = False
    problem: Outcome | None = None
    invalid: bool = False  # the problem is a page that breaks the contract's schema


@dataclass
class Context:
    client: SandboxClient
    run_id: str
    page_size: int
    max_pages: int
    allow_writes: bool
    results: dict[str, CheckResult] = field(default_factory=dict)
    walks: dict[str, Walk] = field(default_factory=dict)
    pushed: dict[str, Any] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)  # of the running check

    def post(
        self,
        path: str,
        body: bytes | contract.ContractModel | dict[str, Any] | None,
        *,
        auth: Auth = "token",
        content_type: str = "application/json",
    ) -> Exchange:
        raw = body if isinstance(body, bytes) or body is None else contract.dumps(body)
        exchange = self.client.post(path, raw, auth=auth, content_type=content_type)
        self.exchanges.append(exchange)
        return exchange


CheckFn = Callable[[Context], str | None]


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    run: CheckFn
    requires: tuple[str, ...] = ()
    writes: bool = False
    tier: Tier = "MUST"


# Judging answers ------------------------------------------------------------------------------


def ok_json(exchange: Exchange) -> dict[str, Any]:
    """The JSON object of a 200 answer; anything else ends the check."""
    if exchange.server_error:
        raise skip(
            f"the server failed this request ({exchange.error or f'HTTP {exchange.status}'}); reported by server.no_5xx"
        )
    if exchange.status != 200:
        raise fail(
            f"{exchange.path} answered HTTP {exchange.status}", expected=200, actual=exchange.status, exchange=exchange
        )
    if not isinstance(exchange.parsed, dict):
        raise fail(
            f"{exchange.path} did not answer a JSON object",
            expected="a JSON object",
            actual=exchange.response_body[:200],
            path="$",
            exchange=exchange,
        )
    return exchange.parsed


def validate(exchange: Exchange, model: type[contract.ContractModel]) -> dict[str, Any]:
    """The answer, read by the platform's own parser (``contract.parse_response``), byte for byte.

    Nothing is added or dropped first. A list or health answer whose schemaVersion is wrong is
    reported by ``schema_version.echo`` alone (one breach, one failure): the checks that meet it
    elsewhere are skipped, naming that check. No other check judges a push answer's version, so
    a push check fails on it.
    """
    body = ok_json(exchange)
    try:
        contract.parse_response(exchange.raw, model)
    except contract.ResponseBreach as breach:
        if breach.kind == "version" and not exchange.path.endswith("/push"):
            raise skip(
                f"{exchange.path} answered schemaVersion {breach.actual!r}; reported by schema_version.echo"
            ) from None
        raise fail(
            f"{exchange.path}: {breach.message}",
            expected=f"{model.__name__} per the contract",
            actual=repr(breach.actual)[:200],
            path=breach.path,
            exchange=exchange,
        ) from None
    return body


def error_body_problem(exchange: Exchange) -> str | None:
    """Why this is not the contract's standard error body, or None if it is."""
    body = exchange.parsed
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    try:
        contract.ErrorBody.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        return f"$.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return None


def expect_refusal(exchange: Exchange, statuses: Iterable[int], code: str | None, what: str) -> str | None:
    """A 4xx with the right status (and, when the body is standard, the right code)."""
    allowed = tuple(statuses)
    wanted = "HTTP 4xx" if len(allowed) > 10 else f"HTTP {' or '.join(map(str, allowed))}"
    if exchange.server_error:
        raise skip(
            f"{what}: the server failed ({exchange.error or f'HTTP {exchange.status}'}); reported by server.no_5xx"
        )
    if exchange.status not in allowed:
        raise fail(
            f"{what} was not refused as it should be",
            expected=wanted,
            actual=f"HTTP {exchange.status}",
            exchange=exchange,
        )
    if code is None:
        return None
    if error_body_problem(exchange) is not None:
        return f"HTTP {exchange.status} as expected; the body is not the standard one, so the code was not checked"
    if exchange.parsed.get("code") != code:
        raise fail(
            f"{what}: wrong error code",
            expected=code,
            actual=exchange.parsed.get("code"),
            path="$.code",
            exchange=exchange,
        )
    return None


def list_request(page: int, limit: int, modified_since: datetime | None = None) -> contract.ListRequest:
    return contract.ListRequest(page=page, limit=limit, modified_since=modified_since)


def walk(
    ctx: Context, entity: str, limit: int, *, modified_since: datetime | None = None, max_pages: int | None = None
) -> Walk:
    """Read a list until ``hasMore`` is false (or ``max_pages``); stops at the first problem."""
    result = Walk()
    seen: set[str] = set()
    for page in range(1, (max_pages or ctx.max_pages) + 1):
        exchange = ctx.post(f"/{entity}/list", list_request(page, limit, modified_since))
        try:
            body = validate(exchange, PAGE_MODEL[entity])
        except Outcome as problem:
            result.problem, result.invalid = problem, True
            return result
        records = body[entity]
        result.pages.append((len(records), body["hasMore"]))
        repeated = [r[ID_FIELD[entity]] for r in records if r[ID_FIELD[entity]] in seen]
        if repeated:
            result.problem = fail(
                f"page {page} repeats {len(repeated)} record(s) from earlier pages ({repeated[0]} first)",
                expected="every record once",
                actual=f"{repeated[0]} again on page {page}",
                path=f"$.{entity}[*].{ID_FIELD[entity]}",
                exchange=exchange,
            )
            return result
        seen.update(r[ID_FIELD[entity]] for r in records)
        result.records.extend(records)
        if not body["hasMore"]:
            result.ended = True
            return result
        if not records:
            result.problem = fail(
                f"page {page} is empty but says hasMore: true",
                expected="hasMore: false",
                actual="hasMore: true",
                path="$.hasMore",
                exchange=exchange,
            )
            return result
    return result


def full_walk(ctx: Context, entity: str) -> Walk:
    if entity not in ctx.walks:
        ctx.walks[entity] = walk(ctx, entity, ctx.page_size)
    return ctx.walks[entity]


def ids(records: list[dict[str, Any]], entity: str) -> list[str]:
    return [r[ID_FIELD[entity]] for r in records]


def last_listing(ctx: Context, entity: str) -> Exchange | None:
    """The check's own last request to ``entity``'s list: the evidence of what the list holds or lacks."""
    mine = [e for e in ctx.exchanges if e.path == f"/{entity}/list"]
    return mine[-1] if mine else None


def page_holding(ctx: Context, entity: str, key: str) -> Exchange | None:
    """The list answer a record came in, as evidence for a check that judged cached pages."""
    for exchange in ctx.client.exchanges:
        records = exchange.parsed.get(entity) if isinstance(exchange.parsed, dict) else None
        listed = exchange.path == f"/{entity}/list" and isinstance(records, list)
        if listed and any(isinstance(r, dict) and r.get(ID_FIELD[entity]) == key for r in records or []):
            return exchange
    return None
