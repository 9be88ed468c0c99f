"""Injected faults shared by the mocks: each fires ``times`` times (or forever), then is gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar


class CountedFault(Protocol):
    times: int | None


F = TypeVar("F", bound=CountedFault)


def take_first(faults: list[F], matches: Callable[[F], bool]) -> F | None:
    """The first fault ``matches`` accepts, with one of its ``times`` spent; the caller holds the lock."""
    for fault in faults:
        if not matches(fault):
            continue
        if fault.times is not None:
            fault.times -= 1
            if fault.times == 0:
                faults.remove(fault)
        return fault
    return None
