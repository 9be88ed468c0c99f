"""The ERP jobs: pushes, syncs, a failed scheduled sync's retry, the nightly schedule, the
minute's look at connections with schedules of their own, and the weekly reconciliation."""

from __future__ import annotations

from sqlalchemy import select

from arsync.erp.models import Connection
from arsync.erp.push import TASK_PUSH, PushFlows
from arsync.erp.sync import (
    SCHEDULED_STATUSES,
    TASK_OWN_SCHEDULES,
    TASK_SCHEDULED_SYNC,
    TASK_SYNC,
    TASK_SYNC_RETRY,
    SyncEngine,
)
from arsync.jobs.registry import Schedule, Task
from arsync.schedule import TICK_CRON

TASK_SCHEDULED_RECONCILE = "arsync.scheduled_reconcile"  # stored with queued jobs: never rename


def reconcile_every_connection(sync: SyncEngine) -> int:
    """Start a reconciliation of every connection a schedule would sync (ACTIVE or FAILED). One
    whose sync is running at that moment waits for the next slot."""
    with sync.session_factory() as session:
        due = session.scalars(
            select(Connection.id).where(Connection.status.in_(SCHEDULED_STATUSES)).order_by(Connection.id)
        ).all()
    return sync.start_each(due, "schedule", kind="reconcile")


def erp_tasks(sync: SyncEngine, pushes: PushFlows, sync_cron: str, reconcile_cron: str) -> list[Task]:
    return [
        Task(TASK_PUSH, pushes.execute),
        Task(TASK_SYNC, sync.execute),
        Task(TASK_SYNC_RETRY, sync.retry),
        Task(
            TASK_SCHEDULED_SYNC,
            lambda: sync.start_scheduled(trigger="schedule"),
            Schedule(sync_cron, periodic_id="active-connections"),
        ),
        Task(TASK_OWN_SCHEDULES, sync.start_own_schedules, Schedule(TICK_CRON, periodic_id="connection-schedules")),
        Task(
            TASK_SCHEDULED_RECONCILE,
            lambda: reconcile_every_connection(sync),
            Schedule(reconcile_cron, periodic_id="reconcile-connections"),
        ),
    ]
