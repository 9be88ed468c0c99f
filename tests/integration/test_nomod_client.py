"""The Nomod client against the mock Nomod over loopback HTTP: validation, errors, faults, webhooks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from arsync.http_retry import HttpRetryOptions
from arsync.mocks.nomod import MockNomodState, NomodFault, create_mock_nomod_app
from arsync.mocks.serving import RunningServer, serve_in_thread
from arsync.nomod import client as nomod
from arsync.nomod import signing
from arsync.nomod.client import NomodClient, NomodError

KEY = "sk_test_arsync"
MockNomod = tuple[MockNomodState, RunningServer]


@pytest.fixture
def mock_nomod() -> Iterator[tuple[MockNomodState, RunningServer]]:
    state = MockNomodState()
    with serve_in_thread(create_mock_nomod_app(state)) as server:
        state.base_url = server.url
        yield state, server


@pytest.fixture
def client(mock_nomod: tuple[MockNomodState, RunningServer]) -> Iterator[NomodClient]:
    options = HttpRetryOptions(timeout_seconds=1, max_attempts=3, backoff_seconds=0.01, max_retry_after_seconds=0.1)
    nomod_client = NomodClient(mock_nomod[1].url, KEY, options)
    yield nomod_client
    nomod_client.close()


def _error(call: Any) -> NomodError:
    with pytest.raises(NomodError) as raised:
        call()
    return raised.value


def test_customer_invoice_and_link_round_trip(client: NomodClient, mock_nomod: tuple[MockNomodState, Any]) -> None:
    customer = client.create_customer({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"})
    assert len(customer["id"]) == 36 and customer["created"]
    invoice = client.create_invoice(
        {
            "customer": customer["id"],
            "currency": "KWD",
            "items": [{"name": "Audit", "amount": "1150.005", "quantity": 2}],
            "due_date": "2026-03-31",
            "invoice_number": "AR-1",
        }
    )
    assert invoice["amount"] == "2300.010" and invoice["url"].endswith(invoice["id"])
    link = client.create_link({"title": "AR-2", "currency": "AED", "items": [{"name": "Fee", "amount": "10.50"}]})
    assert link["url"].endswith(link["id"])
    state = mock_nomod[0]
    assert state.stats()["customers"] == 1 and state.invoices[invoice["id"]]["items"][0]["amount"] == "1150.005"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"last_name": "X", "email": "x@example.com"}, nomod.MISSING_FIELDS),
        ({"first_name": "  ", "email": "x@example.com"}, nomod.MISSING_FIELDS),
        ({"first_name": "X", "email": "not-an-email"}, nomod.INVALID_EMAIL),
    ],
)
def test_customer_validation_errors_are_exact(client: NomodClient, body: dict[str, Any], message: str) -> None:
    error = _error(lambda: client.create_customer(body))
    assert error.message == message and error.code == nomod.CODES[message] and not error.transient


def test_a_duplicate_email_is_refused(client: NomodClient) -> None:
    client.create_customer({"first_name": "A", "email": "dup@example.com"})
    error = _error(lambda: client.create_customer({"first_name": "B", "email": "DUP@example.com"}))
    assert error.message == nomod.EMAIL_EXISTS and error.code == "NOMOD_EMAIL_EXISTS"


def test_an_invoice_for_an_unknown_customer_is_refused(client: NomodClient) -> None:
    body = {
        "customer": "00000000-0000-0000-0000-000000000000",
        "currency": "AED",
        "items": [{"name": "x", "amount": "1.00", "quantity": 1}],
        "due_date": "2026-01-01",
    }
    assert _error(lambda: client.create_invoice(body)).message == nomod.CUSTOMER_NOT_FOUND


@pytest.mark.parametrize("amount", ["1.0001", "-5", "abc", 10.5])
def test_amounts_must_be_exact_decimal_strings_for_the_currency(client: NomodClient, amount: Any) -> None:
    customer = client.create_customer({"first_name": "A"})
    body = {
        "customer": customer["id"],
        "currency": "KWD",
        "items": [{"name": "x", "amount": amount, "quantity": 1}],
        "due_date": "2026-01-01",
    }
    error = _error(lambda: client.create_invoice(body))
    assert error.message == nomod.API_ERROR and error.http_status == 400 and not error.transient


def test_transient_failures_are_retried(client: NomodClient, mock_nomod: tuple[MockNomodState, Any]) -> None:
    state = mock_nomod[0]
    state.faults = [NomodFault(path="/v1/customers", status=503, times=1)]
    state.faults.append(NomodFault(path="/v1/customers", status=429, retry_after=0, times=1))
    assert client.create_customer({"first_name": "Retry"})["id"]
    assert [r["path"] for r in state.requests].count("/v1/customers") == 3


def test_persistent_5xx_gives_a_transient_api_error(
    client: NomodClient, mock_nomod: tuple[MockNomodState, Any]
) -> None:
    mock_nomod[0].faults = [NomodFault(path="/v1/customers", status=500)]
    error = _error(lambda: client.create_customer({"first_name": "X"}))
    assert error.message == nomod.API_ERROR and error.transient and error.http_status == 500
    assert mock_nomod[0].stats()["customers"] == 0


def test_a_timeout_is_a_transient_api_error(client: NomodClient, mock_nomod: MockNomod) -> None:
    mock_nomod[0].faults = [NomodFault(path="/v1/links", delay=2)]
    error = _error(
        lambda: client.create_link({"title": "t", "currency": "AED", "items": [{"name": "a", "amount": "1"}]})
    )
    assert error.message == nomod.API_ERROR and error.transient and "timed out" in (error.detail or "")


def test_a_wrong_key_is_unauthorized_and_not_retried(mock_nomod: tuple[MockNomodState, RunningServer]) -> None:
    bad = NomodClient(mock_nomod[1].url, "sk_live_wrong", HttpRetryOptions(max_attempts=3, backoff_seconds=0))
    try:
        error = _error(lambda: bad.create_customer({"first_name": "X"}))
    finally:
        bad.close()
    assert error.message == nomod.API_ERROR and error.unauthorized and not error.transient
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
    customer = client.create_customer({"first_name": "Payer"})
    invoice = client.create_invoice(
        {
            "customer": customer["id"],
            "currency": "AED",
            "items": [{"name": "x", "amount": "99.99", "quantity": 1}],
            "due_date": "2026-01-01",
        }
    )
    with serve_in_thread(receiver) as hook_server:
        httpx.put(f"{server.url}/_mock/webhook", json={"url": f"{hook_server.url}/hook", "secret": secret})
        paid = httpx.post(f"{server.url}/_mock/pay", json={"invoiceId": invoice["id"]}, timeout=30).json()
        assert arrived.wait(10)
    headers, body = received[0]
    assert signing.verify(secret, headers, body) == headers["svix-id"]
    charge = client.get_charge(paid["charge"]["id"])
    assert (charge["status"], charge["invoice"], Decimal(charge["amount"])) == ("paid", invoice["id"], Decimal("99.99"))
    assert _error(lambda: client.get_charge("nope")).http_status == 404
