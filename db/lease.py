"""The monitors' leader lease in PostgreSQL (the rules are ats.leadership's): one row per account, decided by the
database's clock.

- `claim`: one election step (acquire, renew, or learn who leads) in one transaction, under the row's lock.
- `release`: a leader stepping down frees the lease at once, so a standby need not wait for it to expire.
- `hold`: inside a transaction that records a transition, proves that the writer still holds its epoch and
  keeps the lease from changing hands until that transaction ends (FOR SHARE against a claim's FOR UPDATE).
- `lease_holder`: who leads now, for the watchdog and the entry guard.

A process frozen inside a transaction that locked the lease row would keep a standby's claim waiting for as long
as it stays frozen: those transactions tell PostgreSQL to end them once they sit idle for `FROZEN_AFTER_MS`
(they take milliseconds otherwise), and a frozen process's writes are rolled back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ats.clock import datetime_to_ms
from ats.leadership import Busy, Decision, Held, LeaseRow, Lost, NotLeader, decide
from db.models import MonitorLeaseRow
from db.session import Database

NEVER = datetime(2000, 1, 1, tzinfo=UTC)  # the expiry of a lease nobody has held yet
FROZEN_AFTER_MS = 2_500


def claim(database: Database, account: str, holder: str, epoch: int | None, lease_s: float) -> Decision:
    """Acquire the account's lease (a standby: `epoch` None) or renew the one held under `epoch`."""
    with database.session() as session:
        _end_if_frozen(session)
        session.execute(
            insert(MonitorLeaseRow)
            .values(account=account, holder="", epoch=0, acquired_at=NEVER, renewed_at=NEVER, expires_at=NEVER)
            .on_conflict_do_nothing(index_elements=["account"])
        )
        row = session.scalars(select(MonitorLeaseRow).where(MonitorLeaseRow.account == account).with_for_update()).one()
        now = session.scalar(select(func.clock_timestamp()))  # after the lock: the wait for it may have been long
        assert now is not None
        stored = LeaseRow(row.holder, row.epoch, datetime_to_ms(row.expires_at))
        decision = decide(stored, me=holder, epoch=epoch, now_ms=datetime_to_ms(now))
        match decision:
            case Held(epoch=held, acquired=acquired):
                row.holder, row.epoch = holder, held
                row.renewed_at, row.expires_at = now, now + timedelta(seconds=lease_s)
                if acquired:
                    row.acquired_at = now
            case Lost() | Busy():
                pass
        return decision


def release(database: Database, account: str, holder: str, epoch: int) -> bool:
    """End the lease held under `epoch` now; False when it was not (or no longer) this holder's."""
    with database.session() as session:
        ended = session.execute(
            update(MonitorLeaseRow)
            .where(
                MonitorLeaseRow.account == account,
                MonitorLeaseRow.holder == holder,
                MonitorLeaseRow.epoch == epoch,
                MonitorLeaseRow.expires_at > func.now(),
            )
            .values(expires_at=func.now())
            .returning(MonitorLeaseRow.epoch)
        ).first()
    return ended is not None


def hold(session: Session, account: str, holder: str, epoch: int) -> None:
    """Raise NotLeader unless `holder` holds the live lease under `epoch`; otherwise keep it from changing hands
    until this transaction ends."""
    _end_if_frozen(session)
    held = session.scalar(
        select(MonitorLeaseRow.epoch)
        .where(
            MonitorLeaseRow.account == account,
            MonitorLeaseRow.holder == holder,
            MonitorLeaseRow.epoch == epoch,
            MonitorLeaseRow.expires_at > func.now(),
        )
        .with_for_update(read=True)
    )
    if held is None:
        raise NotLeader(f"not recorded: the lease of epoch {epoch} is no longer {holder}'s")


def lease_holder(session: Session, account: str) -> str | None:
    """The holder of the account's live lease (by the database's clock), or None."""
    return session.scalar(
        select(MonitorLeaseRow.holder).where(
            MonitorLeaseRow.account == account, MonitorLeaseRow.expires_at > func.now()
        )
    )


def _end_if_frozen(session: Session) -> None:
    session.execute(
        text("SELECT set_config('idle_in_transaction_session_timeout', :ms, true)"), {"ms": str(FROZEN_AFTER_MS)}
    )
