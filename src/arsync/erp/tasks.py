"""The ERP jobs: pushes, syncs, a failed scheduled sync's retry, the nightly schedule, and the
minute's look at connections with schedules of their own."""

from __future__ import annotations

from arsync.erp.push import TASK_PUSH, PushFlows
from arsync.erp.sync import TASK_OWN_SCHEDULES, TASK_SCHEDULED_SYNC, TASK_SYNC, TASK_SYNC_RETRY, SyncEngine
from arsync.jobs.registry import Schedule, Task
from arsync.schedule import TICK_CRON


def erp_tasks(sync: SyncEngine, pushes: PushFlows, sync_cron: str) -> list[Task]:
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
    ]
