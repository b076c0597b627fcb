"""The watchdog's shell on the real PostgreSQL: the leader lock seen in pg_locks, the guard, and several watchers
at once telling each change once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from ats.clock import WallClock
from ats.health import HealthPolicy, monitor_lock_name
from db.health import check_health, entry_refusal, lock_is_held
from db.models import HealthCheckRow, NotificationRow
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
