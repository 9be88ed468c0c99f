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

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson
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


# Global checks -------------------------------------------------------------------------------


def check_health(ctx: Context) -> str | None:
    body = validate(ctx.post("/health", contract.HealthRequest()), contract.HealthResponse)
    if body["ok"] is not True:
        raise fail("health says ok: false", expected=True, actual=body["ok"], path="$.ok")
    return None


AUTH_PROBES: tuple[tuple[str, bytes], ...] = (
    ("/health", contract.dumps(contract.HealthRequest())),
    ("/debtors/list", contract.dumps(contract.ListRequest(page=1, limit=1))),
    ("/invoices/list", contract.dumps(contract.ListRequest(page=1, limit=1))),
    ("/payments/list", contract.dumps(contract.ListRequest(page=1, limit=1))),
    # A push without a valid body: refused whatever the order of the middleware's checks, so a
    # broken one creates nothing. Only a 2xx is a breach here.
    ("/invoices/push", b'{"schemaVersion": "1"}'),
    ("/payments/push", b'{"schemaVersion": "1"}'),
)


def _auth_check(auth: Auth, what: str) -> CheckFn:
    """Every one of the six endpoints refuses ``auth``: 401 UNAUTHORIZED (reads), never 2xx (pushes)."""

    def run(ctx: Context) -> str | None:
        note: str | None = None
        for path, body in AUTH_PROBES:
            exchange = ctx.post(path, body, auth=auth)
            if exchange.status is not None and 200 <= exchange.status < 300:
                raise fail(
                    f"{path} accepted {what}",
                    expected="HTTP 401 UNAUTHORIZED",
                    actual=f"HTTP {exchange.status}",
                    exchange=exchange,
                )
            if path.endswith("/push"):
                continue
            refusal_note = expect_refusal(exchange, (401,), "UNAUTHORIZED", f"{path}: {what}")
            note = note or refusal_note  # every endpoint is judged; the first note is kept
        return note

    return run


def check_content_type(ctx: Context) -> str | None:
    """Every answer of the whole run that has a body is application/json, on every endpoint.

    It runs last, over all the run's requests, so a wrong header is one failure however many
    endpoints share it.
    """
    for exchange in ctx.client.exchanges:
        if exchange.status is None or exchange.server_error or not exchange.response_body:
            continue
        if not (exchange.content_type or "").lower().startswith("application/json"):
            raise fail(
                f"{exchange.path} answered HTTP {exchange.status} with Content-Type {exchange.content_type!r}",
                expected="application/json",
                actual=exchange.content_type,
                exchange=exchange,
            )
    return None


def check_version_echo(ctx: Context) -> str | None:
    for path, body in (
        ("/health", contract.HealthRequest()),
        ("/debtors/list", list_request(1, 1)),
        ("/invoices/list", list_request(1, 1)),
        ("/payments/list", list_request(1, 1)),
    ):
        exchange = ctx.post(path, body)
        answer = ok_json(exchange)
        if answer.get("schemaVersion") != contract.SCHEMA_VERSION:
            raise fail(
                f"{path} does not echo schemaVersion",
                expected='"1"',
                actual=answer.get("schemaVersion"),
                path="$.schemaVersion",
                exchange=exchange,
            )
    return None


def check_unsupported_version(ctx: Context) -> str | None:
    exchange = ctx.post("/debtors/list", {"schemaVersion": "2", "page": 1, "limit": 1})
    return expect_refusal(exchange, (400, 422), None, 'a request with schemaVersion "2"')


def check_malformed_json(ctx: Context) -> str | None:
    exchange = ctx.post("/debtors/list", b'{"schemaVersion": "1", "page": ')
    return expect_refusal(exchange, (400,), "INVALID_JSON", "a malformed JSON body")


def check_error_body(ctx: Context) -> str | None:
    probes = [
        ctx.post("/debtors/list", b"not json"),
        ctx.post("/debtors/list", {"schemaVersion": "1", "page": 0, "limit": 10}),
        ctx.post("/health", contract.HealthRequest(), auth="none"),
    ]
    for exchange in probes:
        if exchange.server_error:
            raise skip("the server failed a probe; reported by server.no_5xx")
        if exchange.status is not None and 400 <= exchange.status < 500:
            problem = error_body_problem(exchange)
            if problem is not None:
                raise fail(
                    f"{exchange.path} HTTP {exchange.status}: not the standard error body ({problem})",
                    expected='{"schemaVersion": "1", "error": "…", "code": "…"}',
                    actual=exchange.response_body[:200],
                    path=problem.split(":")[0],
                    exchange=exchange,
                )
    return None


# Per-list checks ------------------------------------------------------------------------------


