"""The account as the risk check sees it, and the daily ledger with its loss-limit halt.

The entry check (ats.risk.check_entry) needs the account in one consistent view: open positions and entries
still pending come from PostgreSQL with their open risk (read under the order-placement lock, so two cycles
cannot both use the same free slot or the same daily loss headroom), balances and unrealised PnL from the
exchange, and what was realised today (PnL, fees, funding since 00:00 UTC) from the risk ledger the journal keeps.
Once a day's PnL breaches the daily loss limit the day is halted in the ledger and stays halted until 00:00 UTC,
whatever the PnL does next and across restarts. A close-all halts the day as well, and a person's pause halts it
until resumed (across days); those two can be lifted (`ats resume`, Telegram's /resume), with a record of who
lifted them when; the loss limit's cannot (ats.operator.resume_refusal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ats.clock import datetime_to_ms, ms_to_datetime, utc_day_start_ms
from ats.codec import from_jsonable
from ats.exchange.base import AccountInfo, PositionInfo
from ats.lifecycle import Position
from ats.placement import LedgerDay, ManagedExposure, RiskView, account_view, exposure_of
from db.models import OrderIntentRow, PositionRow, RiskLedgerRow

ZERO = Decimal(0)


def ledger_day(session: Session, account: str, time_ms: int) -> LedgerDay:
    """The ledger of the UTC day containing `time_ms`, halted as well when an earlier day's pause still holds."""
    start = utc_day_start_ms(time_ms)
    row = session.get(RiskLedgerRow, (account, ms_to_datetime(start)))
    day = LedgerDay(start) if row is None else _ledger(start, row)
    if day.halted:
        return day
    pause = session.scalars(
        select(RiskLedgerRow)
        .where(RiskLedgerRow.account == account, RiskLedgerRow.until_resumed, RiskLedgerRow.day < ms_to_datetime(start))
        .order_by(RiskLedgerRow.day.desc())
        .limit(1)
    ).first()
    if pause is None:
        return day
    return replace(
        day,
        halted=True,
        halted_reason=pause.halted_reason,
        halted_by=pause.halted_by,
        halted_ms=_ms(pause.halted_at),
        until_resumed=True,
    )


def _ms(at: datetime | None) -> int | None:
    return datetime_to_ms(at) if at is not None else None


def _ledger(start: int, row: RiskLedgerRow) -> LedgerDay:
    return LedgerDay(
        start,
        row.realized_pnl,
        row.fees,
        row.funding,
        row.halted,
        row.halted_reason,
        row.halted_by,
        _ms(row.halted_at),
        row.until_resumed,
        row.resumed_by,
        _ms(row.resumed_at),
    )


def _upsert_day(session: Session, account: str, time_ms: int, values: dict[str, Any], update: dict[str, Any]) -> None:
    day = ms_to_datetime(utc_day_start_ms(time_ms))
    statement = insert(RiskLedgerRow).values(account=account, day=day, **values)
    session.execute(
        statement.on_conflict_do_update(index_elements=["account", "day"], set_={**update, "updated_at": func.now()})
    )


def record_halt(
    session: Session, account: str, time_ms: int, reason: str, *, by: str, until_resumed: bool = False
) -> None:
    """Halt new entries for the rest of the UTC day (`until_resumed`: until someone resumes, across days).

    A halt in force keeps its first reason and author (a pause on top of it only makes it last until resumed);
    a day whose halt was lifted takes the new one."""
    table = RiskLedgerRow.__table__
    at = ms_to_datetime(time_ms)

    def first(column: str, value: Any) -> Any:
        return case((table.c.halted, table.c[column]), else_=value)

    _upsert_day(
        session,
        account,
        time_ms,
        {"halted": True, "halted_reason": reason, "halted_by": by, "halted_at": at, "until_resumed": until_resumed},
        {
            "halted": True,
            "halted_reason": first("halted_reason", reason),
            "halted_by": first("halted_by", by),
            "halted_at": first("halted_at", at),
            "until_resumed": table.c.until_resumed | until_resumed,
        },
    )


