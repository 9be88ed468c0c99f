"""The Nomod jobs: sending a finalized invoice to Nomod."""

from __future__ import annotations

from arsync.jobs.registry import Task
from arsync.nomod.flows import NomodFlows
from arsync.nomod.service import TASK_NOMOD_INVOICE


def nomod_tasks(nomod: NomodFlows) -> list[Task]:
    return [Task(TASK_NOMOD_INVOICE, nomod.run_invoice_sync)]
