"""Leadership by lease (ats.leadership): who renews, who takes over, and a fence that lets a leader act only while
its own renewals are fresh on its monotonic clock, so a process woken from SIGSTOP sends nothing."""

from __future__ import annotations

import pytest

from ats.clock import FakeClock
from ats.execution import ExecutionDeferred
from ats.leadership import Busy, Fence, Held, LeaseRow, LeaseTiming, Lost, NotLeader, decide

ME, OTHER = "monitor:main:a:1", "monitor:main:b:2"
NOW = 1_767_225_600_000


def test_a_standby_takes_a_missing_or_expired_lease_with_a_new_epoch_and_waits_for_a_live_one() -> None:
    assert decide(None, me=ME, epoch=None, now_ms=NOW) == Held(1, acquired=True)
    expired = LeaseRow(OTHER, 7, NOW)  # expiry is exclusive: at that instant it is over
    assert decide(expired, me=ME, epoch=None, now_ms=NOW) == Held(8, acquired=True)
    live = LeaseRow(OTHER, 7, NOW + 1)
    assert decide(live, me=ME, epoch=None, now_ms=NOW) == Busy(OTHER, 7, NOW + 1)


def test_a_process_that_stepped_down_retakes_its_own_lease_only_under_a_new_epoch() -> None:
    mine = LeaseRow(ME, 4, NOW + 5_000)  # its release failed (database down): nobody else acts on epoch 4
    assert decide(mine, me=ME, epoch=None, now_ms=NOW) == Held(5, acquired=True)


def test_a_leader_renews_only_the_live_lease_of_its_own_epoch() -> None:
    assert decide(LeaseRow(ME, 3, NOW + 1), me=ME, epoch=3, now_ms=NOW) == Held(3, acquired=False)

    taken = decide(LeaseRow(OTHER, 4, NOW + 9_000), me=ME, epoch=3, now_ms=NOW)
    assert isinstance(taken, Lost)
    assert taken.reason == f"{OTHER} holds it now (epoch 4; this process led epoch 3)"
    # Taken over and lost again to this very process (a later term): still not epoch 3's to renew.
    assert isinstance(decide(LeaseRow(ME, 5, NOW + 9_000), me=ME, epoch=3, now_ms=NOW), Lost)

    expired = decide(LeaseRow(ME, 3, NOW - 2_500), me=ME, epoch=3, now_ms=NOW)
    assert expired == Lost("it expired 2.5 s ago")
    assert decide(None, me=ME, epoch=3, now_ms=NOW) == Lost("the lease is gone")


def test_the_timing_follows_the_lease() -> None:
    timing = LeaseTiming(10)
    assert (timing.renew_s, timing.valid_s) == (2.0, 7.5)
    with pytest.raises(ValueError, match="at least 2 s"):
        LeaseTiming(1.5)


def _fence(clock: FakeClock, lapses: list[str]) -> Fence:
    return Fence(ME, LeaseTiming(10), clock.monotonic, on_lapse=lapses.append)


def test_the_fence_holds_for_three_quarters_of_a_lease_after_the_renewal_was_asked_for() -> None:
    clock, lapses = FakeClock(), list[str]()
    fence = _fence(clock, lapses)
    with pytest.raises(NotLeader, match="not the leader"):
        fence.check("placing a stop")  # no term yet
    fence.begin(6, clock.monotonic())
    clock.advance(2)
    asked = clock.monotonic()
    clock.advance(1)  # the database took a second to answer: counted from the asking
    assert fence.extend(6, asked)
    assert fence.remaining_s() == pytest.approx(6.5)
    clock.advance(6.4)
    assert fence.check("placing a stop") == 6
    assert lapses == []


def test_a_fence_found_lapsed_refuses_ends_the_term_and_says_so_once() -> None:
    clock, lapses = FakeClock(), list[str]()
    fence = _fence(clock, lapses)
    fence.begin(2, clock.monotonic())
    clock.advance(61)  # SIGSTOP: the monotonic clock ran on
    with pytest.raises(NotLeader, match=r"the lease \(epoch 2\) was last renewed 61.0 s ago") as refused:
        fence.check("POST /fapi/v1/algoOrder")
    assert isinstance(refused.value, ExecutionDeferred)  # callers leave the work to the leader
    assert lapses == ["the lease (epoch 2) was last renewed 61.0 s ago"]
    assert fence.epoch is None
    with pytest.raises(NotLeader, match="not the leader"):
        fence.check("DELETE /fapi/v1/order")
    assert len(lapses) == 1
    assert not fence.extend(2, clock.monotonic())  # a renewal answered late does not revive the term


def test_the_write_guard_fences_orders_cancels_and_settings_but_not_the_listen_key() -> None:
    clock, lapses = FakeClock(), list[str]()
    fence = _fence(clock, lapses)
    fence.check_write("PUT", "/fapi/v1/listenKey")
    for method, path in (("POST", "/fapi/v1/order"), ("DELETE", "/fapi/v1/algoOrder"), ("POST", "/fapi/v1/leverage")):
        with pytest.raises(NotLeader, match=f"{method} {path}: refused"):
            fence.check_write(method, path)
    fence.begin(1, clock.monotonic())
    fence.check_write("POST", "/fapi/v1/order")
