"""Connections on the server's schedule or their own, on SQLite and PostgreSQL: each slot starts
a connection once, a new schedule waits for its next slot, and the toolbar's next run follows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from arsync.bootstrap import Container
from arsync.db import transaction
from arsync.erp import service as erp_service
from arsync.erp.models import Connection, SyncRun
from arsync.erp.schemas import ConnectionUpdate
from arsync.erp.sync import SyncEngine
from arsync.schedule import latest_slot, next_slot, valid_cron
from arsync.tenancy import service as tenancy
from tests.conftest import MockErp
from tests.fakes import RecordingQueue

MADE = datetime(2026, 12, 3, 10, 0, 30, tzinfo=UTC)


def _connection(container: Container, mock_erp: MockErp, name: str, cron: str | None) -> str:
    with transaction(container.session_factory) as session:
        created = tenancy.create_tenant(session, name, "prod")
    saved, _ = container.connections.save_rest(created.tenant_id, created.environment_id, mock_erp.url, None)
    container.connections.check_health(saved.id, scope=None)
    with transaction(container.session_factory) as session:
        connection = session.get(Connection, saved.id)
        assert connection is not None and connection.status == "ACTIVE"
        connection.sync_cron, connection.created_at = cron, MADE
    return saved.id


def _runs(container: Container, connection_id: str) -> list[str]:
    with container.session_factory() as session:
        return list(session.scalars(select(SyncRun.trigger).where(SyncRun.connection_id == connection_id)))


def test_a_connection_with_its_own_schedule_starts_once_per_slot_and_only_by_it(
    container: Container, mock_erp: MockErp
) -> None:
    queue = RecordingQueue()
    engine = SyncEngine(container.session_factory, container.connector_for, queue=queue)
    hourly = _connection(container, mock_erp, "hourly", "0 * * * *")
    nightly = _connection(container, mock_erp, "nightly", None)

    assert engine.start_own_schedules(MADE + timedelta(minutes=30)) == 0  # no slot since it was made
    assert engine.start_own_schedules(MADE + timedelta(hours=1)) == 1  # 11:00:30, after the 11:00 slot
    assert _runs(container, hourly) == ["schedule"]
    assert engine.start_own_schedules(MADE + timedelta(hours=1, minutes=1)) == 0  # that slot is spent
    assert _runs(container, nightly) == []  # the server's schedule is not its business

    with transaction(container.session_factory) as session:  # the hourly run finishes
        for run in session.scalars(select(SyncRun).where(SyncRun.connection_id == hourly)):
            run.status = "SUCCEEDED"
    assert engine.start_scheduled() == 1  # the server's slot starts the other one only
    assert _runs(container, hourly) == ["schedule"] and _runs(container, nightly) == ["schedule"]


def test_a_new_schedule_waits_for_its_next_slot_and_null_returns_to_the_servers(
    container: Container, mock_erp: MockErp
) -> None:
    queue = RecordingQueue()
    engine = SyncEngine(container.session_factory, container.connector_for, queue=queue)
    connection_id = _connection(container, mock_erp, "changed", None)
    with transaction(container.session_factory) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        erp_service.update_settings(session, connection, {"sync_schedule": "*/5 * * * *"})
        claimed_from = connection.schedule_slot_at
    assert claimed_from is not None
    # Saving does not count as a slot that has passed: nothing starts before the next one.
    assert engine.start_own_schedules(claimed_from) == 0
    assert engine.start_own_schedules(next_slot("*/5 * * * *", claimed_from) + timedelta(seconds=1)) == 1
    with transaction(container.session_factory) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        erp_service.update_settings(session, connection, {"sync_schedule": None})
        assert connection.sync_cron is None


@pytest.mark.parametrize("cron", ["every day", "0 2 * *", "61 * * * *", "0 2 * * * *"])
def test_a_schedule_that_is_not_cron_is_refused_in_plain_words(cron: str) -> None:
    with pytest.raises(ValidationError, match="five-field cron"):
        ConnectionUpdate.model_validate({"syncSchedule": cron})


def test_slots_at_and_around_the_minute() -> None:
    at_two = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    assert latest_slot("0 2 * * *", at_two) == at_two  # a slot that is now counts as passed
    assert latest_slot("0 2 * * *", at_two - timedelta(seconds=1)) == at_two - timedelta(days=1)
    assert next_slot("0 2 * * *", at_two) == at_two + timedelta(days=1)
    assert valid_cron("  0   2 * * * ") == "0 2 * * *"
