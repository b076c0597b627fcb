"""The shared request budget: pure arithmetic, priorities, and the waiting/ban behaviour on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import pytest

from ats.clock import FakeClock
from ats.exchange.budget import (
    BudgetLimits,
    BudgetState,
    InMemoryBudgetStore,
    Priority,
    RequestBudget,
    adds_to,
    back_off,
    ban,
    current_priority,
    observe,
    protective,
    request_priority,
    reserve,
    retry_after_429,
    roll,
)
from ats.exchange.errors import IpBanned, RateLimited

T = TypeVar("T")
T0 = 1_767_225_600_000  # a minute boundary
NORMAL, PROTECTIVE = Priority.NORMAL, Priority.PROTECTIVE
# Without a protective reserve: the plain arithmetic of windows, margins, back-offs and bans.
LIMITS = BudgetLimits(
    weight_per_minute=100, orders_per_10s=10, orders_per_minute=20, safety_margin=0.2, protective_reserve=0.0
)
# With one: normal work may use 70 weight, 7 orders per 10 s, 14 per minute; protective work 90, 9 and 18.
RESERVED = BudgetLimits(
    weight_per_minute=100, orders_per_10s=10, orders_per_minute=20, safety_margin=0.1, protective_reserve=0.2
)


def test_caps_keep_the_safety_margin_and_leave_the_reserve_to_protective_work() -> None:
    assert LIMITS.cap(100, NORMAL) == LIMITS.cap(100, PROTECTIVE) == 80
    assert BudgetLimits(safety_margin=0.0, protective_reserve=0.0).cap(2400, NORMAL) == 2400
    defaults = BudgetLimits()  # Binance's limits: 20 % kept unused, 15 % kept for protective work
    assert [defaults.cap(limit, NORMAL) for limit in (2400, 300, 1200)] == [1560, 195, 780]
    assert [defaults.cap(limit, PROTECTIVE) for limit in (2400, 300, 1200)] == [1920, 240, 960]
    with pytest.raises(ValueError, match="protective reserve"):
        BudgetLimits(safety_margin=0.5, protective_reserve=0.5)


def test_reserve_takes_weight_until_the_margin_then_waits_for_the_next_window() -> None:
    state = BudgetState()
    for _ in range(8):
        state, granted = reserve(state, T0 + 1000, 10, 0, LIMITS)
        assert granted.granted
    assert state.used_weight == 80
    same, refused = reserve(state, T0 + 1000, 1, 0, LIMITS)
    assert same == state
    assert not refused.granted
    assert refused.wait_ms == 59_000
    assert "weight" in refused.reason
    fresh, granted = reserve(state, T0 + 60_000, 10, 0, LIMITS)
    assert granted.granted
    assert fresh.used_weight == 10
    assert fresh.window_start_ms == T0 + 60_000


def test_a_request_heavier_than_the_budget_goes_alone_at_the_start_of_a_window() -> None:
    state, granted = reserve(BudgetState(), T0, 500, 0, LIMITS)
    assert granted.granted
    assert state.used_weight == 500
    _, refused = reserve(state, T0 + 10, 1, 0, LIMITS)
    assert refused.wait_ms == 60_000 - 10


def test_order_counts_have_their_own_windows() -> None:
    state = BudgetState()
    for _ in range(8):  # 80 % of 10 per 10 s
        state, granted = reserve(state, T0 + 2000, 0, 1, LIMITS)
        assert granted.granted
    _, refused = reserve(state, T0 + 2000, 0, 1, LIMITS)
    assert refused.wait_ms == 8000
    assert "10 s" in refused.reason
    state, granted = reserve(state, T0 + 10_000, 0, 1, LIMITS)
    assert granted.granted
    assert state.orders_10s == 1
    assert state.orders_1m == 9
    for second in range(2, 6):
        for _ in range(2):
            state, granted = reserve(state, T0 + second * 10_000, 0, 1, LIMITS)
    _, refused = reserve(state, T0 + 55_000, 0, 1, LIMITS)
    assert state.orders_1m == 16
    assert refused.wait_ms == 5000
    assert "1 min" in refused.reason


def test_observe_only_raises_counters_and_rolls_windows() -> None:
    state = roll(BudgetState(), T0)
    state = observe(state, T0 + 5, used_weight=900, orders_10s=3, orders_1m=7)
    assert (state.used_weight, state.orders_10s, state.orders_1m) == (900, 3, 7)
    assert observe(state, T0 + 6, used_weight=12).used_weight == 900
    assert observe(state, T0 + 60_001, used_weight=12).used_weight == 12


def test_back_off_honours_retry_after_or_waits_for_the_next_window() -> None:
    state = back_off(BudgetState(), T0 + 30_000, 5_000)
    assert state.backoff_until_ms == T0 + 35_000
    assert back_off(BudgetState(), T0 + 30_000, None).backoff_until_ms == T0 + 60_000
    assert back_off(BudgetState(), T0 + 59_900, None).backoff_until_ms == T0 + 60_900  # at least a second
    _, refused = reserve(state, T0 + 31_000, 1, 0, LIMITS, PROTECTIVE)
    assert refused.wait_ms == 4_000
    assert "429" in refused.reason


def test_a_ban_refuses_everything_until_it_ends() -> None:
    state = ban(BudgetState(), T0 + 120_000)
    assert ban(state, T0 + 1).banned_until_ms == T0 + 120_000  # a shorter ban never shortens it
    _, refused = reserve(state, T0 + 1000, 0, 1, LIMITS)
    assert refused.banned_until_ms == T0 + 120_000
    assert not refused.granted
    _, granted = reserve(state, T0 + 120_000, 1, 0, LIMITS)
    assert granted.granted


async def test_acquire_waits_on_the_clock_instead_of_failing() -> None:
    clock = FakeClock(start_ms=T0 + 50_000)
    budget = RequestBudget(InMemoryBudgetStore(), scope="s", clock=clock, limits=LIMITS)
    for _ in range(80):
        await budget.acquire(1)
    assert clock.now_ms() == T0 + 50_000
    await budget.acquire(1)
    assert clock.now_ms() == T0 + 60_000  # waited for the next weight window


async def test_budget_state_is_shared_through_the_store() -> None:
    clock = FakeClock(start_ms=T0)
    store = InMemoryBudgetStore()
    first = RequestBudget(store, scope="rest:fapi.binance.com:443", clock=clock, limits=LIMITS)
    second = RequestBudget(store, scope="rest:fapi.binance.com:443", clock=clock, limits=LIMITS)
    other_host = RequestBudget(store, scope="rest:127.0.0.1:8765", clock=clock, limits=LIMITS)
    await first.record(used_weight=80, orders_10s=None, orders_1m=None)
    await other_host.acquire(1)
    assert clock.now_ms() == T0
    await second.acquire(1)
    assert clock.now_ms() == T0 + 60_000


async def test_a_ban_recorded_by_one_process_stops_the_others_without_waiting() -> None:
    clock = FakeClock(start_ms=T0)
    store = InMemoryBudgetStore()
    await RequestBudget(store, scope="s", clock=clock).banned(T0 + 600_000)
    with pytest.raises(IpBanned) as info:
        await RequestBudget(store, scope="s", clock=clock).acquire(1)
    assert info.value.until_ms == T0 + 600_000
    assert clock.now_ms() == T0


async def test_a_429_back_off_is_waited_out() -> None:
    clock = FakeClock(start_ms=T0)
    budget = RequestBudget(InMemoryBudgetStore(), scope="s", clock=clock)
    await budget.rate_limited(retry_after_s=7)
    await budget.acquire(1, priority=PROTECTIVE)
    assert clock.now_ms() == T0 + 7000
    await budget.rate_limited(retry_after_s=7)
    await budget.acquire(1)
    assert clock.now_ms() == T0 + 15_000  # normal work resumes a second after protective work


async def test_waits_longer_than_allowed_raise_rate_limited() -> None:
    clock = FakeClock(start_ms=T0)
    budget = RequestBudget(InMemoryBudgetStore(), scope="s", clock=clock, max_wait_s=5)
    await budget.rate_limited(retry_after_s=30)
    with pytest.raises(RateLimited) as info:
        await budget.acquire(1, priority=PROTECTIVE)
    assert info.value.retry_after_s == 30


async def test_windows_follow_server_time() -> None:
    clock = FakeClock(start_ms=T0 + 59_000)
    budget = RequestBudget(InMemoryBudgetStore(), scope="s", clock=clock, limits=LIMITS)
    budget.set_clock_offset(2_000)  # the server is already in the next minute
    assert budget.now_ms() == T0 + 61_000
    await budget.acquire(80)
    await budget.acquire(1)
    assert clock.now_ms() == T0 + 118_000  # waited until server time T0 + 120 000


# ---------------------------------------------------------------------------------------------- priorities


def test_normal_work_leaves_the_weight_reserve_to_protective_work() -> None:
    state = BudgetState()
    for _ in range(7):
        state, granted = reserve(state, T0 + 1000, 10, 0, RESERVED, NORMAL)
        assert granted.granted
    same, refused = reserve(state, T0 + 1000, 1, 0, RESERVED, NORMAL)
    assert same == state
    assert refused.wait_ms == 59_000
    assert "kept for protective work" in refused.reason
    for _ in range(2):
        state, granted = reserve(state, T0 + 1000, 10, 0, RESERVED, PROTECTIVE)
        assert granted.granted
    assert state.used_weight == 90
    _, refused = reserve(state, T0 + 1000, 1, 0, RESERVED, PROTECTIVE)
    assert refused.wait_ms == 59_000  # the safety margin is kept from protective work too
    assert "kept" not in refused.reason


async def test_an_account_wide_sweep_leaves_the_last_of_the_budget_to_a_position_and_never_waits() -> None:
    """Repeated user-stream faults each called for a full reconciliation (120 weight): they used up the minute, and
    the look-up of a stop that had fired unheard waited up to 57 s for the next one."""
    assert [RESERVED.cap(100, p) for p in (NORMAL, Priority.SWEEP, PROTECTIVE)] == [70, 85, 90]
    clock = FakeClock(start_ms=T0)
    budget = RequestBudget(InMemoryBudgetStore(), scope="ip", clock=clock, limits=RESERVED, max_wait_s=90)
    for _ in range(2):
        await budget.acquire(40, priority=Priority.SWEEP)
    with pytest.raises(RateLimited, match="does not wait"):
        await budget.acquire(40, priority=Priority.SWEEP)
    assert clock.now_ms() == T0  # refused at once: the pass is retried later, holding up nothing meanwhile
    await budget.acquire(5, priority=PROTECTIVE)  # the stop's look-up still fits
    await budget.acquire(5, priority=PROTECTIVE)
    assert clock.now_ms() == T0


def test_normal_work_leaves_the_order_reserve_to_protective_work() -> None:
    state = BudgetState()
    for _ in range(7):
        state, granted = reserve(state, T0 + 2000, 0, 1, RESERVED, NORMAL)
        assert granted.granted
    _, refused = reserve(state, T0 + 2000, 0, 1, RESERVED, NORMAL)
    assert (refused.wait_ms, "10 s" in refused.reason) == (8000, True)
    state, granted = reserve(state, T0 + 2000, 0, 2, RESERVED, PROTECTIVE)
    assert granted.granted
    assert not reserve(state, T0 + 2000, 0, 1, RESERVED, PROTECTIVE)[1].granted
    for second in (1, 2):  # the minute: 14 normal orders, 18 in all
        state = reserve(state, T0 + second * 10_000, 0, 5 if second == 1 else 0, RESERVED, NORMAL)[0]
    assert state.orders_1m == 14
    _, refused = reserve(state, T0 + 30_000, 0, 1, RESERVED, NORMAL)
    assert (refused.wait_ms, "1 min" in refused.reason) == (30_000, True)
    state, granted = reserve(state, T0 + 30_000, 0, 4, RESERVED, PROTECTIVE)
    assert granted.granted
    assert state.orders_1m == 18


def test_after_a_429_protective_work_goes_first_and_normal_work_a_moment_later() -> None:
    state = back_off(BudgetState(), T0 + 30_000, 5_000)
    _, waiting = reserve(state, T0 + 31_000, 1, 0, RESERVED, PROTECTIVE)
    assert waiting.wait_ms == 4_000  # nobody goes before Retry-After
    _, granted = reserve(state, T0 + 35_000, 1, 0, RESERVED, PROTECTIVE)
    assert granted.granted
    _, later = reserve(state, T0 + 35_000, 1, 0, RESERVED, NORMAL)
    assert later.wait_ms == RESERVED.resume_gap_ms
    assert reserve(state, T0 + 35_000 + RESERVED.resume_gap_ms, 1, 0, RESERVED, NORMAL)[1].granted
    banned = ban(BudgetState(), T0 + 120_000)
    assert reserve(banned, T0 + 1000, 0, 1, RESERVED, PROTECTIVE)[1].banned_until_ms == T0 + 120_000


def test_protective_work_retries_429s_for_its_patience_normal_work_a_few_times() -> None:
    def retry(priority: Priority, retries: int, waited_s: float) -> bool:
        return retry_after_429(priority, retries, waited_s, normal_retries=2, patience_s=90)

    assert [retry(NORMAL, n, 1.0) for n in range(4)] == [True, True, False, False]
    assert retry(PROTECTIVE, 50, 89.9)
    assert not retry(PROTECTIVE, 0, 90.0)


def test_exchange_counters_add_news_only_above_what_the_store_held() -> None:
    seen = reserve(BudgetState(), T0 + 5, 40, 1, LIMITS)[0]
    assert not adds_to(seen, T0 + 10, used_weight=40, orders_10s=1, orders_1m=1)
    assert not adds_to(seen, T0 + 10, used_weight=12, orders_10s=None, orders_1m=None)
    assert adds_to(seen, T0 + 10, used_weight=41, orders_10s=None, orders_1m=None)
    assert adds_to(seen, T0 + 10, used_weight=None, orders_10s=2, orders_1m=None)
    assert adds_to(seen, T0 + 60_001, used_weight=1, orders_10s=None, orders_1m=None)  # a new window


def test_the_priority_follows_the_work_into_its_tasks() -> None:
    async def scenario() -> list[Priority]:
        seen: list[Priority] = []

        async def note() -> None:
            seen.append(current_priority())

        @protective
        async def guarded() -> None:
            await note()
            with request_priority(NORMAL):
                await note()
            await asyncio.create_task(note())

        await note()
        await guarded()
        await note()
        seen.append(current_priority(PROTECTIVE))  # a client's own default outside any block
        return seen

    assert asyncio.run(scenario()) == [NORMAL, PROTECTIVE, NORMAL, PROTECTIVE, NORMAL, PROTECTIVE]


async def test_a_scan_that_used_its_share_delays_normal_work_but_not_a_stop() -> None:
    clock = FakeClock(start_ms=T0 + 10_000)
    store = InMemoryBudgetStore()
    scan = RequestBudget(store, scope="s", clock=clock, limits=RESERVED)
    monitor = RequestBudget(store, scope="s", clock=clock, limits=RESERVED)
    for _ in range(7):
        await scan.acquire(10)
    await monitor.acquire(5, priority=PROTECTIVE)
    await monitor.acquire(0, orders=1, priority=PROTECTIVE)
    assert clock.now_ms() == T0 + 10_000  # no wait
    await monitor.acquire(1)
    assert clock.now_ms() == T0 + 60_000  # normal work waits for the next window


class CountingStore(InMemoryBudgetStore):
    def __init__(self) -> None:
        super().__init__()
        self.updates = 0

    async def update(self, scope: str, change: Callable[[BudgetState], tuple[BudgetState, T]]) -> T:
        self.updates += 1
        return await super().update(scope, change)


async def test_answers_whose_weight_the_store_already_counts_cost_no_second_update() -> None:
    clock = FakeClock(start_ms=T0)
    store = CountingStore()
    budget = RequestBudget(store, scope="s", clock=clock, limits=LIMITS)
    await budget.acquire(5)
    await budget.record(used_weight=5, orders_10s=None, orders_1m=None)  # this request, already reserved
    assert store.updates == 1
    await budget.record(used_weight=30, orders_10s=None, orders_1m=None)  # someone else on the IP
    assert store.updates == 2
    assert store.snapshot("s").used_weight == 30
    await budget.record(used_weight=30, orders_10s=None, orders_1m=None)
    assert store.updates == 2
    clock.advance(60)
    await budget.record(used_weight=1, orders_10s=None, orders_1m=None)  # a new window: news
    assert store.updates == 3
    assert store.snapshot("s").used_weight == 1
