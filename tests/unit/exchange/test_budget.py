"""The shared request budget: pure arithmetic, and the waiting/ban behaviour on a fake clock."""

from __future__ import annotations

import pytest

from ats.clock import FakeClock
from ats.exchange.budget import (
    BudgetLimits,
    BudgetState,
    InMemoryBudgetStore,
    RequestBudget,
    back_off,
    ban,
    observe,
    reserve,
    roll,
)
from ats.exchange.errors import IpBanned, RateLimited

T0 = 1_767_225_600_000  # a minute boundary
LIMITS = BudgetLimits(weight_per_minute=100, orders_per_10s=10, orders_per_minute=20, safety_margin=0.2)


def test_usable_limits_keep_the_safety_margin() -> None:
    assert LIMITS.usable(100) == 80
    assert BudgetLimits(safety_margin=0.0).usable(2400) == 2400


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
    _, refused = reserve(state, T0 + 31_000, 1, 0, LIMITS)
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
    await budget.acquire(1)
    assert clock.now_ms() == T0 + 7000


async def test_waits_longer_than_allowed_raise_rate_limited() -> None:
    clock = FakeClock(start_ms=T0)
    budget = RequestBudget(InMemoryBudgetStore(), scope="s", clock=clock, max_wait_s=5)
    await budget.rate_limited(retry_after_s=30)
    with pytest.raises(RateLimited) as info:
        await budget.acquire(1)
    assert info.value.retry_after_s == 30


async def test_windows_follow_server_time() -> None:
    clock = FakeClock(start_ms=T0 + 59_000)
    budget = RequestBudget(InMemoryBudgetStore(), scope="s", clock=clock, limits=LIMITS)
    budget.set_clock_offset(2_000)  # the server is already in the next minute
    assert budget.now_ms() == T0 + 61_000
    await budget.acquire(80)
    await budget.acquire(1)
    assert clock.now_ms() == T0 + 118_000  # waited until server time T0 + 120 000
