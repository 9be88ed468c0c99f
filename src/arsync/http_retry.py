"""Timeouts and retries shared by every outbound HTTP client (ERP middleware, Xero, Nomod)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class HttpRetryOptions:
    """How long one call may take and how often a transient failure is tried again.

    Each client's options extend this with settings of its own.
    """

    timeout_seconds: float = 30.0
    max_attempts: int = 4
    backoff_seconds: float = 0.5
    max_retry_after_seconds: float = 60.0

    def wait_before_retry(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before the attempt after ``attempt``: the server's Retry-After (capped), else jittered doubling."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_seconds)
        backoff: float = self.backoff_seconds * 2 ** (attempt - 1)
        return backoff * (0.5 + random.random() / 2)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
