"""The watchdog's shell on the real PostgreSQL: the leader lock seen in pg_locks, the guard, several watchers
at once telling each change once, and an IP ban answered by the exchange told at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from ats.clock import WallClock
from ats.exchange.binance import BinanceFutures, budget_scope
from ats.exchange.budget import RequestBudget
from ats.exchange.errors import IpBanned
from ats.health import Check, HealthPolicy, monitor_lock_name
from ats.sim.server import SimServer
from db.health import check_health, entry_refusal, lock_is_held
from db.models import HealthCheckRow, NotificationRow
from db.rate_limits import PostgresBudgetStore
from db.session import Database, SessionLock
from tests.fixtures.monitor import MonitorStandIn

POLICY = HealthPolicy(heartbeat_stale_s=30, unready_alert_s=60, cycle_overdue_s=None)


def test_the_leader_lock_is_seen_while_held_and_the_guard_follows_it(db: Database) -> None:
    now = WallClock().now_ms()
    with db.session() as session:
        assert not lock_is_held(session, monitor_lock_name("main"))
        refusal = entry_refusal(session, "main", POLICY, now)
    assert refusal is not None
    assert "no monitor has ever run" in refusal

    other = SessionLock(db.engine, monitor_lock_name("other"))
    assert other.try_acquire()
    try:
        with MonitorStandIn(db), db.session() as session:
            assert lock_is_held(session, monitor_lock_name("main"))
            assert entry_refusal(session, "main", POLICY, WallClock().now_ms()) is None
    finally:
        other.release()
    with db.session() as session:
        assert not lock_is_held(session, monitor_lock_name("main"))
        assert not lock_is_held(session, monitor_lock_name("other"))


def test_watchers_running_at_once_tell_each_change_once_and_the_recovery_once(db: Database) -> None:
    now = WallClock().now_ms()
    with ThreadPoolExecutor(4) as pool:
        told = list(pool.map(lambda _: check_health(db, "main", POLICY, now), range(4)))
    assert [c.note.title for changes in told for c in changes] == ["no monitor is running"]

    with MonitorStandIn(db), ThreadPoolExecutor(4) as pool:
        later = WallClock().now_ms()
        recovered = list(pool.map(lambda _: check_health(db, "main", POLICY, later), range(4)))
    assert [c.note.title for changes in recovered for c in changes] == ["a monitor is active again"]

    with db.session() as session:
        texts = session.scalars(select(NotificationRow.text).order_by(NotificationRow.id)).all()
        monitor_check = session.get(HealthCheckRow, ("main", "monitor"))
    assert len(texts) == 2
    assert texts[0].startswith("⚠️ <b>Alert</b>: no monitor is running")
    assert texts[1].startswith("✅ <b>Recovered</b>: a monitor is active again")
    assert monitor_check is not None
    assert monitor_check.failing is False


async def test_an_ip_ban_answered_by_the_exchange_is_told_at_once_and_its_end_too(db: Database, sim: SimServer) -> None:
    clock = WallClock()
    budget = RequestBudget(PostgresBudgetStore(db.engine), scope=budget_scope(sim.rest_url), clock=clock)
    until = clock.now_ms() + 120_000
    sim.limits.banned_until["127.0.0.1"] = until  # this IP kept sending after 429s
    async with BinanceFutures(
        sim.rest_url, SecretStr(sim.api_key), SecretStr(sim.api_secret), clock=clock, budget=budget
    ) as client:
        with pytest.raises(IpBanned):
            await client.server_time()
    with MonitorStandIn(db):
        told = check_health(db, "main", POLICY, clock.now_ms())
        assert [(c.check, c.failing) for c in told] == [(Check.EXCHANGE_BAN, True)]
        assert check_health(db, "main", POLICY, clock.now_ms()) == []  # told once
        over = check_health(db, "main", POLICY, until + 1000)  # (the stand-in's heartbeat is old by then)
    assert [c.failing for c in over if c.check is Check.EXCHANGE_BAN] == [False]
    with db.session() as session:
        texts = session.scalars(select(NotificationRow.text).order_by(NotificationRow.id)).all()
    assert texts[0].startswith("⚠️ <b>Alert</b>: Binance banned this IP for")
    assert any(text.startswith("✅ <b>Recovered</b>: the exchange ban has ended") for text in texts[1:])