def record_resume(session: Session, account: str, time_ms: int, *, by: str, halt: LedgerDay) -> None:
    """Lift the halt in force (`halt`, as ledger_day gave it): new entries are allowed again, and the day records
    who lifted which halt when. A pause carried from an earlier day ends as well."""
    at = ms_to_datetime(time_ms)
    session.execute(
        update(RiskLedgerRow)
        .where(RiskLedgerRow.account == account, RiskLedgerRow.until_resumed)
        .values(until_resumed=False, updated_at=func.now())
    )
    lifted = {
        "halted": False,
        "until_resumed": False,
        "resumed_by": by,
        "resumed_at": at,
        "halted_reason": halt.halted_reason,
        "halted_by": halt.halted_by,
        "halted_at": ms_to_datetime(halt.halted_ms) if halt.halted_ms is not None else None,
    }
    _upsert_day(session, account, time_ms, lifted, lifted)


def note_unrealized(session: Session, account: str, time_ms: int, unrealized: Decimal, day_total: Decimal) -> None:
    """Keep the day's latest unrealised PnL and its worst total (realised + unrealised) for the record."""
    table = RiskLedgerRow.__table__
    _upsert_day(
        session,
        account,
        time_ms,
        {"last_unrealized_pnl": unrealized, "worst_total_pnl": min(day_total, ZERO)},
        {"last_unrealized_pnl": unrealized, "worst_total_pnl": func.least(table.c.worst_total_pnl, day_total)},
    )


# ---------------------------------------------------------------------------------------------- exposures


def managed_exposures(session: Session, account: str, marks: Mapping[str, Decimal]) -> list[ManagedExposure]:
    """Every open or pending position in the database (ats.placement.exposure_of), a pending one valued at the
    price its intent was sized at."""
    rows = session.execute(
        select(PositionRow.symbol, PositionRow.lifecycle, OrderIntentRow.reference_price)
        .outerjoin(OrderIntentRow, OrderIntentRow.intent_key == PositionRow.key)
        .where(PositionRow.account == account, PositionRow.closed_at.is_(None))
        .order_by(PositionRow.id)
    ).all()
    return [
        exposure_of(from_jsonable(Position, lifecycle), reference=planned_price, mark=marks.get(symbol))
        for symbol, lifecycle, planned_price in rows
    ]


def risk_view(
    session: Session,
    account: str,
    info: AccountInfo,
    exchange_positions: Sequence[PositionInfo],
    marks: Mapping[str, Decimal],
    time_ms: int,
) -> RiskView:
    """The entry check's view of the account (ats.placement.account_view) from the database's positions and
    ledger and the exchange's balances and positions."""
    ledger = ledger_day(session, account, time_ms)
    return account_view(managed_exposures(session, account, marks), ledger, info, exchange_positions)


# ---------------------------------------------------------------------------------------------- day results


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    symbol: str
    direction: str
    exit_reason: str | None
    realized_pnl: Decimal
    fees: Decimal
    funding: Decimal
    tp1_done: bool
    closed_ms: int

    @property
    def net_pnl(self) -> Decimal:
        return self.realized_pnl - self.fees + self.funding


def closed_trades(session: Session, account: str, start_ms: int, end_ms: int) -> list[ClosedTrade]:
    """Positions that closed within [start, end) and had an entry (failed entries are not trades)."""
    rows = session.scalars(
        select(PositionRow)
        .where(
            PositionRow.account == account,
            PositionRow.closed_at >= ms_to_datetime(start_ms),
            PositionRow.closed_at < ms_to_datetime(end_ms),
            PositionRow.entry_qty > 0,
        )
        .order_by(PositionRow.closed_at)
    ).all()
    return [
        ClosedTrade(
            symbol=row.symbol,
            direction=row.direction,
            exit_reason=row.exit_reason,
            realized_pnl=row.realized_pnl,
            fees=row.fees,
            funding=row.funding,
            tp1_done=row.tp1_done,
            closed_ms=datetime_to_ms(row.closed_at) if row.closed_at else end_ms,
        )
        for row in rows
    ]
