"""Account tasks: the status table, the daily report, and notification delivery (close-all: tasks/emergency.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from prefect import task
from prefect.cache_policies import NONE

from ats.clock import datetime_to_ms, format_utc, ms_to_datetime, utc_day_start_ms
from ats.exchange.base import AccountInfo, PositionInfo
from ats.lifecycle import Phase, Position
from ats.messages import Text, data, say_text, text
from ats.notify import DailyReport, ExitReason, OpenPositionLine, make_notifier
from ats.operator import AccountStatus, PositionLine
from ats.placement import LedgerDay
from db import market, risk_state
from db.models import AccountSnapshotRow
from db.outbox import deliver_pending
from tasks.runtime import Runtime, run_logger

ZERO = Decimal(0)
HUNDRED = Decimal(100)
DAY_MS = 86_400_000


# ---------------------------------------------------------------------------------------------- notifications


@task(name="send-notifications", cache_policy=NONE)
async def send_notifications(rt: Runtime) -> int:
    """Deliver the outbox (Telegram, and the log either way); failures wait for the next sender."""
    notifier = make_notifier(rt.settings.telegram, venue=rt.settings.venue)
    try:
        sent = await deliver_pending(rt.database, rt.account, notifier, rt.clock)
    finally:
        await notifier.aclose()
    if sent:
        run_logger().info(f"{sent} notifications sent")
    return sent


# ---------------------------------------------------------------------------------------------- status


def position_lines(
    exchange_positions: list[PositionInfo], managed: dict[str, Position], ticks: dict[str, Decimal]
) -> list[PositionLine]:
    """The positions on the exchange, with what this system manages of them; `ticks` (symbol -> tick size) puts
    their prices on the symbol's grid when shown."""
    lines = []
    for p in sorted(exchange_positions, key=lambda p: p.symbol):
        mine = managed.get(p.symbol)
        tp1 = "-"
        if mine is not None and mine.levels is not None:
            tp1 = "hit" if mine.tp1_done else ("single target" if mine.levels.single_target else "waiting")
        elif mine is not None:
            tp1 = "not placed yet"
        lines.append(
            PositionLine(
                symbol=p.symbol,
                direction=p.direction,
                quantity=abs(p.amount),
                entry_price=p.entry_price,
                mark_price=p.mark_price,
                unrealized_pnl=p.unrealized_pnl,
                leverage=mine.leverage if mine is not None else None,
                stop=mine.stop_price if mine is not None else None,
                tp1=tp1,
                managed=mine is not None,
                tick_size=mine.policy.rules.tick_size if mine is not None else ticks.get(p.symbol),
            )
        )
    return lines


@task(name="read-account", cache_policy=NONE)
async def read_account(rt: Runtime) -> AccountStatus:
    """Balances and positions from the exchange, joined with what the database manages; a snapshot is kept."""
    info = await rt.exchange.account()
    positions = await rt.exchange.positions()
    now = rt.clock.now_ms()
    managed = {p.symbol: p for p in rt.journal().open_positions()}
    with rt.database.session() as session:
        ledger = risk_state.ledger_day(session, rt.account, now)
        ticks = {s: r.tick_size for s, r in market.stored_rules(session, [p.symbol for p in positions]).items()}
        session.add(
            AccountSnapshotRow(
                account=rt.account,
                wallet_balance=info.total_wallet_balance,
                unrealized_pnl=info.total_unrealized_pnl,
                margin_balance=info.total_margin_balance,
                available_balance=info.available_balance,
                positions=[
                    {
                        "symbol": p.symbol,
                        "amount": str(p.amount),
                        "entry": str(p.entry_price),
                        "mark": str(p.mark_price),
                    }
                    for p in positions
                ],
            )
        )
    on_exchange = {p.symbol for p in positions}
    pending = sorted(s for s, p in managed.items() if p.phase is Phase.PENDING_ENTRY)
    notes = [
        f"{s}: managed here but no position on the exchange (reconciliation will settle it)"
        for s, p in sorted(managed.items())
        if s not in on_exchange and p.phase is not Phase.PENDING_ENTRY
    ]
    notes += [f"{p.symbol}: position not managed by this system" for p in positions if p.symbol not in managed]
    halt = day_halt(ledger) if ledger.halted else None
    return AccountStatus(
        time_ms=now,
        wallet_balance=info.total_wallet_balance,
        unrealized_pnl=info.total_unrealized_pnl,
        margin_balance=info.total_margin_balance,
        available_balance=info.available_balance,
        positions=position_lines(positions, managed, ticks),
        max_positions=rt.settings.limits.max_concurrent_positions,
        pending_entries=pending,
        realized_today=ledger.net_realized,
        halted=None if halt is None else say_text("en", halt),  # the CLI's and Prefect's status: English
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------- daily report


@dataclass(frozen=True, slots=True)
class DayStats:
    report: DailyReport
    exits: dict[str, int]  # exit reason -> trades
    tp1_hits: int
    win_rate: Decimal | None  # percent; None without trades


def utc_day(day: str | None, now_ms: int) -> int:
    """Start (ms) of the named UTC day 'YYYY-MM-DD', or of the day that ended last when None."""
    if day is None:
        return utc_day_start_ms(now_ms) - DAY_MS
    return datetime_to_ms(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC))


