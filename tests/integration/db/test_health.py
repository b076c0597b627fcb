"""The watchdog's shell on the real PostgreSQL: the leader lease as the database's clock sees it, the guard,
several watchers at once telling each change once, and an IP ban answered by the exchange told at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from ats.clock import WallClock, datetime_to_ms
from ats.exchange.binance import BinanceFutures, budget_scope
from ats.exchange.budget import RequestBudget
from ats.exchange.errors import IpBanned
from ats.health import Check, HealthPolicy
from ats.leadership import Busy, Held
from ats.lifecycle import OrderCanceled
from ats.messages import say_text
from ats.notify import to_plain_text
from db.health import check_health, entry_refusal
from db.journal import PostgresJournal
from db.lease import claim, lease_holder
from db.models import HealthCheckRow, NotificationRow
from db.rate_limits import PostgresBudgetStore
from db.session import Database
from sim.server import SimServer
from tests.fixtures.monitor import MonitorStandIn
from tests.unit.lifecycle.harness import KEY, Driver

POLICY = HealthPolicy(heartbeat_stale_s=30, unready_alert_s=60, cycle_overdue_s=None)


def test_the_leader_lease_is_seen_while_live_and_the_guard_follows_it(db: Database) -> None:
    now = WallClock().now_ms()
    with db.session() as session:
        assert lease_holder(session, "main") is None
        refusal = entry_refusal(session, "main", POLICY, now)
    assert refusal is not None
    assert "no monitor has ever run" in refusal

    assert claim(db, "other", "monitor:other:x:1", None, 30) == Held(1, acquired=True)
    with MonitorStandIn(db) as stand_in, db.session() as session:
        assert lease_holder(session, "main") == stand_in.name
        assert lease_holder(session, "other") == "monitor:other:x:1"
        assert entry_refusal(session, "main", POLICY, WallClock().now_ms()) is None
        assert claim(db, "main", "monitor:main:y:2", None, 30) == Busy(stand_in.name, 1, _expiry(db, "main"))
    with db.session() as session:
        assert lease_holder(session, "main") is None  # released: no need to wait for it to expire
        refusal = entry_refusal(session, "main", POLICY, WallClock().now_ms())
    assert refusal is not None
    assert claim(db, "main", "monitor:main:y:2", None, 30) == Held(2, acquired=True)


def _expiry(db: Database, account: str) -> int:
    with db.session() as session:
        expires = session.scalar(text("SELECT expires_at FROM monitor_lease WHERE account = :a"), {"a": account})
    return datetime_to_ms(expires)


def test_watchers_running_at_once_tell_each_change_once_and_the_recovery_once(db: Database) -> None:
    now = WallClock().now_ms()
    with ThreadPoolExecutor(4) as pool:
        told = list(pool.map(lambda _: check_health(db, "main", POLICY, now, language="en"), range(4)))
    assert [say_text("en", c.note.title) for changes in told for c in changes] == ["no monitor is running"]

    with MonitorStandIn(db), ThreadPoolExecutor(4) as pool:
        later = WallClock().now_ms()
        recovered = list(pool.map(lambda _: check_health(db, "main", POLICY, later, language="en"), range(4)))
    assert [say_text("en", c.note.title) for changes in recovered for c in changes] == ["a monitor is active again"]

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
        told = check_health(db, "main", POLICY, clock.now_ms(), language="en")
        assert [(c.check, c.failing) for c in told] == [(Check.EXCHANGE_BAN, True)]
        assert check_health(db, "main", POLICY, clock.now_ms(), language="en") == []  # told once
        over = check_health(
            db, "main", POLICY, until + 1000, language="en"
        )  # (the stand-in's heartbeat is old by then)
    assert [c.failing for c in over if c.check is Check.EXCHANGE_BAN] == [False]
    with db.session() as session:
        texts = session.scalars(select(NotificationRow.text).order_by(NotificationRow.id)).all()
    assert texts[0].startswith("⚠️ <b>Alert</b>: Binance banned this IP for")
    assert any(text.startswith("✅ <b>Recovered</b>: the exchange ban has ended") for text in texts[1:])


def test_with_language_zh_lifecycle_and_watchdog_alerts_reach_the_outbox_in_chinese(db: Database) -> None:
    """ATS_LANGUAGE=zh: an alert the lifecycle raises (a stop canceled on the exchange, told through the journal)
    and one the watchdog raises (no monitor) are queued in Chinese."""
    driver = Driver()
    driver.accept("E")
    driver.fill("E", "1.000", "100.00", done=True)
    driver.accept("S1")
    journal = PostgresJournal(db, "main", language="zh")
    journal.create(driver.p, [], source="test")
    journal.apply(KEY, OrderCanceled(driver.cid("S1"), driver.tick()), source="test")
    check_health(db, "main", POLICY, WallClock().now_ms(), language="zh")
    with db.session() as session:
        told = sorted(to_plain_text(row.text) for row in session.scalars(select(NotificationRow)))
    assert "⚠️ 警告 TESTUSDT：止损单 S1 在交易所被撤销：正在重新挂出" in told
    assert any(t.startswith("🚨 警报：没有监控进程在运行，有 1 个持仓\n此账户从未运行过监控进程") for t in told), told
