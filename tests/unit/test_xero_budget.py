"""The per-organisation call budget reads Xero's own count of the minute's calls left."""

from __future__ import annotations

from arsync.xero.limits import CallBudget, CallBudgets


class FakeClock:
    """The clock and sleep a CallBudget takes (``clock`` and ``sleep`` arguments): time moves only when slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_no_calls_left_this_minute_makes_the_next_call_wait() -> None:
    time = FakeClock()
    budget = CallBudget(60, 60.0, 5, clock=time.clock, sleep=time.sleep)
    with budget.slot():
        pass
    budget.observe("3")
    with budget.slot():
        pass
    assert time.slept == []  # calls left: no wait
    budget.observe("0")  # another process used the rest of the minute
    with budget.slot():
        pass
    assert sum(time.slept) >= 1.0  # one call's share of the window
    budget.observe(None)  # an answer without the header changes nothing


def test_connectors_of_one_container_share_an_organisations_budget_and_containers_do_not() -> None:
    budgets, other_container = CallBudgets(), CallBudgets()
    first = budgets.for_organisation("https://api.xero.com org-1", 60, 60.0, 5)
    assert budgets.for_organisation("https://api.xero.com org-1", 60, 60.0, 5) is first
    assert budgets.for_organisation("https://api.xero.com org-2", 60, 60.0, 5) is not first
    assert other_container.for_organisation("https://api.xero.com org-1", 60, 60.0, 5) is not first
