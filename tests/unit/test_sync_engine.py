"""The sync engine with a fake connector and an in-memory SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from arsync import migrate
from arsync.db import make_engine, make_session_factory, transaction
from arsync.erp import contract
from arsync.erp.models import Connection
from arsync.erp.sync import EntityStats, SyncEngine, SyncOptions
from arsync.tenancy import service as tenancy
from arsync.vault import Vault
from tests.fakes import FakeErpConnector


def debtor(n: int) -> contract.Debtor:
    return contract.Debtor(erp_debtor_id=f"D{n}", name=f"Debtor {n}")


def invoice(n: int, debtor_id: str = "D1") -> contract.Invoice:
    return contract.Invoice(
        erp_invoice_id=f"I{n}", invoice_number=f"I{n}", erp_debtor_id=debtor_id, debtor_name="Walk-in",
        issue_date=date(2026, 1, 1), due_date=date(2026, 2, 1), currency="KWD",
        amount_total=Decimal("1.005"), amount_outstanding=Decimal("1.005"), status="AUTHORISED",
    )  # fmt: skip


@pytest.fixture
def engine_and_connection(tmp_path: Path) -> Iterator[tuple[SyncEngine, FakeErpConnector, str]]:
    # A file, not ":memory:": the engine writes pages from a thread of its own, and an in-memory
    # SQLite database is one per connection (so one per thread).
    db = make_engine(f"sqlite:///{tmp_path / 'sync.db'}")
    migrate.upgrade(db)
    factory = make_session_factory(db)
    fake = FakeErpConnector(debtors=[debtor(n) for n in range(1, 6)], invoices=[invoice(1), invoice(2, "DX")])
    vault = Vault(Fernet.generate_key().decode())
    with transaction(factory) as session:
        created = tenancy.create_tenant(session, "t", "prod")
        connection = Connection(
            tenant_id=created.tenant_id,
            environment_id=created.environment_id,
            transport="rest",
            provider="nudge-rest",
            base_url="http://fake",
            secret_encrypted=vault.encrypt("ask_x"),
            secret_hint="ask_…x",
        )
        session.add(connection)
    engine = SyncEngine(factory, lambda _c: fake, SyncOptions(page_size=2, max_pages=10))
    yield engine, fake, connection.id
    db.dispose()


def test_progress_is_reported_per_page_and_connector_closed(engine_and_connection):
    engine, fake, connection_id = engine_and_connection
    seen: list[tuple[str, int]] = []

    def progress(entity: str, stats: EntityStats) -> None:
        seen.append((entity, stats.pages))

    run = engine.run(connection_id, progress=progress)
    assert run.status == "SUCCEEDED"
    assert seen == [("debtors", 1), ("debtors", 2), ("debtors", 3), ("invoices", 1), ("payments", 1)]
    assert run.stats["debtors"]["inferred"] == 1 and run.stats["debtors"]["created"] == 6
    assert fake.closed


def test_duplicate_ids_in_a_page_are_counted_and_warned(engine_and_connection):
    engine, fake, connection_id = engine_and_connection
    fake.pages_override[("debtors", 1)] = ([debtor(1), debtor(1)], False)
    run = engine.run(connection_id)
    assert run.status == "SUCCEEDED"
    assert run.stats["debtors"]["skipped"] == 1
    assert run.warnings[0]["code"] == "DUPLICATE_IN_PAGE"


@pytest.mark.parametrize(
    ("override", "kind"),
    [
        (([], True), "PagingError"),
        (([debtor(1), debtor(2), debtor(3)], False), "ContractViolation"),
    ],
)
def test_paging_guards(engine_and_connection, override, kind):
    engine, fake, connection_id = engine_and_connection
    fake.pages_override[("debtors", 2)] = override
    run = engine.run(connection_id)
    assert run.status == "FAILED" and run.error is not None
    assert run.error["kind"] == kind and run.error["page"] == 2 and run.error["endpoint"] == "/debtors/list"


def test_unexpected_error_fails_run_but_not_connection(engine_and_connection):
    engine, fake, connection_id = engine_and_connection

    def broken(page: int, limit: int, modified_since: object) -> object:
        raise RuntimeError("bug")

    fake.list_invoices = broken
    run = engine.run(connection_id)
    assert run.status == "FAILED" and run.error is not None and run.error["kind"] == "InternalError"
    with engine.session_factory() as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None and connection.status == "PENDING"
