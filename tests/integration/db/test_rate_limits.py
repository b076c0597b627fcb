"""The shared request budget: two processes (two engines) see each other's use, back-offs, bans and reserve."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from ats.clock import FakeClock
from ats.exchange.budget import BudgetLimits, Priority, RequestBudget
from ats.exchange.errors import IpBanned
from db.rate_limits import PostgresBudgetStore
from db.session import Database


@pytest.fixture
def two_processes(db: Database) -> Iterator[tuple[PostgresBudgetStore, PostgresBudgetStore]]:
    other = create_engine(db.engine.url.render_as_string(hide_password=False))
    yield PostgresBudgetStore(db.engine), PostgresBudgetStore(other)
    other.dispose()


async def test_weight_and_bans_are_shared(two_processes: tuple[PostgresBudgetStore, PostgresBudgetStore]) -> None:
    first_store, second_store = two_processes
    clock = FakeClock()
    limits = BudgetLimits(weight_per_minute=100, safety_margin=0.0, protective_reserve=0.0)
    first = RequestBudget(first_store, scope="ip:test", clock=clock, limits=limits, max_wait_s=1)
    second = RequestBudget(second_store, scope="ip:test", clock=clock, limits=limits, max_wait_s=1)

    await first.acquire(60)
    await second.acquire(40)
    assert second_store.snapshot("ip:test").used_weight == 100

    await first.banned(clock.now_ms() + 120_000)
    with pytest.raises(IpBanned):
        await second.acquire(1)


async def test_concurrent_reservations_never_overspend(
    two_processes: tuple[PostgresBudgetStore, PostgresBudgetStore],
) -> None:
    clock = FakeClock(start_ms=1_767_225_600_000)
    limits = BudgetLimits(weight_per_minute=50, safety_margin=0.0, protective_reserve=0.0)
    budgets = [
        RequestBudget(store, scope="ip:race", clock=clock, limits=limits, max_wait_s=0.001) for store in two_processes
    ]
    outcomes = await asyncio.gather(*(budgets[i % 2].acquire(5) for i in range(20)), return_exceptions=True)
    granted = sum(1 for outcome in outcomes if outcome is None)
    assert granted == 10
    assert two_processes[0].snapshot("ip:race").used_weight == 50


async def test_a_scan_in_one_process_leaves_the_reserve_to_the_stops_of_another(
    two_processes: tuple[PostgresBudgetStore, PostgresBudgetStore],
) -> None:
    clock = FakeClock(start_ms=1_767_225_600_000)
    limits = BudgetLimits(weight_per_minute=100, safety_margin=0.1, protective_reserve=0.2)
    scan = RequestBudget(two_processes[0], scope="ip:reserve", clock=clock, limits=limits, max_wait_s=1)
    monitor = RequestBudget(two_processes[1], scope="ip:reserve", clock=clock, limits=limits, max_wait_s=1)
    outcomes = await asyncio.gather(*(scan.acquire(10) for _ in range(9)), return_exceptions=True)
    assert sum(1 for outcome in outcomes if outcome is None) == 7  # 70 of 100: the normal share
    for _ in range(4):
        await monitor.acquire(5, priority=Priority.PROTECTIVE)
    assert two_processes[0].snapshot("ip:reserve").used_weight == 90
    assert clock.now_ms() == 1_767_225_600_000  # nobody waited
