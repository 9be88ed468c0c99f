"""The one poll loop of the tests: ask until the answer is truthy, or fail the test."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def eventually(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = 60,
    interval: float = 0.05,
    explain: Callable[[], str] | None = None,
) -> T:
    """``probe()`` again and again until it returns something truthy, which is returned.

    Fails the test after ``timeout`` seconds, naming ``what`` was awaited and, if given, what
    ``explain()`` says (a server's log, the last answer).
    """
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}" + (f"\n{explain()}" if explain else ""))
        time.sleep(interval)
