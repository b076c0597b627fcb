"""The watchdog's shell: observe an account in PostgreSQL, let ats.health decide, record each change of a check
and queue its message in the outbox, in one transaction.

Every monitor process and the scheduled watchdog flow call `check_health`; an advisory lock per account makes
them take turns, so each change is told once however many watchers run. `entry_refusal` is the guard the entry
paths ask before opening a position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ats.clock import datetime_to_ms, ms_to_datetime
from ats.health import (
    Change,
    Check,
    CheckState,
    HealthPolicy,
    MonitorBeat,
    Observation,
    assess,
    changes,
)
from ats.health import entry_refusal as refusal_for
from ats.messages import Language, say_text
from db.journal import enqueue_notification
from db.lease import lease_holder
from db.models import FlowRunRow, HealthCheckRow, PositionRow, RateLimitStateRow, WorkerHeartbeatRow
from db.session import Database, advisory_xact_lock

TRADING_CYCLE = "trading-cycle"


@dataclass(frozen=True, slots=True)
class FinishedRun:
    """How one Prefect flow run ended (from its final state)."""

    id: str
    flow: str
    name: str
    subflow: bool
    state: str  # the state type: COMPLETED, FAILED, CRASHED, CANCELLED
    state_name: str  # e.g. TimedOut
    message: str | None
    started_at: datetime | None
    ended_at: datetime


def record_flow_run(session: Session, account: str, run: FinishedRun) -> None:
    """Keep how a flow run ended (a later state of the same run, e.g. after a retry, replaces it)."""
    values = {
        "flow": run.flow,
        "name": run.name[:128],
        "subflow": run.subflow,
        "state": run.state,
        "state_name": run.state_name[:32],
        "message": run.message,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
    }
    session.execute(
        insert(FlowRunRow)
        .values(id=run.id, account=account, **values)
        .on_conflict_do_update(index_elements=["id"], set_=values)
    )


def _beat(row: WorkerHeartbeatRow) -> MonitorBeat:
    details = row.details or {}
    unready = details.get("unready_since_ms")
    return MonitorBeat(
        name=row.name,
        role=row.role,
        heartbeat_ms=datetime_to_ms(row.heartbeat_at),
        unready_since_ms=int(unready) if isinstance(unready, int | float) else None,
        problems=tuple(str(p) for p in details.get("problems") or ()),
    )


def observe(session: Session, account: str, now_ms: int) -> Observation:
    """What the checks look at: the monitors' heartbeats and lease, open positions, the last completed cycle, and
    the latest IP ban recorded in the shared request budget (it is the host's, whatever the account)."""
    heartbeats = session.scalars(select(WorkerHeartbeatRow).where(WorkerHeartbeatRow.account == account)).all()
    open_positions = session.scalar(
        select(func.count()).where(PositionRow.account == account, PositionRow.closed_at.is_(None))
    )
    last_cycle: datetime | None = session.scalar(
        select(func.max(FlowRunRow.ended_at)).where(
            FlowRunRow.account == account, FlowRunRow.flow == TRADING_CYCLE, FlowRunRow.state == "COMPLETED"
        )
    )
    watching_since: datetime | None = session.scalar(
        select(HealthCheckRow.created_at).where(
            HealthCheckRow.account == account, HealthCheckRow.check == Check.CYCLES.value
        )
    )
    return Observation(
        now_ms=now_ms,
        monitors=[_beat(row) for row in heartbeats],
        leader=lease_holder(session, account),
        open_positions=int(open_positions or 0),
        last_cycle_ms=datetime_to_ms(last_cycle) if last_cycle is not None else None,
        watching_since_ms=datetime_to_ms(watching_since) if watching_since is not None else now_ms,
        banned_until_ms=int(session.scalar(select(func.max(RateLimitStateRow.banned_until_ms))) or 0),
    )


def check_health(
    database: Database, account: str, policy: HealthPolicy, now_ms: int, *, language: Language
) -> list[Change]:
    """Run the checks once: record every check's state and queue a message for each change (returned), told in
    `language` (settings.language)."""
    now = ms_to_datetime(now_ms)
    with database.session() as session:
        advisory_xact_lock(session, f"health:{account}")
        observation = observe(session, account, now_ms)
        rows = {
            row.check: row
            for row in session.scalars(select(HealthCheckRow).where(HealthCheckRow.account == account)).all()
        }
        previous = {
            check: CheckState(rows[check.value].failing, datetime_to_ms(rows[check.value].since))
            for check in Check
            if check.value in rows
        }
        assessment = assess(observation, policy)
        told = changes(previous, assessment, now_ms)
        changed = {change.check for change in told}
        for check in Check:
            if check in assessment.unknown:
                continue
            finding = assessment.findings.get(check)
            values = {
                "failing": finding is not None,
                "detail": f"{say_text(language, finding.title)}: {say_text(language, finding.detail)}"
                if finding
                else "",
                "checked_at": now,
            }
            if check in changed:
                values["since"] = now
            session.execute(
                insert(HealthCheckRow)
                .values({"account": account, "check": check.value, "since": now, "created_at": now, **values})
                .on_conflict_do_update(index_elements=["account", "check"], set_=values)
            )
        for change in told:
            enqueue_notification(
                session, account, f"health:{change.check.value}:{now_ms}", change.note, language=language
            )
    return told


def entry_refusal(session: Session, account: str, policy: HealthPolicy, now_ms: int) -> str | None:
    """Why no position may be opened now (no monitor leads with a fresh heartbeat), or None."""
    return refusal_for(observe(session, account, now_ms), policy)
