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
    title: str
    detail: str


@dataclass(frozen=True, slots=True)
class Assessment:
    findings: Mapping[Check, Finding]  # the checks failing now
    unknown: frozenset[Check] = frozenset()  # checks that cannot be told now: they keep their state


@dataclass(frozen=True, slots=True)
class CheckState:
    failing: bool
    since_ms: int  # when the check entered this state


RECOVERED = {
    Check.MONITOR: "a monitor is active again",
    Check.MONITOR_READY: "the monitor is ready again",
    Check.CYCLES: "trading cycles complete again",
    Check.EXCHANGE_BAN: "the exchange ban has ended: requests reach Binance again",
}


@dataclass(frozen=True, slots=True)
class Change:
    """A check changed state: record it and send `note`."""

    check: Check
    failing: bool
    note: AlertNote


def _ago(now_ms: int, then_ms: int) -> str:
    seconds = max(0, (now_ms - then_ms) // 1000)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


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


def _why_no_monitor(obs: Observation, policy: HealthPolicy) -> str:
    latest = max(obs.monitors, key=lambda m: m.heartbeat_ms, default=None)
    if latest is None:
        return "no monitor has ever run for this account (start `ats monitor`)"
    seen = f"last heartbeat {_ago(obs.now_ms, latest.heartbeat_ms)} ago from {latest.name} ({latest.role})"
    if obs.leader is None and latest.role == "active":
        return f"the leader's lease has expired (frozen, hung or cut off?); {seen}"
    if obs.leader is not None and latest.name != obs.leader:
        return f"the lease holder {obs.leader} has no fresh heartbeat; {seen}"
    return f"no active monitor; {seen}"


def entry_refusal(obs: Observation, policy: HealthPolicy) -> str | None:
    """Why a new position must not be opened now (no monitor would protect it), or None when one leads."""
    if active_monitor(obs, policy) is not None:
        return None
    return f"no monitor is protecting positions: {_why_no_monitor(obs, policy)}"


def assess(obs: Observation, policy: HealthPolicy) -> Assessment:
    """Every check that fails now, with what to tell a person."""
    findings: dict[Check, Finding] = {}
    unknown: set[Check] = set()
    positions = f"{obs.open_positions} open position{'s' if obs.open_positions != 1 else ''}"
    leader = active_monitor(obs, policy)
    if leader is None:
        at_risk = obs.open_positions > 0
        findings[Check.MONITOR] = Finding(
            Check.MONITOR,
            "critical" if at_risk else "warning",
            "no monitor is running" + (f" with {positions}" if at_risk else ""),
            f"{_why_no_monitor(obs, policy)}. Stops are not moved and new entries are refused until one runs.",
        )
        unknown.add(Check.MONITOR_READY)  # no monitor to be ready: that is the other check's news
    elif (
        obs.open_positions > 0
        and leader.unready_since_ms is not None
        and obs.now_ms - leader.unready_since_ms > policy.unready_alert_s * 1000
    ):
        why = ", ".join(leader.problems) or "not ready"
        findings[Check.MONITOR_READY] = Finding(
            Check.MONITOR_READY,
            "critical",
            f"monitor not ready for {_ago(obs.now_ms, leader.unready_since_ms)} with {positions}",
            f"{leader.name}: {why}. The exchange-side stops still protect the positions.",
        )
    if obs.banned_until_ms > obs.now_ms:
        findings[Check.EXCHANGE_BAN] = Finding(
            Check.EXCHANGE_BAN,
            "critical" if obs.open_positions > 0 else "warning",
            f"Binance banned this IP for {_ago(obs.banned_until_ms, obs.now_ms)} (HTTP 418)"
            + (f" with {positions}" if obs.open_positions > 0 else ""),
            f"Until {format_utc(obs.banned_until_ms)} no request reaches the exchange: stops cannot be moved or "
            "replaced and positions cannot be closed by the system; the stops already on the exchange still "
            "protect them. Requests went on after 429 answers: look for 'rate limited by binance' in the logs.",
        )
    if policy.cycle_overdue_s is not None:
        reference = max(obs.last_cycle_ms or 0, obs.watching_since_ms)
        if obs.now_ms - reference > policy.cycle_overdue_s * 1000:
            last = (
                f"the last one ended {format_utc(obs.last_cycle_ms)}"
                if obs.last_cycle_ms is not None
                else "none has completed yet"
            )
            findings[Check.CYCLES] = Finding(
                Check.CYCLES,
                "warning",
                f"no trading cycle completed in {_ago(obs.now_ms, reference)}",
                f"{last}. Check the Prefect server, the worker and the trading-cycle schedule.",
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
            note = AlertNote(finding.title, finding.detail, severity=finding.severity)
            told.append(Change(check, True, note))
        elif finding is None and was_failing:
            assert before is not None
            note = AlertNote(RECOVERED[check], f"after {_ago(now_ms, before.since_ms)}", severity="recovered")
            told.append(Change(check, False, note))
    return told
