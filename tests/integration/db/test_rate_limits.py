"""The shared request budget: two processes (two engines) see each other's use, back-offs, bans and reserve."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from ats.clock import FakeClock
from ats.exchange.budget import BudgetLimits, Priority, RequestBudget
from ats.exchange.errors import IpBanned, RateLimited
from db.rate_limits import PostgresBudgetStore
from db.session import Database
from tests.chaos.pgproxy import PgProxy


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


async def test_requests_do_not_wait_for_the_database_and_still_count(db: Database) -> None:
    """With the shared budget's database down, requests went nowhere: the stop of an entry that filled at that moment
    waited seconds for PostgreSQL. The process now counts on alone from the last state it saw, within the limits."""
    url = db.engine.url.render_as_string(hide_password=False)
    proxy = PgProxy.for_url(url)
    proxy.start()
    engine = create_engine(proxy.url(url), pool_pre_ping=True)
    try:
        clock = FakeClock()
        limits = BudgetLimits(weight_per_minute=100, safety_margin=0.0, protective_reserve=0.0)
        budget = RequestBudget(PostgresBudgetStore(engine), scope="ip:down", clock=clock, limits=limits, max_wait_s=1)
        await budget.acquire(60)
        proxy.cut(600.0)
        await budget.acquire(30, priority=Priority.PROTECTIVE)
        with pytest.raises(RateLimited):  # 60 + 30 counted alone: 20 more do not fit this minute
            await budget.acquire(20)
        proxy.heal()
        await budget.acquire(30)  # the store again (it never heard of the 30 taken alone)
        assert PostgresBudgetStore(db.engine).snapshot("ip:down").used_weight == 90
    finally:
        engine.dispose()
        proxy.stop()
