"""Is the unattended system healthy? The watchdog's decisions, pure: what is wrong, and what to tell a person.

Three checks, each either passing or failing:
- `monitor`: a monitor process holds the account's live leader lease (ats.leadership) and wrote a fresh heartbeat
  as the active one.
  Without it nothing moves stops or closes positions whose exchange stop did not fire, so new entries are refused
  (`entry_refusal`) and open positions make the alert critical.
- `monitor-ready`: the active monitor has been ready (streams connected, a recent reconciliation) except for at
  most a grace period, while positions are open.
- `trading-cycles`: a trading cycle completed within the expected period (one bar interval plus a margin).
- `exchange-ban`: Binance has not banned this host's IP (a 418 recorded in the shared request budget). While it
  is banned nothing reaches the exchange, stops cannot be moved and positions cannot be closed by the system.

The shell (db.health) observes the database, calls `assess`, and turns each change of a check's state into one
notification with `changes`: an alert when a check starts failing, a recovery message when it passes again.
Both the monitor and the scheduled watchdog flow run it; the database serialises them, so a person hears of each
change once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from ats.clock import format_utc
from ats.config import Settings
from ats.domain import interval_ms
from ats.messages import Text, say_text, text
from ats.notify import AlertNote


class Check(StrEnum):
    MONITOR = "monitor"
    MONITOR_READY = "monitor-ready"
    CYCLES = "trading-cycles"
    EXCHANGE_BAN = "exchange-ban"


@dataclass(frozen=True, slots=True)
class MonitorBeat:
    """One monitor process's last heartbeat row."""

    name: str
    role: str  # starting | standby | active | stopping | stopped
    heartbeat_ms: int
    unready_since_ms: int | None = None  # when it stopped being ready (None: ready, or not active)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    heartbeat_stale_s: float = 30.0  # a heartbeat older than this is a dead or hung monitor
    unready_alert_s: float = 60.0  # an active monitor not ready for longer than this, with positions open
    cycle_overdue_s: float | None = 65 * 60.0  # no completed trading cycle for this long; None: not checked


CYCLE_MARGIN_S = 5 * 60.0  # a cycle runs a minute after its bar closes and takes a minute or two


def health_policy(settings: Settings) -> HealthPolicy:
    """The policy the configuration asks for (ATS_WATCHDOG__*): a trading cycle is overdue after one bar
    interval plus a margin unless set otherwise (0 turns that check off)."""
    watchdog = settings.watchdog
    overdue_s: float | None
    if watchdog.cycle_overdue_min is None:
        overdue_s = interval_ms(settings.bar_interval) / 1000 + CYCLE_MARGIN_S
    else:
        overdue_s = watchdog.cycle_overdue_min * 60 or None
    return HealthPolicy(watchdog.heartbeat_stale_s, watchdog.unready_alert_s, overdue_s)


@dataclass(frozen=True, slots=True)
class Observation:
    now_ms: int
    monitors: Sequence[MonitorBeat]
    leader: str | None  # the holder of the account's live monitor lease (by the database's clock), or None
    open_positions: int  # positions the system manages (recorded open, or entries in flight)
    last_cycle_ms: int | None  # end of the last completed trading cycle
    watching_since_ms: int  # when the checks began: a system that never completed a cycle is late from here
    banned_until_ms: int = 0  # the end of the latest IP ban Binance answered (418), 0 when there was none


@dataclass(frozen=True, slots=True)
class Finding:
    check: Check
    severity: Literal["warning", "critical"]
    title: Text
    detail: Text


@dataclass(frozen=True, slots=True)
class Assessment:
    findings: Mapping[Check, Finding]  # the checks failing now
    unknown: frozenset[Check] = frozenset()  # checks that cannot be told now: they keep their state


@dataclass(frozen=True, slots=True)
class CheckState:
    failing: bool
    since_ms: int  # when the check entered this state


@dataclass(frozen=True, slots=True)
class Change:
    """A check changed state: record it and send `note`."""

    check: Check
    failing: bool
    note: AlertNote