def _schema(entity: str) -> CheckFn:
    """Every page of the platform's walk matches the contract (the walk's other problems, such as
    repeated records, belong to ``terminates``)."""

    def run(ctx: Context) -> str | None:
        result = full_walk(ctx, entity)
        if result.invalid and result.problem is not None:
            raise result.problem
        if not result.records:
            return "the list is empty, so no record was checked against the contract"
        return None

    return run


def _limit(entity: str) -> CheckFn:
    def run(ctx: Context) -> str | None:
        for limit in (1, 3):
            exchange = ctx.post(f"/{entity}/list", list_request(1, limit))
            records = validate(exchange, PAGE_MODEL[entity])[entity]
            if len(records) > limit:
                raise fail(
                    f"limit {limit} answered with {len(records)} records",
                    expected=f"at most {limit}",
                    actual=len(records),
                    path=f"$.{entity}",
                    exchange=exchange,
                )
        return None

    return run


def _terminates(entity: str) -> CheckFn:
    def run(ctx: Context) -> str | None:
        result = full_walk(ctx, entity)
        if result.problem is not None:
            raise result.problem
        if not result.ended:
            return (
                f"did not end within {ctx.max_pages} pages of {ctx.page_size}; if the list really is that "
                "long, raise --max-pages"
            )
        return None

    return run


SMALL_PAGE_SIZES = (1, 7, 20)
SMALL_WALK_RECORDS = 60  # each small-page walk reads about this many records


