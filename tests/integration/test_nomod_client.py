"""The Nomod client against the mock Nomod, and against Nomod's own example bodies, over loopback HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request, Response

from arsync.errors import (
    NomodApiError,
    NomodCustomerNotFound,
    NomodEmailExists,
    NomodError,
    NomodInvalidEmail,
    NomodMissingFields,
)
from arsync.http_retry import HttpRetryOptions
from arsync.mocks.nomod import MockNomodState, NomodFault, create_mock_nomod_app
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.nomod import signing
from arsync.nomod.client import NomodClient
from arsync.nomod.webhooks import read_delivery, settled_amount
from arsync.outbound import OutboundPolicy
from tests.fixtures import nomod_examples as examples

KEY = "sk_test_arsync"
MockNomod = tuple[MockNomodState, RunningServer]
DUE = (date.today() + timedelta(days=30)).isoformat()

# The mock and the test servers listen on loopback, as a single-tenant install's Nomod stand-in would.
LOOPBACK = OutboundPolicy(allow_private=True)


@pytest.fixture
def mock_nomod() -> Iterator[tuple[MockNomodState, RunningServer]]:
    state = MockNomodState()
    with serve_in_thread(create_mock_nomod_app(state)) as server:
        state.base_url = server.url
        yield state, server


@pytest.fixture
def client(mock_nomod: tuple[MockNomodState, RunningServer]) -> Iterator[NomodClient]:
    options = HttpRetryOptions(timeout_seconds=1, max_attempts=3, backoff_seconds=0.01, max_retry_after_seconds=0.1)
    nomod_client = NomodClient(mock_nomod[1].url, KEY, options, outbound=LOOPBACK)
    yield nomod_client
    nomod_client.close()


def _error(call: Any) -> NomodError:
    with pytest.raises(NomodError) as raised:
        call()
    return raised.value


def test_customer_invoice_and_link_round_trip(client: NomodClient, mock_nomod: tuple[MockNomodState, Any]) -> None:
    customer = client.post("/v1/customers", {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"})
    assert len(customer["id"]) == 36 and customer["created"]
    invoice = client.post(
        "/v1/invoices",
        {
            "customer": customer["id"],
            "currency": "KWD",
            "items": [{"name": "Audit", "amount": "1150.005", "quantity": 2}],
            "due_date": DUE,
            "invoice_number": "AR-1",
        },
    )
    assert invoice["amount"] == "2300.010" and invoice["url"].endswith(invoice["id"])
    link = client.post("/v1/links", {"title": "AR-2", "currency": "AED", "items": [{"name": "Fee", "amount": "10.50"}]})
    assert link["url"].endswith(link["id"])
    state = mock_nomod[0]
    assert state.stats()["customers"] == 1 and state.invoices[invoice["id"]]["items"][0]["amount"] == "1150.005"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"last_name": "X", "email": "x@example.com"}, NomodMissingFields),
        ({"first_name": "  ", "email": "x@example.com"}, NomodMissingFields),
        ({"first_name": "X", "email": "not-an-email"}, NomodInvalidEmail),
    ],
)
def test_customer_validation_errors_are_exact(
    client: NomodClient, body: dict[str, Any], kind: type[NomodError]
) -> None:
    error = _error(lambda: client.post("/v1/customers", body))
    assert (
        type(error) is kind and error.message == kind.stable_message and error.code == kind.code and not error.transient
    )


def test_a_duplicate_email_is_refused(client: NomodClient) -> None:
    client.post("/v1/customers", {"first_name": "A", "email": "dup@example.com"})
    error = _error(lambda: client.post("/v1/customers", {"first_name": "B", "email": "DUP@example.com"}))
    assert isinstance(error, NomodEmailExists) and error.code == "NOMOD_EMAIL_EXISTS"


def test_an_invoice_for_an_unknown_customer_is_refused(client: NomodClient) -> None:
    body = {
        "customer": "00000000-0000-0000-0000-000000000000",
        "currency": "AED",
        "items": [{"name": "x", "amount": "1.00", "quantity": 1}],
        "due_date": DUE,
    }
    assert _error(lambda: client.post("/v1/invoices", body)).message == NomodCustomerNotFound.stable_message


@pytest.mark.parametrize("amount", ["1.0001", "-5", "abc", 10.5])
def test_amounts_must_be_exact_decimal_strings_for_the_currency(client: NomodClient, amount: Any) -> None:
    customer = client.post("/v1/customers", {"first_name": "A"})
    body = {
        "customer": customer["id"],
        "currency": "KWD",
        "items": [{"name": "x", "amount": amount, "quantity": 1}],
        "due_date": DUE,
    }
    error = _error(lambda: client.post("/v1/invoices", body))
    assert isinstance(error, NomodApiError) and error.http_status == 400 and not error.transient


def test_throttled_creates_are_retried(client: NomodClient, mock_nomod: tuple[MockNomodState, Any]) -> None:
    state = mock_nomod[0]
    state.faults = [NomodFault(path="/v1/customers", status=429, retry_after=0, times=2)]
    assert client.post("/v1/customers", {"first_name": "Retry"})["id"]
    assert [r["path"] for r in state.requests].count("/v1/customers") == 3


def test_a_5xx_on_a_create_is_uncertain_and_not_repeated(
    client: NomodClient, mock_nomod: tuple[MockNomodState, Any]
) -> None:
    state = mock_nomod[0]
    state.faults = [NomodFault(path="/v1/customers", status=500, after_handling=True)]
    error = _error(lambda: client.post("/v1/customers", {"first_name": "X"}))
    assert isinstance(error, NomodApiError) and error.transient and error.uncertain and error.http_status == 500
    # Nomod stored it before failing; one try only, so there is one customer, not four.
    assert [r["path"] for r in state.requests].count("/v1/customers") == 1 and state.stats()["customers"] == 1


def test_reads_are_retried_after_5xx(client: NomodClient, mock_nomod: tuple[MockNomodState, Any]) -> None:
    state = mock_nomod[0]
    link = {"title": "t", "currency": "AED", "items": [{"name": "a", "amount": "1"}], "allow_service_fee": False}
    charge = state.pay(None, client.post("/v1/links", link)["id"])
    state.faults = [NomodFault(path="/v1/charges", status=503, times=2)]
    assert client.get_charge(charge["id"])["total"] == "1"


def test_a_timeout_is_a_transient_api_error(client: NomodClient, mock_nomod: MockNomod) -> None:
    mock_nomod[0].faults = [NomodFault(path="/v1/links", delay=2)]
    error = _error(
        lambda: client.post("/v1/links", {"title": "t", "currency": "AED", "items": [{"name": "a", "amount": "1"}]})
    )
    assert isinstance(error, NomodApiError) and error.transient and "timed out" in (error.detail or "")
    assert error.uncertain and [r["path"] for r in mock_nomod[0].requests].count("/v1/links") == 1


def test_a_wrong_key_is_unauthorized_and_not_retried(mock_nomod: tuple[MockNomodState, RunningServer]) -> None:
    bad = NomodClient(
        mock_nomod[1].url, "sk_live_wrong", HttpRetryOptions(max_attempts=3, backoff_seconds=0), outbound=LOOPBACK
    )
    try:
        error = _error(lambda: bad.post("/v1/customers", {"first_name": "X"}))
    finally:
        bad.close()
    assert isinstance(error, NomodApiError) and error.unauthorized and not error.transient
    assert len(mock_nomod[0].requests) == 1


def test_paying_sends_a_signed_webhook_and_the_charge_reads_back(
    client: NomodClient, mock_nomod: tuple[MockNomodState, RunningServer]
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    arrived = threading.Event()
    receiver = FastAPI()

    @receiver.post("/hook")
    async def hook(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        arrived.set()
        return Response(status_code=200)

    server = mock_nomod[1]
    secret = signing.new_secret()
    customer = client.post("/v1/customers", {"first_name": "Payer"})
    invoice = client.post(
        "/v1/invoices",
        {
            "customer": customer["id"],
            "currency": "AED",
            "items": [{"name": "x", "amount": "99.99", "quantity": 1}],
            "due_date": DUE,
            "allow_service_fee": False,
        },
    )
    with serve_in_thread(receiver) as hook_server:
        httpx.put(f"{server.url}/_mock/webhook", json={"url": f"{hook_server.url}/hook", "secret": secret})
        paid = httpx.post(f"{server.url}/_mock/pay", json={"invoiceId": invoice["id"]}, timeout=30).json()
        assert arrived.wait(10)
    headers, body = received[0]
    assert signing.verify(secret, headers, body) == headers["svix-id"]
    charge = client.get_charge(paid["charge"]["id"])
    assert (charge["status"], Decimal(charge["total"])) == ("paid", Decimal("99.99"))
    assert "invoice" not in charge and "amount" not in charge  # as Nomod's charge, which has neither
    assert orjson.loads(body) == {"eventId": orjson.loads(body)["eventId"], "type": "charge.completed",
                                  "data": {"id": charge["id"]}}  # fmt: skip
    assert _error(lambda: client.get_charge("nope")).http_status == 404


def test_undocumented_fields_and_nulls_are_refused_by_the_mock(client: NomodClient) -> None:
    for body in ({"first_name": "A", "phone_number": None}, {"first_name": "A", "metadata": {"x": "y"}},
                 {"first_name": "A", "phone_number": "+971500123456789"}):  # fmt: skip
        error = _error(lambda body=body: client.post("/v1/customers", body))
        assert isinstance(error, NomodApiError) and error.http_status == 400 and not error.transient


def test_an_invoice_due_before_today_is_invalid_due_date(client: NomodClient) -> None:
    customer = client.post("/v1/customers", {"first_name": "A"})
    body = {"customer": customer["id"], "currency": "AED", "items": [{"name": "x", "amount": "1.00", "quantity": 1}],
            "due_date": (date.today() - timedelta(days=1)).isoformat()}  # fmt: skip
    assert _error(lambda: client.post("/v1/invoices", body)).nomod_code == "invalid_due_date"


def test_find_reads_the_list_pages(client: NomodClient, mock_nomod: MockNomod) -> None:
    for number in range(230):
        mock_nomod[0].customers[f"c{number}"] = {"id": f"c{number}", "email": f"p{number}@example.com"}
    last = client.find("/v1/customers", lambda c: c["email"] == "p229@example.com")
    assert last is not None and last["id"] == "c229"
    assert client.find("/v1/customers", lambda c: c["email"] == "nobody@example.com") is None


# Nomod's own example bodies ---------------------------------------------------------------------


def _answering(status: int, body: dict[str, Any]) -> FastAPI:
    """A stand-in Nomod that answers every request with one recorded body."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def answer(path: str) -> Response:
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    return app


