"""The notification job: one attempt at one delivery."""

from __future__ import annotations

from arsync.jobs.registry import Task
from arsync.notify.flows import TASK_NOTIFY, Notifier


def notify_tasks(notifier: Notifier) -> list[Task]:
    return [Task(TASK_NOTIFY, notifier.deliver)]