def _no_gaps(entity: str) -> CheckFn:
    """Walks at small page sizes hold the same records as the walk at the platform's size.

    Pages shorter than ``limit`` with ``hasMore: true`` are legal (servers cap pages), so pages
    are not judged one by one. A walk that finds records the platform's walk does not have shows
    a ``hasMore: false`` while records remained: a real sync would have stopped there.
    """

    def run(ctx: Context) -> str | None:
        full = full_walk(ctx, entity)
        full_ids = ids(full.records, entity)
        known = set(full_ids)
        for size in SMALL_PAGE_SIZES:
            pages = -(-min(len(full_ids) + size, SMALL_WALK_RECORDS) // size) + 1
            small = walk(ctx, entity, size, max_pages=pages)
            if small.problem is not None:
                raise small.problem
            small_ids = ids(small.records, entity)
            beyond = [i for i in small_ids if i not in known]
            if beyond:
                raise fail(
                    f"pages of {size} reach {len(beyond)} record(s) that the walk with limit {ctx.page_size} "
                    f"never got to ({beyond[0]} first): hasMore was false while records remained",
                    expected=f"the walk with limit {ctx.page_size} to end only after the last record",
                    actual=f"{len(full_ids)} records with limit {ctx.page_size}, more with limit {size}",
                    path="$.hasMore",
                    exchange=_page_ending(ctx, entity),
                )
            # A walk that ended must hold every record; one cut short, the same first records.
            expected_ids = known if small.ended else set(full_ids[: len(small_ids)])
            if set(small_ids) != expected_ids:
                missing = sorted(expected_ids - set(small_ids))
                raise fail(
                    f"pages of {size} skip {len(missing)} of the first {len(expected_ids)} records "
                    f"({', '.join(missing[:5])}{', …' if len(missing) > 5 else ''})",
                    expected=f"{len(expected_ids)} records, each once",
                    actual=f"{len(small_ids)} records; {len(missing)} missing",
                    path=f"$.{entity}[*].{ID_FIELD[entity]}",
                    exchange=_last_listing(ctx, entity),
                )
        return None

    return run


def _page_ending(ctx: Context, entity: str) -> Exchange | None:
    """The exchange of the last page of the platform-size walk (where it said hasMore: false)."""
    path = f"/{entity}/list"
    walked = [e for e in ctx.client.exchanges if e.path == path and e.status == 200]
    ending = [e for e in walked if isinstance(e.parsed, dict) and e.parsed.get("hasMore") is False]
    return ending[0] if ending else None


def _past_the_end(entity: str) -> CheckFn:
    def run(ctx: Context) -> str | None:
        after = len(full_walk(ctx, entity).pages) + 1
        exchange = ctx.post(f"/{entity}/list", list_request(after, ctx.page_size))
        body = validate(exchange, PAGE_MODEL[entity])
        if body[entity] or body["hasMore"]:
            raise fail(
                f"page {after}, after the last page, is not empty",
                expected="[] and hasMore: false",
                actual=f"{len(body[entity])} records, hasMore: {body['hasMore']}",
                path=f"$.{entity}",
                exchange=exchange,
            )
        return None

    return run


def _bad_paging(entity: str) -> CheckFn:
    def run(ctx: Context) -> str | None:
        for body in (
            {"page": 0, "limit": 10},
            {"page": -1, "limit": 10},
            {"page": 1, "limit": 0},
            {"page": 1, "limit": -5},
            {"page": "one", "limit": 10},
            {"page": 1, "limit": 1.5},
        ):
            exchange = ctx.post(f"/{entity}/list", {"schemaVersion": "1"} | body)
            expect_refusal(exchange, (400, 422), None, f"paging {body}")
        return None

    return run


def _stable(entity: str) -> CheckFn:
    def run(ctx: Context) -> str | None:
        first = full_walk(ctx, entity)
        second = walk(ctx, entity, ctx.page_size)
        if second.problem is not None:
            raise second.problem
        before = {r[ID_FIELD[entity]]: r for r in first.records}
        after = {r[ID_FIELD[entity]]: r for r in second.records}
        if before.keys() != after.keys():
            raise fail(
                "two walks with no writes between them returned different records",
                expected=f"{len(before)} records",
                actual=f"{len(after)} records",
                path=f"$.{entity}[*].{ID_FIELD[entity]}",
                exchange=_last_listing(ctx, entity),
            )
        changed = [key for key in before if before[key] != after[key]]
        if changed:
            raise fail(
                f"{changed[0]} changed between two walks with no writes",
                expected=before[changed[0]],
                actual=after[changed[0]],
                path=f"$.{entity}[?({ID_FIELD[entity]}=={changed[0]})]",
                exchange=_page_holding(ctx, entity, changed[0]),
            )
        return None

    return run


def _future(entity: str) -> CheckFn:
    def run(ctx: Context) -> str | None:
        exchange = ctx.post(f"/{entity}/list", list_request(1, ctx.page_size, FAR_FUTURE))
        body = validate(exchange, PAGE_MODEL[entity])
        if body[entity] or body["hasMore"]:
            raise fail(
                "modifiedSince 2999-01-01 still returned records: the filter is ignored, so every sync "
                "reads the whole list (correct, only slower)",
                expected="[] and hasMore: false",
                actual=f"{len(body[entity])} records",
                path=f"$.{entity}",
                exchange=exchange,
            )
        return None

    return run


def _subset(entity: str) -> CheckFn:
    def run(ctx: Context) -> str | None:
        everything = set(ids(full_walk(ctx, entity).records, entity))
        since = datetime(2020, 1, 1, tzinfo=UTC)
        filtered = walk(ctx, entity, ctx.page_size, modified_since=since)
        if filtered.problem is not None:
            raise filtered.problem
        strays = sorted(set(ids(filtered.records, entity)) - everything)
        if strays:
            raise fail(
                f"modifiedSince {since.isoformat()} returned {len(strays)} record(s) a full walk does not have",
                expected="a subset of the full list",
                actual=f"{len(strays)}: {', '.join(strays[:5])}{', …' if len(strays) > 5 else ''}",
                path=f"$.{entity}[*].{ID_FIELD[entity]}",
            )
        return None

    return run


def _bad_datetime(entity: str) -> CheckFn:
    def run(ctx: Context) -> str | None:
        for value in ("yesterday", "2026-13-45T00:00:00Z", "2026-01-01T00:00:00"):
            exchange = ctx.post(
                f"/{entity}/list", {"schemaVersion": "1", "page": 1, "limit": 10, "modifiedSince": value}
            )
            expect_refusal(exchange, (400, 422), None, f"modifiedSince {value!r}")
        return None

    return run


# Pushes (with --allow-writes) ------------------------------------------------------------------


def _first_debtor(ctx: Context) -> str:
    if "debtor" not in ctx.pushed:
        records = validate(ctx.post("/debtors/list", list_request(1, 1)), contract.DebtorPage)["debtors"]
        if not records:
            raise skip("the ERP lists no debtor to push an invoice for")
        ctx.pushed["debtor"] = records[0]["erpDebtorId"]
    debtor: str = ctx.pushed["debtor"]
    return debtor


def _invoice_request(ctx: Context, suffix: str, debtor: str | None = None) -> contract.InvoicePushRequest:
    today = date.today()
    return contract.InvoicePushRequest(
        invoice_number=f"SBX-{ctx.run_id}-{suffix}",
        erp_debtor_id=debtor or _first_debtor(ctx),
        issue_date=today,
        due_date=today,
        currency="USD",
        lines=[
            contract.Line(
                description="arsync sandbox check",
                quantity=Decimal(1),
                unit_price=Decimal("1.00"),
                amount=Decimal("1.00"),
            )
        ],
    )


PUSH_ID = {"/invoices/push": "erpInvoiceId", "/payments/push": "erpPaymentId"}


def _push(ctx: Context, path: str, request: contract.ContractModel) -> tuple[str, Exchange]:
    """The id the ERP gave a push, and the exchange it came in."""
    exchange = ctx.post(path, request)
    value: str = validate(exchange, contract.ENDPOINTS[path][1])[PUSH_ID[path]]
    return value, exchange


def _retry_gets_same_id(ctx: Context, path: str, request: contract.ContractModel, first_id: str, what: str) -> None:
    erp_id, again = _push(ctx, path, request)
    if erp_id != first_id:
        raise fail(
            f"a byte-identical retry created another {what}",
            expected=first_id,
            actual=erp_id,
            path=f"$.{PUSH_ID[path]}",
            exchange=again,
        )


def _one_id_at_once(ctx: Context, path: str, request: contract.ContractModel, what: str) -> str:
    """Push ``request`` 4 times at once; the one id they all got."""
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _push(ctx, path, request)[0], range(4)))
    got = set(answers)
    if len(got) != 1:
        raise fail(
            f"4 identical {what} pushes at once got different ids",
            expected="one id",
            actual=sorted(got),
            path=f"$.{PUSH_ID[path]}",
        )
    return answers[0]


