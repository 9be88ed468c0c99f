"""A per-organisation call budget, so arsync stays inside Xero's limits instead of bouncing off them.

Xero allows 5 calls in flight and 60 a minute per organisation, and 1,000 (Starter tier) to
5,000 a day per app and organisation (Xero's API rate limits page). The budget keeps to
``max_in_flight`` and ``per_window`` calls per window in this process, and after a 429 holds
every call to that organisation until its ``Retry-After`` has passed. Other processes that call
the same organisation are covered by that rule and by ``X-MinLimit-Remaining``, which Xero
sends with every answer. The daily limit is Xero's to count (``X-DayLimit-Remaining``; the
connector stops calling at zero), and its 429 says when calls may resume.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class CallBudget:
    def __init__(
        self,
        per_window: int,
        window_seconds: float,
        max_in_flight: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_window = per_window
        self.window_seconds = window_seconds
        self._in_flight = threading.BoundedSemaphore(max_in_flight)
        self._calls: deque[float] = deque()
        self._blocked_until = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Wait for room, then hold one of the in-flight places for the call."""
        with self._in_flight:
            self._wait_for_window()
            yield

    def observe(self, minute_remaining: str | None) -> None:
        """Xero's own count of this minute's calls left (``X-MinLimit-Remaining``), which also counts
        other processes' calls. At none left, the next call waits one call's share of the window
        rather than earn a 429; Xero does not say when its rolling window frees a place."""
        if minute_remaining is not None and minute_remaining.strip() == "0":
            self.back_off(self.window_seconds / self.per_window)

    def back_off(self, seconds: float) -> None:
        """No call to this organisation for ``seconds`` (a 429's Retry-After)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def _wait_for_window(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._calls and now - self._calls[0] >= self.window_seconds:
                    self._calls.popleft()
                wait = self._blocked_until - now
                if wait <= 0:
                    if len(self._calls) < self.per_window:
                        self._calls.append(now)
                        return
                    wait = self._calls[0] + self.window_seconds - now
            self._sleep(max(wait, 0.001))


class CallBudgets:
    """The call budget of each organisation, shared by every connector the container builds for it."""

    def __init__(self) -> None:
        self._budgets: dict[str, CallBudget] = {}
        self._lock = threading.Lock()

    def for_organisation(
        self, organisation: str, per_window: int, window_seconds: float, max_in_flight: int
    ) -> CallBudget:
        with self._lock:
            budget = self._budgets.get(organisation)
            if budget is None:
                budget = self._budgets[organisation] = CallBudget(per_window, window_seconds, max_in_flight)
            return budget