def day_halt(ledger: LedgerDay) -> Text | None:
    """The day's halt as the report names it: its reason (as recorded) and who halted (None: never halted)."""
    if not ledger.halted and ledger.resumed_ms is None:
        return None
    reason = data(ledger.halted_reason) if ledger.halted_reason else text("report.no_reason")
    return text("report.halted_by", reason=reason, by=ledger.halted_by) if ledger.halted_by else reason


def day_stats(
    day_start_ms: int,
    trades: list[risk_state.ClosedTrade],
    ledger: LedgerDay,
    info: AccountInfo,
    positions: list[PositionInfo],
) -> DayStats:
    """The day's figures: PnL, fees and funding from the ledger; trades, wins and exits from closed positions."""
    wins = sum(1 for t in trades if t.net_pnl > 0)
    exits = Counter(t.exit_reason or "unknown" for t in trades)
    tp1_hits = sum(1 for t in trades if t.tp1_done or t.exit_reason == ExitReason.TP1)
    win_rate = Decimal(wins) / len(trades) * HUNDRED if trades else None
    notes = []
    if trades:
        notes.append(text("report.win_rate", rate=f"{win_rate:.0f}", tp1=tp1_hits, trades=len(trades)))
        notes.append(
            text("report.exits", exits=" · ".join(f"{reason} {count}" for reason, count in sorted(exits.items())))
        )
    report = DailyReport(
        day=ms_to_datetime(day_start_ms).strftime("%Y-%m-%d"),
        wallet_balance=info.total_wallet_balance,
        equity=info.total_margin_balance,
        realized_pnl=ledger.realized_pnl,
        fees=ledger.fees,
        funding=ledger.funding,
        trades=len(trades),
        wins=wins,
        losses=len(trades) - wins,
        open_positions=tuple(
            OpenPositionLine(
                p.symbol,
                p.direction,
                abs(p.amount),
                p.entry_price,
                p.unrealized_pnl,
            )
            for p in sorted(positions, key=lambda p: p.symbol)
        ),
        halted=day_halt(ledger),
        lifted=text("report.lifted_at", who=ledger.resumed_by or "?", at=format_utc(ledger.resumed_ms))
        if ledger.resumed_ms is not None
        else None,
        notes=tuple(notes),
    )
    return DayStats(report, dict(exits), tp1_hits, win_rate)


@task(name="gather-day", cache_policy=NONE)
async def gather_day(rt: Runtime, day_start_ms: int) -> DayStats:
    info = await rt.exchange.account()
    positions = await rt.exchange.positions()
    with rt.database.session() as session:
        trades = risk_state.closed_trades(session, rt.account, day_start_ms, day_start_ms + DAY_MS)
        ledger = risk_state.ledger_day(session, rt.account, day_start_ms)
    return day_stats(day_start_ms, trades, ledger, info, positions)
