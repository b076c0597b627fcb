"""The entry decision, as pure code shared by the order-placement flow and the backtest.

Given the account as one snapshot (ats.risk.AccountSnapshot), the day's ledger and the candidate signals
(strongest first), decide which to open and how big, each approval counting against the next. The flow reads
its inputs from PostgreSQL and the exchange (tasks/placement.py, db/risk_state.py); the backtest builds them from
its own book (ats/backtest). Both then open each approved position with `ats.lifecycle.open_position`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from ats.config import LevelSettings, MonitorSettings, RiskLimits
from ats.domain import Signal, SymbolRules, intent_key, interval_ms
from ats.exchange.base import AccountInfo, PositionInfo
from ats.lifecycle import Action, Phase, Policy, Position, Role, open_position, open_risk
from ats.messages import MESSAGES, Text, data, say_text, text
from ats.notify import AlertNote
from ats.risk import DEFAULT_TAKER_FEE_RATE, AccountSnapshot, Approved, Exposure, RefusalReason, SizedOrder, check_entry

ZERO = Decimal(0)
SIGNAL_MAX_AGE_BARS = 1  # a signal older than the newest closed bar is stale: the market moved on


class SkipReason(StrEnum):
    """Why a signal was not even sized (the risk check's own reasons are ats.risk.RefusalReason)."""

    STALE_SIGNAL = "stale_signal"
    CYCLE_LIMIT = "max_new_positions"
    NO_PRICE = "no_price"
    NO_MONITOR = "no_monitor"  # no monitor would protect the position (db.health.entry_refusal)
    HALTED = "halted"  # a close-all's halt or a person's pause (the loss limit's is RefusalReason.DAILY_LOSS_LIMIT)


LOSS_LIMIT = "daily-loss-limit"  # who halts a day at the daily loss limit: nobody may lift that halt


@dataclass(frozen=True, slots=True)
class Candidate:
    """A signal offered to the entry decision: its record id (0 when it is not stored) and where it came from."""

    id: int
    signal: Signal
    source: str  # scan | manual


@dataclass(frozen=True, slots=True)
class EntryDecision:
    """What the placement decided for one signal."""

    signal_id: int
    signal: Signal
    source: str = "scan"  # scan | manual
    order: SizedOrder | None = None  # approved: what to send
    key: str | None = None  # the intent key (client ids derive from it)
    code: str | None = None  # refused: machine-readable reason
    why: Text | None = None  # refused: for people, told in the configured language by the refusal's message

    @property
    def approved(self) -> bool:
        return self.order is not None

    @property
    def reason(self) -> str | None:
        """`why` in English: for the signal's record, the run's report and the CLI."""
        return None if self.why is None else say_text("en", self.why)


def refusal_note(decision: EntryDecision) -> AlertNote:
    """The follow-up to a signal's message when the placement refuses it: it was not traded, and why."""
    signal = decision.signal
    reason = decision.why or text("placement.no_reason")
    code = decision.code
    if code:
        named = text(f"refusal.{code}") if f"refusal.{code}" in MESSAGES else code
        detail: tuple[Text, ...] = (text("placement.refused_detail", reason=reason, code=named),)
    else:
        detail = () if decision.why is None else (decision.why,)
    title = text("placement.refused", direction=signal.direction.value, strength=f"{signal.strength:.0f}")
    return AlertNote(title, detail, signal.symbol, severity="notice")


@dataclass(frozen=True, slots=True)
class LedgerDay:
    """One UTC day of the risk ledger (zeros for a day without entries)."""

    day_start_ms: int
    realized_pnl: Decimal = ZERO  # gross, from fills
    fees: Decimal = ZERO
    funding: Decimal = ZERO  # signed: positive received
    halted: bool = False  # new entries are halted now
    halted_reason: str | None = None
    halted_by: str | None = None  # who or what halted them (ats.operator.LOSS_LIMIT, close-all (cli), a person)
    halted_ms: int | None = None
    until_resumed: bool = False  # a pause: it lasts past 00:00 UTC until someone resumes
    resumed_by: str | None = None  # who lifted the day's last halt, and when
    resumed_ms: int | None = None

    @property
    def net_realized(self) -> Decimal:
        """What the daily loss limit counts as realised: PnL after fees and funding."""
        return self.realized_pnl - self.fees + self.funding


def halt_reason(ledger: LedgerDay, snapshot: AccountSnapshot, limits: RiskLimits) -> tuple[str | None, bool]:
    """(why new entries are halted today or None, whether the halt is new and must be recorded).

    A day stays halted once its PnL (realised + unrealised) reached the daily loss limit, even if it recovers.
    """
    if ledger.halted:
        return ledger.halted_reason or "the daily loss limit was reached earlier today", False
    if snapshot.daily_pnl <= -limits.max_daily_loss_usdt:
        return (
            f"daily loss limit reached: today's PnL {snapshot.daily_pnl:.2f} USDT (realised "
            f"{snapshot.realized_pnl_today:.2f} + unrealised {snapshot.unrealized_pnl:.2f}) is at or below "
            f"-{limits.max_daily_loss_usdt} USDT; no new entries until 00:00 UTC",
            True,
        )
    return None, False


def halt_code(ledger: LedgerDay) -> str:
    """The refusal code of entries refused by the day's halt: the loss limit's, or a close-all's or a pause's."""
    if not ledger.halted or ledger.halted_by in (None, LOSS_LIMIT):
        return RefusalReason.DAILY_LOSS_LIMIT
    return SkipReason.HALTED


def with_entry(snapshot: AccountSnapshot, order: SizedOrder, taker_fee_rate: Decimal) -> AccountSnapshot:
    """The snapshot after an approved entry: one more (pending) exposure, its margin and its risk spent."""
    spent = order.margin + order.notional * taker_fee_rate
    entry = Exposure(order.symbol, order.notional, pending=True, risk=order.risk_usdt)
    return replace(
        snapshot,
        available_balance=snapshot.available_balance - spent,
        exposures=(*snapshot.exposures, entry),
    )


def decide_entries(
    candidates: Sequence[Candidate],
    snapshot: AccountSnapshot,
    *,
    account: str,
    limits: RiskLimits,
    level_settings: LevelSettings,
    rules: Mapping[str, SymbolRules],
    marks: Mapping[str, Decimal],
    halted: str | None,
    halted_code: str = RefusalReason.DAILY_LOSS_LIMIT,
    no_monitor: str | None = None,
    newest_bar_ms: int,
    interval: str,
    max_new: int | None = None,
    taker_fee_rate: Decimal = DEFAULT_TAKER_FEE_RATE,
) -> list[EntryDecision]:
    """Approve or refuse each signal in order (strongest first), each approval counting against the next."""
    oldest_bar = newest_bar_ms - (SIGNAL_MAX_AGE_BARS - 1) * interval_ms(interval)
    decisions: list[EntryDecision] = []
    opened = 0
    for candidate in candidates:
        signal = candidate.signal

        def refuse(code: str, why: Text, c: Candidate = candidate) -> EntryDecision:
            return EntryDecision(c.id, c.signal, c.source, code=code, why=why)

        symbol_rules = rules.get(signal.symbol)
        mark = marks.get(signal.symbol)
        if halted is not None:
            decisions.append(refuse(halted_code, data(halted)))
        elif no_monitor is not None:
            decisions.append(refuse(SkipReason.NO_MONITOR, data(no_monitor)))
        elif signal.bar_open_time_ms < oldest_bar:
            decisions.append(refuse(SkipReason.STALE_SIGNAL, text("placement.stale")))
        elif max_new is not None and opened >= max_new:
            decisions.append(refuse(SkipReason.CYCLE_LIMIT, text("placement.cycle_limit", count=max_new)))
        elif symbol_rules is None:
            decisions.append(
                refuse(RefusalReason.SYMBOL_NOT_TRADABLE, text("placement.no_rules", symbol=signal.symbol))
            )
        elif mark is None or mark <= 0:
            decisions.append(refuse(SkipReason.NO_PRICE, text("placement.no_price", symbol=signal.symbol)))
        else:
            decision = check_entry(
                signal,
                snapshot,
                limits,
                rules=symbol_rules,
                level_settings=level_settings,
                taker_fee_rate=taker_fee_rate,
                entry_price=mark,
            )
            if isinstance(decision, Approved):
                key = intent_key(account, signal.symbol, signal.bar_open_time_ms, signal.direction)
                decisions.append(EntryDecision(candidate.id, signal, candidate.source, order=decision.order, key=key))
                snapshot = with_entry(snapshot, decision.order, taker_fee_rate)
                opened += 1
            else:
                decisions.append(refuse(decision.reason, decision.why))
    return decisions


def open_approved(
    decision: EntryDecision,
    rules: SymbolRules,
    monitor: MonitorSettings,
    *,
    taker_fee_rate: Decimal,
    time_ms: int,
) -> tuple[Position, list[Action]]:
    """The new position of an approved decision, under the policy that manages it, and its first actions."""
    if decision.order is None or decision.key is None:
        raise ValueError(f"{decision.signal.symbol}: only an approved decision opens a position")
    policy = Policy.build(rules, decision.order.plan, monitor, taker_fee_rate=taker_fee_rate)
    return open_position(key=decision.key, order=decision.order, policy=policy, time_ms=time_ms)


# ---------------------------------------------------------------------------------------------- the account


@dataclass(frozen=True, slots=True)
class ManagedExposure:
    """A position of ours that is not closed: what it weighs in the entry check."""

    symbol: str
    notional: Decimal
    margin: Decimal  # initial margin it uses (or will use once its entry fills)
    pending: bool  # the entry has not filled yet
    risk: Decimal  # what it can still lose today (ats.lifecycle.open_risk)


def exposure_of(position: Position, *, reference: Decimal | None, mark: Decimal | None) -> ManagedExposure:
    """A position valued at its entry (or, not filled yet, at `reference`, the price it was sized at), with its
    open risk at its exchange stop."""
    pending = position.phase is Phase.PENDING_ENTRY
    if pending or position.entry_qty == 0:
        notional = position.requested_qty * (reference or ZERO)
    else:
        notional = max(position.open_qty, ZERO) * position.entry_price
    risk = open_risk(position, mark=mark, reference=reference)
    notional = abs(notional)
    return ManagedExposure(position.symbol, notional, notional / max(position.leverage, 1), pending, risk)


@dataclass(frozen=True, slots=True)
class RiskView:
    """The snapshot the entry check reads, and where its figures came from (for the artifact)."""

    snapshot: AccountSnapshot
    ledger: LedgerDay
    unmanaged: tuple[str, ...] = ()  # symbols with a position on the exchange that we do not manage
    reserved_margin: Decimal = ZERO  # margin set aside for entries recorded but not filled yet
    notes: tuple[str, ...] = ()


def account_view(
    managed: Sequence[ManagedExposure],
    ledger: LedgerDay,
    info: AccountInfo,
    exchange_positions: Sequence[PositionInfo],
) -> RiskView:
    """Combine our positions and the day's ledger with the exchange's balances into one AccountSnapshot.

    Positions on the exchange that we do not manage (opened by hand) count too: they take a slot and margin, and
    their unrealised loss is their open risk (their stop is unknown). The margin and the risk of entries recorded
    but not yet on the exchange count, so two decisions in a row do not spend the same money or loss headroom.
    """
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


# ---------------------------------------------------------------------------------------------- the report


class PlacementResult(StrEnum):
    OPENED = "opened"  # the entry filled and the protection is acknowledged
    PROTECTING = "protecting"  # filled; some protection is still being placed (the monitor finishes it)
    PENDING = "pending"  # the entry's outcome is not known yet
    FAILED = "failed"  # the entry was refused or never filled
    CLOSED = "closed"  # filled and already closed again (e.g. the stop could not be placed)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one position stands after the placement task."""

    key: str
    symbol: str
    result: PlacementResult
    quantity: Decimal
    entry_price: Decimal | None
    leverage: int
    stop: Decimal | None
    tp1: Decimal | None
    tp2: Decimal | None
    protection: dict[str, str]  # leg (S1, T1, T2, ...) -> state
    detail: str = ""


def placement_of(position: Position) -> Placement:
    """Summarise a position for the run's report."""
    protection = {o.leg: o.state.value for o in position.orders if o.role in (Role.STOP, Role.TP1, Role.TP2)}
    if position.phase is Phase.FAILED:
        result, detail = PlacementResult.FAILED, position.error or "the entry did not fill"
    elif position.phase in (Phase.CLOSED, Phase.CLOSING):
        reason = position.exit_reason.value if position.exit_reason else position.close_note
        result, detail = PlacementResult.CLOSED, reason or ""
    elif position.phase is Phase.PENDING_ENTRY:
        result, detail = PlacementResult.PENDING, "entry outcome unknown; it will be looked up again"
    elif position.phase is Phase.PROTECTING:
        result, detail = PlacementResult.PROTECTING, "protection not fully acknowledged yet"
    else:
        result, detail = PlacementResult.OPENED, ""
    levels = position.levels
    return Placement(
        key=position.key,
        symbol=position.symbol,
        result=result,
        quantity=position.entry_qty,
        entry_price=position.entry_price if position.entry_qty > 0 else None,
        leverage=position.leverage,
        stop=position.stop_price,
        tp1=levels.tp1 if levels else None,
        tp2=levels.tp2 if levels and not levels.single_target else None,
        protection=protection,
        detail=detail,
    )
