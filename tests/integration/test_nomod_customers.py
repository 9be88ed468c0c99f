"""Customer sync to the mock Nomod, on SQLite and PostgreSQL: validation, once-only creation, no half writes."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.errors import (
    InvalidInput,
    NomodApiError,
    NomodCustomerNotFound,
    NomodEmailExists,
    NomodError,
    NomodInvalidEmail,
    NomodMissingFields,
    NotFound,
)
from arsync.http_retry import HttpRetryOptions
from arsync.ledger import schemas
from arsync.ledger import service as ledger
from arsync.ledger.models import Customer
from arsync.mocks.nomod import MockNomodState, NomodFault, create_mock_nomod_app
from arsync.mocks.serving import serve_in_thread
from arsync.nomod.flows import NomodFlows
from arsync.nomod.models import EntityIntegrationMapping, NomodConnection
from arsync.nomod.payloads import split_name
from arsync.tenancy.scope import Scope
from tests.conftest import Scope as TenantScope


@pytest.fixture
def nomod_state() -> Iterator[MockNomodState]:
    state = MockNomodState()
    with serve_in_thread(create_mock_nomod_app(state)) as server:
        state.base_url = server.url
        yield state


@pytest.fixture
def service(container: Container) -> NomodFlows:
    return NomodFlows(
        container.session_factory,
        container.vault,
        HttpRetryOptions(timeout_seconds=2, backoff_seconds=0.01),
        outbound=container.outbound,
    )


@pytest.fixture
def nomod_scope(service: NomodFlows, scope: TenantScope, nomod_state: MockNomodState) -> Scope:
    here = Scope(scope.tenant_id, scope.environment_id)
    service.save_connection(here, api_key="sk_test_123456", invoice_sync_outbound=True, base_url=nomod_state.base_url)
    return here


def _customer(
    container: Container, scope: Scope, name: str = "Ada Lovelace", email: str | None = "ada@example.com"
) -> str:
    with transaction(container.session_factory) as session:
        return ledger.create_customer(session, scope, schemas.CustomerCreate(name=name, email=email)).id


def _mappings(container: Container) -> int:
    with container.session_factory() as session:
        return session.scalar(select(func.count()).select_from(EntityIntegrationMapping)) or 0


def test_split_name() -> None:
    assert split_name(" Ada  King Lovelace ") == ("Ada", "King Lovelace")
    assert split_name("Cher") == ("Cher", None)


def test_first_sync_creates_the_customer_and_stores_mapping_and_metadata(
    container: Container, service: NomodFlows, nomod_scope: Scope, nomod_state: MockNomodState
) -> None:
    customer_id = _customer(container, nomod_scope)
    assert nomod_state.stats()["customers"] == 0  # creating a customer syncs nothing
    nomod_id = service.ensure_customer(nomod_scope, customer_id)
    created = nomod_state.customers[nomod_id]
    assert (created["first_name"], created["last_name"], created["email"]) == ("Ada", "Lovelace", "ada@example.com")
    assert "metadata" not in created and created["phone_number"] == ""  # nothing undocumented, no nulls sent
    with container.session_factory() as session:
        customer = session.get(Customer, customer_id)
        assert customer is not None and customer.metadata_["nomod_customer_id"] == nomod_id
        assert customer.metadata_["nomod_sync_timestamp"]

    assert service.ensure_customer(nomod_scope, customer_id) == nomod_id  # the mapping is used
    assert nomod_state.stats()["customers"] == 1 and _mappings(container) == 1


@pytest.mark.parametrize(
    ("name", "email", "kind"),
    [
        ("Ada", None, NomodMissingFields),
        ("   ", "ada@example.com", NomodMissingFields),
        ("Ada", "ada-at-example.com", NomodInvalidEmail),
    ],
)
def test_invalid_customers_fail_before_calling_nomod(
    container: Container,
    service: NomodFlows,
    nomod_scope: Scope,
    nomod_state: MockNomodState,
    name: str,
    email: str | None,
    kind: type[NomodError],
) -> None:
    with transaction(container.session_factory) as session:
        customer = Customer(tenant_id=nomod_scope.tenant_id, environment_id=nomod_scope.environment_id, name=name)
        customer.email = email
        session.add(customer)
        session.flush()
        customer_id = customer.id
    with pytest.raises(NomodError) as raised:
        service.ensure_customer(nomod_scope, customer_id)
    assert type(raised.value) is kind and raised.value.message == kind.stable_message and raised.value.code == kind.code
    assert list(nomod_state.requests) == [] and _mappings(container) == 0


def test_unknown_or_foreign_customer_is_not_found(
    container: Container, service: NomodFlows, nomod_scope: Scope
) -> None:
    with pytest.raises(NomodError, match=NomodCustomerNotFound.stable_message):
        service.ensure_customer(nomod_scope, "cust_nope")
    other = Scope("ten_other", nomod_scope.environment_id)
    customer_id = _customer(container, nomod_scope)
    with pytest.raises(NomodError, match=NomodCustomerNotFound.stable_message):
        service.ensure_customer(other, customer_id)


def test_nomod_refusing_the_email_writes_nothing(
    container: Container, service: NomodFlows, nomod_scope: Scope, nomod_state: MockNomodState
) -> None:
    nomod_state.create_customer({"first_name": "Someone", "email": "taken@example.com"})
    customer_id = _customer(container, nomod_scope, email="taken@example.com")
    with pytest.raises(NomodError) as raised:
        service.ensure_customer(nomod_scope, customer_id)
    assert isinstance(raised.value, NomodEmailExists)
    assert _mappings(container) == 0
    with container.session_factory() as session:
        customer = session.get(Customer, customer_id)
        assert customer is not None and "nomod_customer_id" not in customer.metadata_


def test_a_create_nomod_committed_but_answered_late_is_adopted_not_repeated(
    container: Container, service: NomodFlows, nomod_scope: Scope, nomod_state: MockNomodState
) -> None:
    # Nomod stores the customer, then the answer is lost (past the 2 s timeout).
    nomod_state.faults = [NomodFault(path="/v1/customers", delay=3, after_handling=True, times=1)]
    customer_id = _customer(container, nomod_scope)
    nomod_id = service.ensure_customer(nomod_scope, customer_id)
    assert nomod_state.stats()["customers"] == 1 and nomod_id in nomod_state.customers
    posts = [r for r in nomod_state.requests if r["method"] == "POST"]
    assert len(posts) == 1 and _mappings(container) == 1


def test_a_create_still_unknown_is_looked_for_before_the_next_try(
    container: Container, service: NomodFlows, nomod_scope: Scope, nomod_state: MockNomodState
) -> None:
    # The create is committed and answered 500; the list cannot be read either (503) for now.
    nomod_state.faults = [NomodFault(path="/v1/customers", status=500, after_handling=True, times=1),
                          NomodFault(path="/v1/customers", status=503, times=4)]  # fmt: skip
    customer_id = _customer(container, nomod_scope)
    with pytest.raises(NomodError) as raised:
        service.ensure_customer(nomod_scope, customer_id)
    assert raised.value.uncertain and raised.value.http_status == 500 and _mappings(container) == 0
    # Next time the list answers: the customer Nomod made is found and adopted, not made again.
    assert service.ensure_customer(nomod_scope, customer_id) in nomod_state.customers
    assert nomod_state.stats()["customers"] == 1
    assert len([r for r in nomod_state.requests if r["method"] == "POST"]) == 1


def test_a_nomod_outage_writes_nothing_and_is_transient(
    container: Container, service: NomodFlows, nomod_scope: Scope, nomod_state: MockNomodState
) -> None:
    nomod_state.faults = [NomodFault(path="/v1/customers", status=503)]
    customer_id = _customer(container, nomod_scope)
    with pytest.raises(NomodError) as raised:
        service.ensure_customer(nomod_scope, customer_id)
    assert isinstance(raised.value, NomodApiError) and raised.value.transient and _mappings(container) == 0


def test_a_rejected_key_marks_the_connection_failed(
    container: Container, service: NomodFlows, scope: TenantScope, nomod_state: MockNomodState
) -> None:
    here = Scope(scope.tenant_id, scope.environment_id)
    nomod_state.api_key = "sk_test_the_real_one"
    service.save_connection(here, api_key="sk_test_stale", invoice_sync_outbound=True, base_url=nomod_state.base_url)
    with pytest.raises(NomodError) as raised:
        service.ensure_customer(here, _customer(container, here))
    assert raised.value.unauthorized and isinstance(raised.value, NomodApiError)
    with container.session_factory() as session:
        connection = session.scalars(select(NomodConnection)).one()
        assert connection.status == "FAILED" and "API key" in (connection.status_reason or "")
        assert "sk_test_stale" not in str(connection.last_error)


def test_twenty_concurrent_syncs_create_one_nomod_customer(
    container: Container, service: NomodFlows, nomod_scope: Scope, nomod_state: MockNomodState
) -> None:
    customer_id = _customer(container, nomod_scope)
    nomod_state.faults = [NomodFault(path="/v1/customers", delay=0.3, times=1)]  # widen the race window
    with ThreadPoolExecutor(max_workers=20) as pool:
        ids = set(pool.map(lambda _: service.ensure_customer(nomod_scope, customer_id), range(20)))
    assert len(ids) == 1
    assert nomod_state.stats()["customers"] == 1 and _mappings(container) == 1


def test_the_connection_key_is_encrypted_and_masked(
    container: Container, service: NomodFlows, nomod_scope: Scope
) -> None:
    with container.session_factory() as session:
        connection = session.scalars(select(NomodConnection)).one()
    assert "sk_test_123456" not in connection.api_key_encrypted
    assert container.vault.decrypt(connection.api_key_encrypted) == "sk_test_123456"
    assert connection.api_key_hint.endswith("3456") and "sk_test_12" not in connection.api_key_hint


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("apiKey", {"api_key": "pk_live_x"}),
        ("baseUrl", {"base_url": "ftp://nomod"}),
        ("webhookSecret", {"webhook_secret": "secret"}),
    ],
)
def test_bad_connection_settings_are_refused(
    service: NomodFlows, nomod_scope: Scope, field: str, kwargs: dict[str, str]
) -> None:
    values = {"api_key": "sk_test_123456", "base_url": "https://api.nomod.com"} | kwargs
    with pytest.raises(InvalidInput) as raised:
        service.save_connection(
            nomod_scope,
            api_key=values["api_key"],
            base_url=values["base_url"],
            webhook_secret=values.get("webhook_secret"),
            invoice_sync_outbound=False,
        )
    assert raised.value.details == {"field": field}


def test_syncing_an_invoice_that_is_gone_is_a_not_found(service: NomodFlows, nomod_scope: Scope) -> None:
    """It was a 409 that carried the code NOT_FOUND."""
    with pytest.raises(NotFound, match="no longer exists") as gone:
        service.sync_invoice(nomod_scope, "inv_that_never_was")
    assert gone.value.code == "NOT_FOUND" and gone.value.status_code == 404
