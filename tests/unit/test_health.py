"""The watchdog's decisions (ats.health): what is wrong, when to say it, and that each change is said once."""

from __future__ import annotations

from dataclasses import replace

from ats.config import load_settings
from ats.health import (
    Assessment,
    Check,
    CheckState,
    HealthPolicy,
    MonitorBeat,
    Observation,
    assess,
    changes,
    entry_refusal,
    health_policy,
)
from ats.messages import say_text
from ats.notify import render

NOW = 1_767_225_600_000
S = 1000
LEADER = "monitor:main:host:1"
POLICY = HealthPolicy(heartbeat_stale_s=30, unready_alert_s=60, cycle_overdue_s=65 * 60)


def observe(
    *monitors: MonitorBeat,
    lease: str | None = LEADER,
    positions: int = 0,
    last_cycle_ms: int | None = NOW - 10 * 60 * S,
    watching_since_ms: int = NOW - 3 * 3600 * S,
) -> Observation:
    return Observation(NOW, monitors, lease, positions, last_cycle_ms, watching_since_ms)


def leader(age_s: float = 2, unready_for_s: float | None = None, problems: tuple[str, ...] = ()) -> MonitorBeat:
    unready = None if unready_for_s is None else NOW - round(unready_for_s * S)
    return MonitorBeat(LEADER, "active", NOW - round(age_s * S), unready, problems)


def test_a_leading_monitor_with_a_fresh_heartbeat_lets_entries_through_and_nothing_is_wrong() -> None:
    obs = observe(leader())
    assert entry_refusal(obs, POLICY) is None
    assert assess(obs, POLICY) == Assessment({}, frozenset())


def test_entries_are_refused_without_a_leader_and_the_reason_says_what_was_seen() -> None:
    never = entry_refusal(observe(), POLICY)
    assert never is not None
    assert "no monitor has ever run" in never
    stale = entry_refusal(observe(leader(age_s=45)), POLICY)
    assert stale is not None
    assert "last heartbeat 45 s ago from monitor:main:host:1 (active)" in stale
    standby = MonitorBeat("monitor:main:other:2", "standby", NOW - 1 * S)
    assert entry_refusal(observe(standby), POLICY) is not None
    expired = entry_refusal(observe(leader(), lease=None), POLICY)
    assert expired is not None
    assert "the leader's lease has expired" in expired


def test_only_the_lease_holder_leads_a_fresh_active_heartbeat_of_another_process_does_not_count() -> None:
    # A leader woken from SIGSTOP still says "active" until it notices; the lease says who leads.
    woken = MonitorBeat("monitor:main:old:7", "active", NOW - 1 * S)
    successor = MonitorBeat(LEADER, "active", NOW - 2 * S)
    assert entry_refusal(observe(woken, successor), POLICY) is None
    refusal = entry_refusal(observe(woken, lease=LEADER), POLICY)
    assert refusal is not None
    assert f"the lease holder {LEADER} has no fresh heartbeat" in refusal


def test_no_monitor_is_critical_with_positions_open_and_a_warning_without() -> None:
    at_risk = assess(observe(leader(age_s=120), positions=2), POLICY)
    finding = at_risk.findings[Check.MONITOR]
    assert finding.severity == "critical"
    assert say_text("en", finding.title) == "no monitor is running with 2 open positions"
    assert Check.MONITOR_READY in at_risk.unknown  # no monitor to be ready: not a second message
    idle = assess(observe(positions=0), POLICY)
    assert idle.findings[Check.MONITOR].severity == "warning"


def test_an_unready_monitor_alerts_only_after_the_grace_period_and_only_with_positions_open() -> None:
    assert Check.MONITOR_READY not in assess(observe(leader(unready_for_s=59), positions=1), POLICY).findings
    assert Check.MONITOR_READY not in assess(observe(leader(unready_for_s=600), positions=0), POLICY).findings
    late = assess(observe(leader(unready_for_s=75, problems=("user stream disconnected",)), positions=1), POLICY)
    finding = late.findings[Check.MONITOR_READY]
    assert finding.severity == "critical"
    assert say_text("en", finding.title) == "monitor not ready for 75 s with 1 open position"
    assert "user stream disconnected" in say_text("en", finding.detail)