@pytest.mark.parametrize(
    ("status", "body", "path", "kind"),
    [
        (400, examples.ERROR_INVALID_EMAIL, "/v1/customers", NomodInvalidEmail),
        (400, examples.ERROR_FIELD_REQUIRED, "/v1/customers", NomodMissingFields),
        (400, examples.ERROR_INVALID_CUSTOMER, "/v1/invoices", NomodCustomerNotFound),
        (404, examples.ERROR_NOT_FOUND, "/v1/customers", NomodCustomerNotFound),
        (404, examples.ERROR_NOT_FOUND, "/v1/invoices", NomodApiError),
        (400, examples.ERROR_INVALID_DUE_DATE, "/v1/invoices", NomodApiError),
        (401, examples.ERROR_NOT_AUTHENTICATED, "/v1/customers", NomodApiError),
    ],
)
def test_nomods_documented_error_codes_map_to_the_stable_messages(
    status: int, body: dict[str, Any], path: str, kind: type[NomodError]
) -> None:
    with serve_in_thread(_answering(status, body)) as server:
        remote = NomodClient(server.url, KEY, HttpRetryOptions(max_attempts=1), outbound=LOOPBACK)
        try:
            error = _error(lambda: remote.post(path, {"first_name": "A"}))
        finally:
            remote.close()
    assert type(error) is kind and error.nomod_code == body["error"]["code"]
    assert body["error"]["message"] in (error.detail or "")  # Nomod's own words are kept as the detail


