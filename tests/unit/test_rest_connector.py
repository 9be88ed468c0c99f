"""The REST connector's retry and error rules, with httpx.MockTransport as the server."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from arsync.erp.rest import RestConnector, RestOptions
from arsync.errors import AuthenticationFailed, ContractViolation, RemoteError, TransientError
from arsync.http_retry import HttpRetryOptions, parse_retry_after
from arsync.outbound import OutboundPolicy

PAGE = b'{"schemaVersion":"1","debtors":[{"erpDebtorId":"D1","name":"Acme"}],"hasMore":false}'


def connector(
    responses: list[Callable[[httpx.Request], httpx.Response]], sleeps: list[float], **options: float
) -> tuple[RestConnector, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses[min(len(seen), len(responses)) - 1](request)

    rest = RestConnector(
        "http://erp.test/api",
        "ask_secret",
        RestOptions(max_attempts=4, backoff_seconds=0.1, max_retry_after_seconds=5, **options),  # type: ignore[arg-type]
        outbound=OutboundPolicy(allow_private=True),
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
    )
    return rest, seen


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=PAGE)


def status(
    code: int, headers: dict[str, str] | None = None, body: bytes = b""
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, content=body, headers=headers)


def test_request_is_the_contract_request_with_bearer_token():
    sleeps: list[float] = []
    rest, seen = connector([ok], sleeps)
    page = rest.list_debtors(3, 25, None)
    assert page.items[0].erp_debtor_id == "D1" and page.has_more is False and page.number == 3
    request = seen[0]
    assert request.url == "http://erp.test/api/debtors/list"
    assert request.method == "POST"
    assert request.headers["authorization"] == "Bearer ask_secret"
    assert request.content == b'{"schemaVersion":"1","page":3,"limit":25}'


@pytest.mark.parametrize("code", [502, 503, 504])
def test_gateway_errors_are_retried_with_backoff(code: int):
    sleeps: list[float] = []
    rest, seen = connector([status(code), status(code), ok], sleeps)
    assert rest.list_debtors(1, 10, None).items
    assert len(seen) == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 1.0 - 1e-9


def test_429_honours_retry_after_and_caps_it():
    sleeps: list[float] = []
    rest, _ = connector([status(429, {"Retry-After": "2"}), status(429, {"Retry-After": "3600"}), ok], sleeps)
    rest.list_debtors(1, 10, None)
    assert sleeps == [2.0, 5.0]


def test_500_fails_fast_with_the_contract_code():
    sleeps: list[float] = []
    body = b'{"schemaVersion":"1","error":"db down","code":"INTERNAL_ERROR"}'
    rest, seen = connector([status(500, body=body)], sleeps)
    with pytest.raises(RemoteError) as caught:
        rest.list_debtors(2, 10, None)
    assert len(seen) == 1 and sleeps == []
    error = caught.value
    assert (error.endpoint, error.page, error.http_status, error.contract_code) == (
        "/debtors/list",
        2,
        500,
        "INTERNAL_ERROR",
    )
    assert error.message == "db down"


def test_401_is_authentication_failed_with_hint():
    body = b'{"schemaVersion":"1","error":"bad token","code":"UNAUTHORIZED"}'
    rest, seen = connector([status(401, body=body)], [])
    with pytest.raises(AuthenticationFailed) as caught:
        rest.health()
    assert len(seen) == 1
    assert caught.value.hint == "rotate the key or fix middleware config, then Sync now"
    assert "ask_secret" not in str(caught.value)


def test_timeouts_exhaust_bounded_attempts():
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    rest, seen = connector([timeout], [])
    with pytest.raises(TransientError, match="gave up after 4 attempts"):
        rest.list_invoices(1, 10, None)
    assert len(seen) == 4


def test_connection_reset_then_success():
    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed", request=request)

    rest, seen = connector([reset, ok], [])
    assert rest.list_debtors(1, 10, None).items and len(seen) == 2


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<html>oops</html>", "not valid JSON"),
        (b'{"schemaVersion":"2","debtors":[],"hasMore":false}', "unsupported schemaVersion '2'"),
        (b'{"debtors":[],"hasMore":false}', "unsupported schemaVersion None"),
        (b'{"schemaVersion":"1","debtors":[{"name":"x"}],"hasMore":false}', "debtors.0.erpDebtorId"),
        (b'{"schemaVersion":"1","debtors":[],"hasMore":"no"}', "hasMore"),
    ],
)
def test_contract_violations_are_not_retried(body: bytes, fragment: str):
    rest, seen = connector([status(200, body=body)], [])
    with pytest.raises(ContractViolation) as caught:
        rest.list_debtors(1, 10, None)
    assert fragment in caught.value.message
    assert len(seen) == 1


def test_oversized_response_is_refused():
    rest, _ = connector([status(200, body=b"x" * 5000)], [], max_response_bytes=1024)
    with pytest.raises(ContractViolation, match="larger than 1024 bytes"):
        rest.list_debtors(1, 10, None)


def test_parse_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_waits_honour_a_capped_retry_after_else_double_with_jitter():
    options = HttpRetryOptions(backoff_seconds=1.0, max_retry_after_seconds=30.0)
    assert options.wait_before_retry(1, retry_after=12.0) == 12.0
    assert options.wait_before_retry(1, retry_after=3600.0) == 30.0
    for attempt in (1, 2, 3):
        waits = [options.wait_before_retry(attempt) for _ in range(200)]
        full = 2.0 ** (attempt - 1)
        assert all(full / 2 <= wait <= full for wait in waits)
        assert len(set(waits)) > 1  # jittered, so clients that failed together do not retry together
