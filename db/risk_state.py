"""The account as the risk check sees it, and the daily ledger with its loss-limit halt.

The entry check (ats.risk.check_entry) needs the account in one consistent view: open positions and entries
still pending come from PostgreSQL with their open risk (read under the order-placement lock, so two cycles
cannot both use the same free slot or the same daily loss headroom), balances and unrealised PnL from the
exchange, and what was realised today (PnL, fees, funding since 00:00 UTC) from the risk ledger the journal keeps.
Once a day's PnL breaches the daily loss limit the day is halted in the ledger and stays halted until 00:00 UTC,
whatever the PnL does next and across restarts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ats.clock import datetime_to_ms, ms_to_datetime, utc_day_start_ms
from ats.exchange.base import AccountInfo, PositionInfo
from ats.lifecycle import Phase, Position, from_jsonable, open_risk
from ats.risk import AccountSnapshot, Exposure
from db.models import OrderIntentRow, PositionRow, RiskLedgerRow

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class LedgerDay:
    """One UTC day of the risk ledger (zeros for a day without entries)."""

    day_start_ms: int
    realized_pnl: Decimal = ZERO  # gross, from fills
    fees: Decimal = ZERO
    funding: Decimal = ZERO  # signed: positive received
    halted: bool = False
    halted_reason: str | None = None

    @property
    def net_realized(self) -> Decimal:
        """What the daily loss limit counts as realised: PnL after fees and funding."""
        return self.realized_pnl - self.fees + self.funding


def ledger_day(session: Session, account: str, time_ms: int) -> LedgerDay:
    """The ledger of the UTC day containing `time_ms`."""
    start = utc_day_start_ms(time_ms)
    row = session.get(RiskLedgerRow, (account, ms_to_datetime(start)))
    if row is None:
        return LedgerDay(start)
    return LedgerDay(start, row.realized_pnl, row.fees, row.funding, row.halted, row.halted_reason)


def _upsert_day(session: Session, account: str, time_ms: int, values: dict[str, Any], update: dict[str, Any]) -> None:
    day = ms_to_datetime(utc_day_start_ms(time_ms))
    statement = insert(RiskLedgerRow).values(account=account, day=day, **values)
    session.execute(
        statement.on_conflict_do_update(index_elements=["account", "day"], set_={**update, "updated_at": func.now()})
    )


def record_halt(session: Session, account: str, time_ms: int, reason: str) -> None:
    """Halt new entries for the rest of the UTC day; the first reason is kept."""
    table = RiskLedgerRow.__table__
    _upsert_day(
        session,
        account,
        time_ms,
        {"halted": True, "halted_reason": reason},
        {"halted": True, "halted_reason": func.coalesce(table.c.halted_reason, reason)},
    )


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


@dataclass(frozen=True, slots=True)
class ManagedExposure:
    """A position of ours that is not closed: what it weighs in the entry check."""

    symbol: str
    notional: Decimal
    margin: Decimal  # initial margin it uses (or will use once its entry fills)
    pending: bool  # the entry has not filled yet
    risk: Decimal  # what it can still lose today (ats.lifecycle.open_risk)


def managed_exposures(session: Session, account: str, marks: Mapping[str, Decimal]) -> list[ManagedExposure]:
    """Every open or pending position in the database, valued at its entry (or its intent's planned entry), with
    its open risk at its exchange stop (a pending entry's at the price it was sized at)."""
    rows = session.execute(
        select(
            PositionRow.symbol,
            PositionRow.state,
            PositionRow.leverage,
            PositionRow.quantity,
            PositionRow.entry_price,
            PositionRow.lifecycle,
            OrderIntentRow.quantity,
            OrderIntentRow.reference_price,
        )
        .outerjoin(OrderIntentRow, OrderIntentRow.intent_key == PositionRow.key)
        .where(PositionRow.account == account, PositionRow.closed_at.is_(None))
        .order_by(PositionRow.id)
    ).all()
    out: list[ManagedExposure] = []
    for symbol, state, leverage, quantity, entry_price, lifecycle, planned_qty, planned_price in rows:
        pending = state == Phase.PENDING_ENTRY
        if pending or entry_price is None:
            notional = (planned_qty or ZERO) * (planned_price or ZERO)
        else:
            notional = quantity * entry_price
        position: Position = from_jsonable(Position, lifecycle)
        risk = open_risk(position, mark=marks.get(symbol), reference=planned_price)
        out.append(ManagedExposure(symbol, abs(notional), abs(notional) / max(leverage, 1), pending, risk))
    return out


@dataclass(frozen=True, slots=True)
class RiskView:
    """The snapshot the entry check reads, and where its figures came from (for the artifact)."""

    snapshot: AccountSnapshot
    ledger: LedgerDay
    unmanaged: tuple[str, ...] = ()  # symbols with a position on the exchange that we do not manage
    reserved_margin: Decimal = ZERO  # margin set aside for entries recorded but not filled yet
    notes: tuple[str, ...] = ()


def risk_view(
    session: Session,
    account: str,
    info: AccountInfo,
    exchange_positions: Sequence[PositionInfo],
    marks: Mapping[str, Decimal],
    time_ms: int,
) -> RiskView:
    """Combine the database's positions and ledger with the exchange's balances into one AccountSnapshot.

    Positions on the exchange that we do not manage (opened by hand) count too: they take a slot and margin, and
    their unrealised loss is their open risk (their stop is unknown). The margin and the risk of entries recorded
    but not yet on the exchange count, so two decisions in a row do not spend the same money or loss headroom.
    """
    ledger = ledger_day(session, account, time_ms)
    managed = managed_exposures(session, account, marks)
    managed_symbols = {m.symbol for m in managed}
    on_exchange = {p.symbol for p in exchange_positions if p.amount != 0}
    exposures = [Exposure(m.symbol, m.notional, pending=m.pending, risk=m.risk) for m in managed]
    unmanaged = sorted(on_exchange - managed_symbols)
    for position in exchange_positions:
        if position.symbol in unmanaged:
            notional = abs(position.notional) or abs(position.amount) * position.mark_price
            exposures.append(Exposure(position.symbol, notional, risk=max(-position.unrealized_pnl, ZERO)))
    reserved = sum((m.margin for m in managed if m.pending and m.symbol not in on_exchange), ZERO)
    snapshot = AccountSnapshot(
        wallet_balance=info.total_wallet_balance,
        available_balance=info.available_balance - reserved,
        realized_pnl_today=ledger.net_realized,
        unrealized_pnl=info.total_unrealized_pnl,
        exposures=tuple(exposures),
    )
    notes = tuple(f"{s} has a position on the exchange that this system does not manage" for s in unmanaged)
    return RiskView(snapshot, ledger, tuple(unmanaged), reserved, notes)


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
