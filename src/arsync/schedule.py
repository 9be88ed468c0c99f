"""When connections sync by themselves: the server's cron (``ARSYNC_SYNC_CRON``), or a
connection's own.

A connection without a schedule of its own syncs at the server's slots, in one periodic job for
all of them. A connection with its own is looked at by a job every minute, which starts it
once for each of its slots that has passed since the last one it was started for (or since it
was made).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

TICK_CRON = "* * * * *"  # how often own schedules are looked at: cron's finest grain


def valid_cron(value: str) -> str:
    """``value`` if it is a five-field cron expression (minute hour day month weekday, UTC)."""
    value = " ".join(value.split())
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a five-field cron expression, e.g. '0 2 * * *' (02:00 UTC daily)")
    return value


def next_slot(cron: str, after: datetime) -> datetime:
    slots: Any = croniter(cron, after.astimezone(UTC))
    found: datetime = slots.get_next(datetime)
    return found


def latest_slot(cron: str, now: datetime) -> datetime:
    """The last slot at or before ``now``."""
    slots: Any = croniter(cron, now.astimezone(UTC) + timedelta(seconds=1))
    found: datetime = slots.get_prev(datetime)
    return found
