"""Checks that only read: health, auth, versioning, errors, and each list's paging."""

from __future__ import annotations

from datetime import UTC, datetime

from arsync.erp import contract
from arsync.sandbox.checks._core import (
    FAR_FUTURE,
    ID_FIELD,
    PAGE_MODEL,
    CheckFn,
    Context,
    error_body_problem,
    expect_refusal,
    fail,
    full_walk,
    ids,
    last_listing,
    list_request,
    ok_json,
    page_holding,
    skip,
    validate,
    walk,
)
from arsync.sandbox.client import Auth, Exchange


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


def auth_check(auth: Auth, what: str) -> CheckFn:
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


def schema_check(entity: str) -> CheckFn:
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


def limit_check(entity: str) -> CheckFn:
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


def terminates_check(entity: str) -> CheckFn:
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


def no_gaps_check(entity: str) -> CheckFn:
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
                    exchange=last_listing(ctx, entity),
                )
        return None

    return run


def _page_ending(ctx: Context, entity: str) -> Exchange | None:
    """The exchange of the last page of the platform-size walk (where it said hasMore: false)."""
    path = f"/{entity}/list"
    walked = [e for e in ctx.client.exchanges if e.path == path and e.status == 200]
    ending = [e for e in walked if isinstance(e.parsed, dict) and e.parsed.get("hasMore") is False]
    return ending[0] if ending else None


def past_the_end_check(entity: str) -> CheckFn:
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


def bad_paging_check(entity: str) -> CheckFn:
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


def stable_check(entity: str) -> CheckFn:
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
                exchange=last_listing(ctx, entity),
            )
        changed = [key for key in before if before[key] != after[key]]
        if changed:
            raise fail(
                f"{changed[0]} changed between two walks with no writes",
                expected=before[changed[0]],
                actual=after[changed[0]],
                path=f"$.{entity}[?({ID_FIELD[entity]}=={changed[0]})]",
                exchange=page_holding(ctx, entity, changed[0]),
            )
        return None

    return run


def future_check(entity: str) -> CheckFn:
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


def subset_check(entity: str) -> CheckFn:
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


def bad_datetime_check(entity: str) -> CheckFn:
    def run(ctx: Context) -> str | None:
        for value in ("yesterday", "2026-13-45T00:00:00Z", "2026-01-01T00:00:00"):
            exchange = ctx.post(
                f"/{entity}/list", {"schemaVersion": "1", "page": 1, "limit": 10, "modifiedSince": value}
            )
            expect_refusal(exchange, (400, 422), None, f"modifiedSince {value!r}")
        return None

    return run