def test_a_missing_trading_cycle_is_overdue_after_the_period_counted_from_the_last_one_or_the_start() -> None:
    fresh = assess(observe(leader(), last_cycle_ms=NOW - 64 * 60 * S), POLICY)
    assert Check.CYCLES not in fresh.findings
    overdue = assess(observe(leader(), last_cycle_ms=NOW - 66 * 60 * S), POLICY).findings[Check.CYCLES]
    assert say_text("en", overdue.title) == "no trading cycle completed in 66 min"
    assert "the last one ended 2025-12-31 22:54 UTC" in say_text("en", overdue.detail)
    # Never completed: counted from when the watching began, so a fresh installation is not late at once.
    young = assess(observe(leader(), last_cycle_ms=None, watching_since_ms=NOW - 5 * 60 * S), POLICY)
    assert Check.CYCLES not in young.findings
    never = assess(observe(leader(), last_cycle_ms=None), POLICY).findings[Check.CYCLES]
    assert "none has completed yet" in say_text("en", never.detail)
    unchecked = HealthPolicy(cycle_overdue_s=None)
    assert Check.CYCLES not in assess(observe(leader(), last_cycle_ms=None), unchecked).findings


def test_each_change_is_told_once_an_alert_when_failing_and_a_recovery_when_passing_again() -> None:
    failing = assess(observe(leader(age_s=120), positions=1), POLICY)
    first = changes({}, failing, NOW)
    assert [(c.check, c.failing) for c in first] == [(Check.MONITOR, True)]
    assert render(first[0].note, "en").startswith("🚨 <b>Alert</b>: no monitor is running with 1 open position")
    still = {Check.MONITOR: CheckState(True, NOW - 600 * S)}
    assert changes(still, failing, NOW) == []
    recovered = changes(still, assess(observe(leader(), positions=1), POLICY), NOW)
    assert [(c.check, c.failing) for c in recovered] == [(Check.MONITOR, False)]
    assert render(recovered[0].note, "en") == "✅ <b>Recovered</b>: a monitor is active again\nafter 10 min"


def test_an_unknown_check_keeps_its_state_no_false_recovery() -> None:
    was_unready = {Check.MONITOR_READY: CheckState(True, NOW - 300 * S)}
    monitor_died = assess(observe(positions=1), POLICY)
    told = changes(was_unready, monitor_died, NOW)
    assert [(c.check, c.failing) for c in told] == [(Check.MONITOR, True)]


def test_an_exchange_ban_is_told_at_once_and_its_end_too() -> None:
    banned = assess(replace(observe(leader(), positions=2), banned_until_ms=NOW + 120 * S), POLICY)
    finding = banned.findings[Check.EXCHANGE_BAN]
    assert finding.severity == "critical"
    assert say_text("en", finding.title) == "Binance banned this IP for 2 min (HTTP 418) with 2 open positions"
    assert "stops cannot be moved" in say_text("en", finding.detail)
    told = changes({}, banned, NOW)
    assert [(c.check, c.failing) for c in told] == [(Check.EXCHANGE_BAN, True)]
    idle = assess(replace(observe(leader()), banned_until_ms=NOW + 30 * S), POLICY).findings[Check.EXCHANGE_BAN]
    assert idle.severity == "warning"
    over = assess(replace(observe(leader(), positions=2), banned_until_ms=NOW), POLICY)
    recovered = changes({Check.EXCHANGE_BAN: CheckState(True, NOW - 120 * S)}, over, NOW)
    assert [(c.check, c.failing) for c in recovered] == [(Check.EXCHANGE_BAN, False)]
    assert "requests reach Binance again" in render(recovered[0].note, "en")


def test_the_policy_follows_the_bar_interval_unless_configured() -> None:
    assert health_policy(load_settings()).cycle_overdue_s == 65 * 60
    assert health_policy(load_settings(bar_interval="1m")).cycle_overdue_s == 6 * 60
    assert health_policy(load_settings(watchdog={"cycle_overdue_min": 90})).cycle_overdue_s == 90 * 60
    assert health_policy(load_settings(watchdog={"cycle_overdue_min": 0})).cycle_overdue_s is None