def _ago(now_ms: int, then_ms: int) -> Text:
    seconds = max(0, (now_ms - then_ms) // 1000)
    if seconds < 120:
        return text("health.seconds", n=seconds)
    if seconds < 2 * 3600:
        return text("health.minutes", n=seconds // 60)
    return text("health.hours", n=f"{seconds / 3600:.1f}")


def _positions(count: int) -> Text:
    return text("health.positions_one" if count == 1 else "health.positions_many", count=count)


def active_monitor(obs: Observation, policy: HealthPolicy) -> MonitorBeat | None:
    """The monitor that leads now: it holds the live lease and its last heartbeat as the active one is fresh."""
    return next(
        (
            m
            for m in obs.monitors
            if m.name == obs.leader
            and m.role == "active"
            and obs.now_ms - m.heartbeat_ms <= policy.heartbeat_stale_s * 1000
        ),
        None,
    )


def _why_no_monitor(obs: Observation, policy: HealthPolicy) -> Text:
    latest = max(obs.monitors, key=lambda m: m.heartbeat_ms, default=None)
    if latest is None:
        return text("health.never_ran")
    seen = text("health.last_seen", ago=_ago(obs.now_ms, latest.heartbeat_ms), name=latest.name, role=latest.role)
    if obs.leader is None and latest.role == "active":
        return text("health.lease_expired", seen=seen)
    if obs.leader is not None and latest.name != obs.leader:
        return text("health.holder_silent", leader=obs.leader, seen=seen)
    return text("health.none_active", seen=seen)


def entry_refusal(obs: Observation, policy: HealthPolicy) -> str | None:
    """Why a new position must not be opened now (no monitor would protect it), or None when one leads.

    In English: it is recorded as the signal's refusal reason, a value the refusal message carries as data."""
    if active_monitor(obs, policy) is not None:
        return None
    return f"no monitor is protecting positions: {say_text('en', _why_no_monitor(obs, policy))}"


def assess(obs: Observation, policy: HealthPolicy) -> Assessment:
    """Every check that fails now, with what to tell a person."""
    findings: dict[Check, Finding] = {}
    unknown: set[Check] = set()
    positions = _positions(obs.open_positions)
    leader = active_monitor(obs, policy)
    if leader is None:
        at_risk = obs.open_positions > 0
        findings[Check.MONITOR] = Finding(
            Check.MONITOR,
            "critical" if at_risk else "warning",
            text("health.no_monitor_at_risk", positions=positions) if at_risk else text("health.no_monitor"),
            text("health.no_monitor_detail", why=_why_no_monitor(obs, policy)),
        )
        unknown.add(Check.MONITOR_READY)  # no monitor to be ready: that is the other check's news
    elif (
        obs.open_positions > 0
        and leader.unready_since_ms is not None
        and obs.now_ms - leader.unready_since_ms > policy.unready_alert_s * 1000
    ):
        why = ", ".join(leader.problems) or text("health.not_ready_why")
        findings[Check.MONITOR_READY] = Finding(
            Check.MONITOR_READY,
            "critical",
            text("health.not_ready", ago=_ago(obs.now_ms, leader.unready_since_ms), positions=positions),
            text("health.not_ready_detail", name=leader.name, why=why),
        )
    if obs.banned_until_ms > obs.now_ms:
        ban = _ago(obs.banned_until_ms, obs.now_ms)
        findings[Check.EXCHANGE_BAN] = Finding(
            Check.EXCHANGE_BAN,
            "critical" if obs.open_positions > 0 else "warning",
            text("health.banned_at_risk", ago=ban, positions=positions)
            if obs.open_positions > 0
            else text("health.banned", ago=ban),
            text("health.banned_detail", until=format_utc(obs.banned_until_ms)),
        )
    if policy.cycle_overdue_s is not None:
        reference = max(obs.last_cycle_ms or 0, obs.watching_since_ms)
        if obs.now_ms - reference > policy.cycle_overdue_s * 1000:
            last = (
                text("health.last_cycle", at=format_utc(obs.last_cycle_ms))
                if obs.last_cycle_ms is not None
                else text("health.no_cycle_yet")
            )
            findings[Check.CYCLES] = Finding(
                Check.CYCLES,
                "warning",
                text("health.cycles_late", ago=_ago(obs.now_ms, reference)),
                text("health.cycles_late_detail", last=last),
            )
    return Assessment(findings, frozenset(unknown))


def changes(previous: Mapping[Check, CheckState], assessment: Assessment, now_ms: int) -> list[Change]:
    """The checks whose state changed: new failures become alerts, passing again becomes a recovery message.

    A check seen for the first time counts as passing before, so a failure found at once is told at once.
    """
    told: list[Change] = []
    for check in Check:
        if check in assessment.unknown:
            continue
        before = previous.get(check)
        finding = assessment.findings.get(check)
        was_failing = before is not None and before.failing
        if finding is not None and not was_failing:
            note = AlertNote(finding.title, (finding.detail,), severity=finding.severity)
            told.append(Change(check, True, note))
        elif finding is None and was_failing:
            assert before is not None
            recovered = text(f"health.recovered.{check.value}")
            note = AlertNote(
                recovered, (text("health.after", ago=_ago(now_ms, before.since_ms)),), severity="recovered"
            )
            told.append(Change(check, False, note))
    return told
