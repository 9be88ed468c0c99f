"""What a job kind is: a name, what runs it, and, for a periodic one, its schedule.

Each feature declares its job kinds in its own ``tasks`` module. The container gathers them
into one list, which both the Procrastinate worker and the in-process queue read, so adding a
job kind touches only the feature that queues it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Schedule:
    """Run once per slot of ``cron``, however many workers run; ``periodic_id`` keys the slot."""

    cron: str
    periodic_id: str


@dataclass(frozen=True)
class Task:
    name: str
    run: Callable[..., Any]
    schedule: Schedule | None = None