def _listed(ctx: Context, entity: str, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    since = ctx.pushed.setdefault("since", datetime.now(UTC))
    result = walk(ctx, entity, ctx.page_size, modified_since=since)
    if result.problem is not None:
        raise result.problem
    everything = result.records
    if not any(match(r) for r in everything):  # a server that filters coarsely: look at the whole list
        whole = walk(ctx, entity, ctx.page_size)
        if whole.problem is not None:
            raise whole.problem
        everything = whole.records
    return [r for r in everything if match(r)]


def check_invoice_push(ctx: Context) -> str | None:
    ctx.pushed.setdefault("since", datetime.now(UTC).replace(microsecond=0))
    before = datetime.now(UTC)
    request = _invoice_request(ctx, "1")
    ctx.pushed["invoiceRequest"] = request
    ctx.pushed["invoice"], exchange = _push(ctx, "/invoices/push", request)
    # When the push happened, by the server's clock if it tells (HTTP Date): a server clock behind
    # ours is not a bug of the middleware, and must not fail modified_since_precise.
    told = exchange.server_date.replace(microsecond=0) if exchange.server_date else before
    ctx.pushed["pushedAt"] = min(before, told)
    return None


def check_invoice_retry(ctx: Context) -> str | None:
    _retry_gets_same_id(ctx, "/invoices/push", ctx.pushed["invoiceRequest"], ctx.pushed["invoice"], "invoice")
    return None


def check_invoice_concurrent(ctx: Context) -> str | None:
    request = _invoice_request(ctx, "2")
    _one_id_at_once(ctx, "/invoices/push", request, "invoice")
    listed = _listed(ctx, "invoices", lambda r: r["invoiceNumber"] == request.invoice_number)
    if len(listed) != 1:
        raise fail(
            f"4 identical pushes at once left {len(listed)} invoices numbered {request.invoice_number}",
            expected=1,
            actual=len(listed),
            exchange=_last_listing(ctx, "invoices"),
        )
    return None


def check_invoice_visible(ctx: Context) -> str | None:
    number = ctx.pushed["invoiceRequest"].invoice_number
    listed = _listed(ctx, "invoices", lambda r: r["erpInvoiceId"] == ctx.pushed["invoice"])
    if not listed:
        raise fail(
            f"the pushed invoice {ctx.pushed['invoice']} is not in /invoices/list",
            expected="listed",
            actual="absent",
            exchange=_last_listing(ctx, "invoices"),
        )
    if listed[0]["invoiceNumber"] != number:
        raise fail(
            "the pushed invoice is listed with another number",
            expected=number,
            actual=listed[0]["invoiceNumber"],
            path="$.invoices[*].invoiceNumber",
        )
    return None


def check_invoice_invalid(ctx: Context) -> str | None:
    number = f"SBX-{ctx.run_id}-invalid"
    no_lines = orjson.loads(contract.dumps(_invoice_request(ctx, "invalid"))) | {"lines": []}
    expect_refusal(ctx.post("/invoices/push", no_lines), range(400, 500), None, "an invoice push with no lines")
    unknown = _invoice_request(ctx, "invalid", debtor=f"SBX-{ctx.run_id}-NO-SUCH-DEBTOR")
    expect_refusal(ctx.post("/invoices/push", unknown), range(400, 500), None, "an invoice push for an unknown debtor")
    if _listed(ctx, "invoices", lambda r: r["invoiceNumber"] == number):
        raise fail(f"a refused push still created invoice {number}", expected="nothing created", actual="listed")
    return None


def _payment_request(ctx: Context, amount: str) -> contract.PaymentPushRequest:
    return contract.PaymentPushRequest(
        erp_invoice_id=ctx.pushed["invoice"], amount=Decimal(amount), payment_date=date.today(), bank_account_code="090"
    )


def check_payment_push(ctx: Context) -> str | None:
    request = _payment_request(ctx, "0.10")
    ctx.pushed["paymentRequest"] = request
    ctx.pushed["payment"], _ = _push(ctx, "/payments/push", request)
    return None


def check_payment_retry(ctx: Context) -> str | None:
    _retry_gets_same_id(ctx, "/payments/push", ctx.pushed["paymentRequest"], ctx.pushed["payment"], "payment")
    return None


def check_payment_concurrent(ctx: Context) -> str | None:
    erp_id = _one_id_at_once(ctx, "/payments/push", _payment_request(ctx, "0.20"), "payment")
    listed = _listed(ctx, "payments", lambda r: r["erpPaymentId"] == erp_id)
    if len(listed) != 1:
        raise fail(f"payment {erp_id} is listed {len(listed)} times", expected=1, actual=len(listed),
                   exchange=_last_listing(ctx, "payments"))  # fmt: skip
    return None


def check_payment_visible(ctx: Context) -> str | None:
    listed = _listed(ctx, "payments", lambda r: r["erpPaymentId"] == ctx.pushed["payment"])
    if not listed:
        raise fail(
            f"the pushed payment {ctx.pushed['payment']} is not in /payments/list",
            expected="listed",
            actual="absent",
            exchange=_last_listing(ctx, "payments"),
        )
    if Decimal(str(listed[0]["amount"])) != Decimal("0.10") or listed[0]["erpInvoiceId"] != ctx.pushed["invoice"]:
        raise fail(
            "the pushed payment is listed with other values",
            expected={"amount": "0.10", "erpInvoiceId": ctx.pushed["invoice"]},
            actual=listed[0],
        )
    return None


def check_payment_invalid(ctx: Context) -> str | None:
    unknown = f"SBX-{ctx.run_id}-NO-SUCH-INVOICE"
    request = contract.PaymentPushRequest(erp_invoice_id=unknown, amount=Decimal("1.00"), payment_date=date.today())
    expect_refusal(ctx.post("/payments/push", request), range(400, 500), None, "a payment on an unknown invoice")
    negative = {"schemaVersion": "1", "erpInvoiceId": ctx.pushed["invoice"], "amount": -1, "paymentDate": "2026-01-01"}
    expect_refusal(ctx.post("/payments/push", negative), range(400, 500), None, "a negative payment")
    if _listed(ctx, "payments", lambda r: r["erpInvoiceId"] == unknown):
        raise fail("a refused payment push still created a payment", expected="nothing created", actual="listed")
    return None


def _real_invoice_request(ctx: Context) -> contract.InvoicePushRequest:
    """An invoice as arsync really sends them: 3-decimal KWD, several lines, 6-decimal quantities
    and unit prices, non-ASCII text and a long number."""
    lines = [
        contract.Line(description="Beratung für Müller & Söhne — Ärzte", quantity=Decimal("1.5"),
                      unit_price=Decimal("120.125"), amount=Decimal("180.188")),
        contract.Line(description="会計サービス · خدمات محاسبة", quantity=Decimal("0.333333"),
                      unit_price=Decimal("3.000000"), amount=Decimal("1.000")),
        contract.Line(description="Frais de déplacement", quantity=Decimal(2), unit_price=Decimal("0.005"),
                      amount=Decimal("0.010")),
    ]  # fmt: skip
    today = date.today()
    return contract.InvoicePushRequest(
        invoice_number=f"SBX-{ctx.run_id}-KWD-{'9' * 30}",
        erp_debtor_id=_first_debtor(ctx),
        issue_date=today,
        due_date=today,
        currency="KWD",
        lines=lines,
    )


def check_invoice_real_data(ctx: Context) -> str | None:
    request = _real_invoice_request(ctx)
    ctx.pushed["realInvoice"], _ = _push(ctx, "/invoices/push", request)
    return None


def check_payment_real_data(ctx: Context) -> str | None:
    invoice = ctx.pushed["realInvoice"]
    for code in ("090", None):
        request = contract.PaymentPushRequest(
            erp_invoice_id=invoice, amount=Decimal("0.125"), payment_date=date.today(), bank_account_code=code
        )
        _push(ctx, "/payments/push", request)
    return None


def check_invoice_modified_precisely(ctx: Context) -> str | None:
    """The pushed invoice, asked for with modifiedSince one second before the push, is listed.

    No fallback to the full list: a middleware that compares by date only, or ignores the time
    of day, would hide every later change of the same day from incremental syncs.
    """
    since = ctx.pushed["pushedAt"] - timedelta(seconds=1)
    result = walk(ctx, "invoices", ctx.page_size, modified_since=since)
    if result.problem is not None:
        raise result.problem
    if ctx.pushed["invoice"] not in ids(result.records, "invoices"):
        raise fail(
            f"modifiedSince {contract.format_datetime(since)}, one second before the push, does not return the "
            f"pushed invoice {ctx.pushed['invoice']}",
            expected=f"{ctx.pushed['invoice']} listed",
            actual=f"{len(result.records)} records, without it",
            path="$.invoices[*].erpInvoiceId",
            exchange=ctx.exchanges[-1] if ctx.exchanges else None,
        )
    return None


def _sanity(entity: str) -> CheckFn:
    def run(ctx: Context) -> str | None:
        records = full_walk(ctx, entity).records
        invoices = {r["erpInvoiceId"]: r for r in full_walk(ctx, "invoices").records} if entity == "payments" else {}
        for record in records:
            problem = _implausible(entity, record, invoices)
            if problem:
                key = record[ID_FIELD[entity]]
                raise fail(f"{key}: {problem}", expected="plausible figures", actual=problem,
                           path=f"$.{entity}[?({ID_FIELD[entity]}=={key})]",
                           exchange=_page_holding(ctx, entity, key))  # fmt: skip
        return None

    return run


def _last_listing(ctx: Context, entity: str) -> Exchange | None:
    """The check's own last request to ``entity``'s list: the evidence of what the list holds or lacks."""
    mine = [e for e in ctx.exchanges if e.path == f"/{entity}/list"]
    return mine[-1] if mine else None


def _page_holding(ctx: Context, entity: str, key: str) -> Exchange | None:
    """The list answer a record came in, as evidence for a check that judged cached pages."""
    for exchange in ctx.client.exchanges:
        records = exchange.parsed.get(entity) if isinstance(exchange.parsed, dict) else None
        listed = exchange.path == f"/{entity}/list" and isinstance(records, list)
        if listed and any(isinstance(r, dict) and r.get(ID_FIELD[entity]) == key for r in records or []):
            return exchange
    return None


def _implausible(entity: str, record: dict[str, Any], invoices: dict[str, dict[str, Any]]) -> str | None:
    """What looks wrong in a record that the contract's types allow."""
    if entity == "payments":
        invoice = invoices.get(record["erpInvoiceId"])
        if invoice and record["paymentDate"] < invoice["issueDate"]:
            return f"paid on {record['paymentDate']}, before the invoice's issue date {invoice['issueDate']}"
        return None
    total, outstanding = Decimal(str(record["amountTotal"])), Decimal(str(record["amountOutstanding"]))
    if total < 0:
        return f"amountTotal {total} is negative"
    if outstanding > total:
        return f"amountOutstanding {outstanding} is more than amountTotal {total}"
    lines = sum((Decimal(str(line["amount"])) for line in record["lines"]), Decimal(0))
    if record["lines"] and lines != total and not record.get("totalTax"):
        return f"the lines add up to {lines}, not to amountTotal {total}"
    return None


SLOW_PAGE_SECONDS = 2.0


def check_latency(ctx: Context) -> str | None:
    slow = [e for e in ctx.client.exchanges if e.elapsed_ms > SLOW_PAGE_SECONDS * 1000 and not e.server_error]
    if slow:
        worst = max(slow, key=lambda e: e.elapsed_ms)
        raise fail(
            f"{len(slow)} answer(s) took over {SLOW_PAGE_SECONDS:g} s; slowest {worst.path} in "
            f"{worst.elapsed_ms / 1000:.1f} s (a million-record sync at this pace takes hours)",
            expected=f"under {SLOW_PAGE_SECONDS:g} s an answer",
            actual=f"{worst.elapsed_ms / 1000:.1f} s",
            exchange=worst,
        )
    return None


def latency_by_endpoint(exchanges: list[Exchange]) -> dict[str, dict[str, float]]:
    """p50 and max milliseconds per endpoint, for the report."""
    by_path: dict[str, list[float]] = {}
    for exchange in exchanges:
        by_path.setdefault(exchange.path, []).append(exchange.elapsed_ms)
    return {
        path: {"p50Ms": round(statistics.median(times), 1), "maxMs": round(max(times), 1), "requests": len(times)}
        for path, times in sorted(by_path.items())
    }


def check_no_5xx(ctx: Context) -> str | None:
    failed = [e for e in ctx.client.exchanges if e.server_error]
    if failed:
        first = failed[0]
        what = first.error or f"HTTP {first.status}"
        raise fail(
            f"{len(failed)} request(s) failed on the server; first: {first.path} → {what}",
            expected="no 5xx and no timeout",
            actual=what,
            exchange=first,
        )
    return None


# The suite -----------------------------------------------------------------------------------


def all_checks() -> list[Check]:
    checks = [
        Check("health", "POST /health answers ok: true per the contract", check_health),
        Check(
            "auth.missing_token",
            "No Authorization header: 401 UNAUTHORIZED",
            _auth_check("none", "a request without a token"),
        ),
        Check(
            "auth.invalid_token",
            "An unknown token: 401 UNAUTHORIZED",
            _auth_check("wrong", "a request with a wrong token"),
            requires=("auth.missing_token",),
        ),
        Check(
            "auth.malformed_header",
            "A non-Bearer or empty Authorization header: 401 UNAUTHORIZED",
            _auth_check("basic", "a Basic Authorization header"),
            requires=("auth.missing_token",),
        ),
        Check("schema_version.echo", 'Every success echoes schemaVersion "1"', check_version_echo),
        Check(
            "schema_version.unsupported",
            'A request with schemaVersion "2" is refused with 4xx',
            check_unsupported_version,
        ),
        Check("malformed_json", "A malformed body is refused: 400 INVALID_JSON", check_malformed_json),
        Check("error_body.shape", "4xx answers use the standard error body", check_error_body),
    ]
    for entity in ENTITIES:
        path = f"/{entity}/list"
        checks += [
            Check(f"{entity}.schema", f"{path}: every page matches the contract", _schema(entity)),
            Check(
                f"{entity}.limit", f"{path} returns no more than limit", _limit(entity), requires=(f"{entity}.schema",)
            ),
            Check(
                f"{entity}.terminates",
                f"{path} ends (hasMore: false) and never repeats a record",
                _terminates(entity),
                requires=(f"{entity}.schema",),
            ),
            Check(
                f"{entity}.no_gaps",
                f"{path}: walks with limit 1, 7 and 20 hold the same records as the platform's",
                _no_gaps(entity),
                requires=(f"{entity}.terminates",),
            ),
            Check(
                f"{entity}.past_the_end",
                f"{path}: the page after the last is empty",
                _past_the_end(entity),
                requires=(f"{entity}.terminates",),
            ),
            Check(
                f"{entity}.bad_paging",
                f"{path}: page 0, negative or non-integer paging is refused",
                _bad_paging(entity),
            ),
            Check(
                f"{entity}.stable",
                f"{path}: two walks without writes return the same records",
                _stable(entity),
                requires=(f"{entity}.terminates",),
            ),
            Check(
                f"{entity}.modified_since_future",
                f"{path}: modifiedSince in 2999 returns nothing (else every sync reads the whole list)",
                _future(entity),
                tier="SHOULD",
            ),
            Check(
                f"{entity}.modified_since_subset",
                f"{path}: modifiedSince returns a subset",
                _subset(entity),
                requires=(f"{entity}.terminates",),
            ),
            Check(
                f"{entity}.bad_datetime",
                f"{path}: an invalid or zone-less modifiedSince is refused",
                _bad_datetime(entity),
            ),
        ]
        if entity != "debtors":
            checks.append(Check(
                f"{entity}.sanity",
                f"{path}: figures are plausible (outstanding within total, lines add up, paid after issue)",
                _sanity(entity),
                requires=tuple(dict.fromkeys((f"{entity}.terminates", "invoices.terminates"))),
                tier="SHOULD",
            ))  # fmt: skip
    checks += [
        # A push answer is validated with its schemaVersion; a server that never echoes it is
        # reported once, by schema_version.echo, and the pushes are skipped.
        Check(
            "invoices.push",
            "POST /invoices/push creates an invoice",
            check_invoice_push,
            requires=("schema_version.echo",),
            writes=True,
        ),
        Check(
            "invoices.push_retry",
            "A byte-identical invoice push returns the same erpInvoiceId",
            check_invoice_retry,
            requires=("invoices.push",),
            writes=True,
        ),
        Check(
            "invoices.push_visible",
            "A pushed invoice appears in /invoices/list",
            check_invoice_visible,
            requires=("invoices.push", "invoices.terminates"),
            writes=True,
        ),
        Check(
            "invoices.push_concurrent",
            "Identical invoice pushes at once create one invoice",
            check_invoice_concurrent,
            requires=("invoices.push_retry", "invoices.push_visible"),
            writes=True,
        ),
        Check(
            "invoices.push_real_data",
            "An invoice as arsync sends them (KWD, 6-decimal quantities, non-ASCII, a long number) is accepted",
            check_invoice_real_data,
            requires=("invoices.push",),
            writes=True,
        ),
        Check(
            "invoices.modified_since_precise",
            "modifiedSince one second before a push returns the pushed invoice (time, not date, precision)",
            check_invoice_modified_precisely,
            requires=("invoices.push_visible",),
            writes=True,
        ),
        Check(
            "invoices.push_invalid",
            "An invalid invoice push is refused with 4xx and creates nothing",
            check_invoice_invalid,
            requires=("invoices.terminates",),
            writes=True,
        ),
        Check(
            "payments.push",
            "POST /payments/push creates a payment",
            check_payment_push,
            requires=("invoices.push", "schema_version.echo"),
            writes=True,
        ),
        Check(
            "payments.push_retry",
            "A byte-identical payment push returns the same erpPaymentId",
            check_payment_retry,
            requires=("payments.push",),
            writes=True,
        ),
        Check(
            "payments.push_visible",
            "A pushed payment appears in /payments/list",
            check_payment_visible,
            requires=("payments.push", "payments.terminates"),
            writes=True,
        ),
        Check(
            "payments.push_concurrent",
            "Identical payment pushes at once create one payment",
            check_payment_concurrent,
            requires=("payments.push_retry", "payments.push_visible"),
            writes=True,
        ),
        Check(
            "payments.push_real_data",
            "A 3-decimal payment is accepted with and without bankAccountCode",
            check_payment_real_data,
            requires=("payments.push", "invoices.push_real_data"),
            writes=True,
        ),
        Check(
            "payments.push_invalid",
            "An invalid payment push is refused with 4xx and creates nothing",
            check_payment_invalid,
            requires=("invoices.push", "payments.terminates"),
            writes=True,
        ),
        Check("server.no_5xx", "No request of the whole run got a 5xx or timed out", check_no_5xx),
        Check("content_type", "Every answer of the run, on every endpoint, is application/json", check_content_type),
        Check("latency", f"Every answer came within {SLOW_PAGE_SECONDS:g} s", check_latency, tier="SHOULD"),
    ]
    return checks


# What each check rests on: the contract (the REST contract's endpoint and error pages), the
# flows (the sync and push flows), or, where no source speaks, what a ledger needs. "*" stands
# for debtors, invoices and payments. The README's table of checks is kept equal to this.
BASIS: dict[str, str] = {
    "health": "Contract, health: 200 when the token is valid and the service is ready",
    "auth.missing_token": "Contract, errors: a missing or invalid Authorization header is 401 UNAUTHORIZED",
    "auth.invalid_token": "Contract, errors: a missing or invalid Authorization header is 401 UNAUTHORIZED",
    "auth.malformed_header": "Contract, errors: the header is Authorization: Bearer <token>",
    "schema_version.echo": 'Contract: every success response echoes schemaVersion "1"',
    "schema_version.unsupported": 'Contract: the requests carry schemaVersion "1"; another version is refused',
    "malformed_json": "Contract, error codes: INVALID_JSON",
    "error_body.shape": "Contract: every failure uses the standard error body",
    "*.schema": "Contract: the list's response shape and field types",
    "*.limit": "Contract, paging: page and limit select the records",
    "*.terminates": "Flows: pages are fetched until hasMore is false",
    "*.no_gaps": "Flows: pages are fetched until hasMore is false, so an early false loses records",
    "*.past_the_end": "Flows: pages are fetched until hasMore is false",
    "*.bad_paging": "Contract, error codes: VALIDATION_FAILED for a request that breaks the contract",
    "*.stable": "Flows: records are deduplicated by ERP id, which needs stable ids",
    "*.modified_since_future": "Flows, incremental sync: the full set is safe, only slower",
    "*.modified_since_subset": "Flows, incremental sync: only records created or changed after modifiedSince",
    "*.bad_datetime": "Flows, incremental sync: modifiedSince is an ISO datetime",
    "*.sanity": "No source: what a finance team's ledger must not show",
    "invoices.push": "Contract, invoice push: called on dispatch; answers with erpInvoiceId",
    "invoices.push_retry": "Contract and flows, idempotency: a retry gets the existing erpInvoiceId",
    "invoices.push_concurrent": "Flows, idempotency: no duplicate invoice in the ERP",
    "invoices.push_visible": "Flows: what is pushed is read back by the next sync",
    "invoices.push_real_data": "Contract: exact decimal money in the currency's places (3 for KWD, BHD, OMR)",
    "invoices.modified_since_precise": "Flows, incremental sync: modifiedSince is a datetime, not a date",
    "invoices.push_invalid": "Contract, error codes: VALIDATION_FAILED, and nothing is created",
    "payments.push": "Contract, payment push: called on approval; bankAccountCode is optional",
    "payments.push_retry": "Flows, idempotency: a retry does not create a duplicate",
    "payments.push_concurrent": "Flows, idempotency: a retry does not create a duplicate",
    "payments.push_visible": "Flows: what is pushed is read back by the next sync",
    "payments.push_real_data": "Contract, payment push: bankAccountCode is optional; exact decimal money",
    "payments.push_invalid": "Contract, error codes: VALIDATION_FAILED, and nothing is created",
    "server.no_5xx": "Contract: failures are answered with the standard error body, not 5xx",
    "content_type": "Contract: JSON requests and responses",
    "latency": "No source: a sync of a million records at 2 s a page takes hours",
}


def basis(check_name: str) -> str:
    """What ``check_name`` rests on (see BASIS)."""
    if check_name in BASIS:
        return BASIS[check_name]
    _, _, rest = check_name.partition(".")
    return BASIS[f"*.{rest}"]


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
    guarded: bool = False,
) -> Report:
    """Run the sandbox against ``base_url``; ``progress`` is called after each check.

    ``guarded``: the target came from a tenant of this server (the web UI), not from whoever runs
    the command, so arsync's outbound address rule applies.
    """
    checks = select_checks(only)
    client = SandboxClient(base_url, token, token_env, timeout=timeout, guarded=guarded)
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