def test_a_throttled_answer_is_transient(client: NomodClient) -> None:
    with serve_in_thread(_answering(429, examples.ERROR_THROTTLED)) as server:
        remote = NomodClient(server.url, KEY, HttpRetryOptions(max_attempts=2, backoff_seconds=0), outbound=LOOPBACK)
        try:
            error = _error(lambda: remote.get_charge("x"))
        finally:
            remote.close()
    assert error.transient and not error.uncertain and error.http_status == 429


def test_the_documented_charge_and_webhook_bodies_are_read() -> None:
    assert settled_amount(examples.CHARGE_PAID_THROUGH_LINK) == (Decimal("150.000"), "KWD")
    for body in (examples.WEBHOOK_EVENT, examples.WEBHOOK_FLAT_LINK):
        assert read_delivery(body).charge_id == examples.CHARGE_PAID_THROUGH_LINK["id"]
    assert read_delivery(examples.WEBHOOK_EVENT).event_type == "charge.completed"
    assert read_delivery(examples.WEBHOOK_FLAT_LINK).link_hint == examples.CHARGE_PAID_THROUGH_LINK["link"]["id"]
    assert read_delivery(examples.WEBHOOK_FLAT_INVOICE).invoice_hint == examples.WEBHOOK_FLAT_INVOICE["invoice_id"]


def test_the_mocks_charge_has_the_documented_shape(client: NomodClient, mock_nomod: MockNomod) -> None:
    link = client.post("/v1/links", {"title": "t", "currency": "KWD", "items": [{"name": "a", "amount": "150.000"}],
                                     "allow_service_fee": False})  # fmt: skip
    charge = client.get_charge(mock_nomod[0].pay(None, link["id"])["id"])
    documented = examples.CHARGE_PAID_THROUGH_LINK
    for key in ("id", "reference_id", "created", "currency", "service_fee", "status", "tip", "total", "link"):
        assert type(charge[key]) is type(documented[key]), key
    assert set(charge["link"]) == set(documented["link"]) and charge["link"]["id"] == link["id"]
    assert set(charge) - set(documented) == set()  # nothing the real charge lacks
    listed = client._call("GET", "/v1/customers", None, params={"page": "1", "page_size": "10"})
    assert set(listed) == set(examples.CUSTOMER_LIST_PAGE)


def test_objects_kept_by_an_older_mock_can_still_be_paid() -> None:
    # The demo keeps the mock's objects between runs; those written before service fees have none.
    state = MockNomodState()
    old_link = {"id": "l1", "reference_id": "1", "title": "t", "note": "", "currency": "AED", "status": "enabled",
                "items": [{"name": "a", "amount": "5.00", "quantity": 1}], "amount": "5.00", "url": "u"}  # fmt: skip
    state.load(orjson.dumps({"links": {"l1": old_link}}))
    assert state.pay(None, "l1")["total"] == "5.00"
