"""Order placement: risk decisions under one lock, then retry-safe execution on the exchange.

1. `record_entries` (one PostgreSQL transaction, advisory lock per account): the account snapshot (positions
   and pending entries from the database with their open risk at their stops, balances and unrealised PnL from
   the exchange, today's realised PnL, fees and funding from the risk ledger), the day's halt, then
   `decide_entries` over the new signals, strongest first. Refusals are recorded on the signal rows; approvals
   become an intent and a position with deterministic client ids. Two runs at once see each other's decisions
   (slots, margin and the daily loss headroom their entries' risk spends): the second waits for the lock.
2. `open_on_exchange` (outside the transaction, one task per position): isolated margin and leverage, then the
   entry through the Executor, which places the protection when the entry fills. A retry of this task never
   sends a second order: it re-drives the position, which looks every unanswered order up by client id first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from prefect import task
from prefect.cache_policies import NONE
from prefect.runtime import task_run
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ats.clock import utc_day_start_ms
from ats.config import LevelSettings, RiskLimits
from ats.domain import Signal, SymbolRules, client_id, intent_key, interval_ms
from ats.exchange.base import AccountInfo, MarginType, PositionInfo
from ats.exchange.errors import (
    DefiniteFailure,
)
from ats.execution import OrderOutcome, action_for_leg
from ats.factors import last_closed_open_time
from ats.health import health_policy
from ats.lifecycle import OrderRejected, OrderState, Phase, Policy, Position, Role, open_position
from ats.notify import AlertNote
from ats.risk import DEFAULT_TAKER_FEE_RATE, AccountSnapshot, Approved, Exposure, RefusalReason, SizedOrder, check_entry
from db import market, risk_state
from db.health import entry_refusal
from db.journal import enqueue_notification, record_new_position
from db.market import StoredSignal
from db.models import OrderIntentRow, OrderRow
from db.session import advisory_xact_lock
from tasks.market import fetch_rules
from tasks.runtime import EXCHANGE_RETRY_DELAYS_S, TRANSIENT, Runtime, retry_when_transient, run_logger

SIGNAL_MAX_AGE_BARS = 1  # a signal older than the newest closed bar is stale: the market moved on


class SkipReason(StrEnum):
    """Why a signal was not even sized (the risk check's own reasons are ats.risk.RefusalReason)."""

    STALE_SIGNAL = "stale_signal"
    CYCLE_LIMIT = "max_new_positions"
    NO_PRICE = "no_price"
    NO_MONITOR = "no_monitor"  # no monitor would protect the position (db.health.entry_refusal)


@dataclass(frozen=True, slots=True)
class EntryDecision:
    """What the placement decided for one signal."""

    signal_id: int
    signal: Signal
    source: str = "scan"  # scan | manual
    order: SizedOrder | None = None  # approved: what to send
    key: str | None = None  # the intent key (client ids derive from it)
    code: str | None = None  # refused: machine-readable reason
    reason: str | None = None  # refused: for people

    @property
    def approved(self) -> bool:
        return self.order is not None


def placement_lock(account: str) -> str:
    return f"place-orders:{account}"


def halt_reason(ledger: risk_state.LedgerDay, snapshot: AccountSnapshot, limits: RiskLimits) -> tuple[str | None, bool]:
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
    candidates: Sequence[StoredSignal],
    snapshot: AccountSnapshot,
    *,
    account: str,
    limits: RiskLimits,
    level_settings: LevelSettings,
    rules: Mapping[str, SymbolRules],
    marks: Mapping[str, Decimal],
    halted: str | None,
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

        def refuse(code: str, reason: str, c: StoredSignal = candidate) -> EntryDecision:
            return EntryDecision(c.id, c.signal, c.source, code=code, reason=reason)

        symbol_rules = rules.get(signal.symbol)
        mark = marks.get(signal.symbol)
        if halted is not None:
            decisions.append(refuse(RefusalReason.DAILY_LOSS_LIMIT, halted))
        elif no_monitor is not None:
            decisions.append(refuse(SkipReason.NO_MONITOR, no_monitor))
        elif signal.bar_open_time_ms < oldest_bar:
            decisions.append(refuse(SkipReason.STALE_SIGNAL, "the signal's bar is older than the newest closed bar"))
        elif max_new is not None and opened >= max_new:
            decisions.append(refuse(SkipReason.CYCLE_LIMIT, f"this run opens at most {max_new} new positions"))
        elif symbol_rules is None:
            decisions.append(refuse(RefusalReason.SYMBOL_NOT_TRADABLE, f"{signal.symbol} is not in exchange info"))
        elif mark is None or mark <= 0:
            decisions.append(refuse(SkipReason.NO_PRICE, f"no mark price for {signal.symbol}"))
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
                decisions.append(refuse(decision.reason, decision.message))
    return decisions


# ---------------------------------------------------------------------------------------------- step 1: decide


@dataclass(frozen=True, slots=True)
class ExchangeView:
    """What the exchange says before deciding: balances, positions and every symbol's mark price."""

    info: AccountInfo
    positions: list[PositionInfo]
    marks: dict[str, Decimal]
    rules: dict[str, SymbolRules]
    taker_fee_rate: Decimal  # the account's own rate (sizing, breakeven stops)


@task(name="read-exchange-account", cache_policy=NONE)
async def read_exchange_account(rt: Runtime) -> ExchangeView:
    """Balances and unrealised PnL, open positions, mark prices (sizing uses the mark, not the bar close) and the
    symbols' current filters (orders are quantised to what the exchange says now), and the account's taker fee.

    The account must be in one-way position mode: it is switched there if it holds nothing, else the run fails.
    """
    rules = await fetch_rules(rt)
    await rt.exchange.sync_time()
    await rt.exchange.ensure_one_way_mode()
    reference = "BTCUSDT" if "BTCUSDT" in rules else min(rules)
    taker_fee_rate = (await rt.exchange.commission_rate(reference)).taker
    info = await rt.exchange.account()
    positions = await rt.exchange.positions()
    marks = {p.symbol: p.mark_price for p in await rt.exchange.premium_index()}
    run_logger().info(
        f"account: wallet {info.total_wallet_balance:.2f} USDT, available {info.available_balance:.2f}, "
        f"unrealised {info.total_unrealized_pnl:+.2f}, {len(positions)} positions on the exchange"
    )
    return ExchangeView(info, positions, marks, rules, taker_fee_rate)


@dataclass(frozen=True, slots=True)
class Decided:
    """The decisions of one placement run and the account they were taken against."""

    decisions: list[EntryDecision]
    snapshot: AccountSnapshot
    halted: str | None
    notes: tuple[str, ...]
    dry_run: bool
    no_monitor: str | None = None  # entries were refused: no monitor would protect them


@task(name="decide-entries", cache_policy=NONE)
async def record_entries(
    rt: Runtime,
    exchange: ExchangeView,
    *,
    signal_ids: Sequence[int] | None,
    min_score: float,
    max_new: int | None,
    dry_run: bool,
    unsaved: Sequence[StoredSignal] = (),
    require_monitor: bool = True,
) -> Decided:
    """The risk decisions, in one transaction under the account's placement lock; records them unless dry_run.

    `unsaved` signals (a dry run's, never stored) are decided along with the stored ones. Nothing in here waits
    on the network: the lock is held only for database work. With `require_monitor`, every entry is refused
    while no monitor leads (a dry run only notes it).
    """
    if unsaved and not dry_run:
        raise ValueError("only a dry run decides on signals that are not stored")
    settings = rt.settings
    account = rt.account
    now = rt.now_ms()
    interval = settings.bar_interval
    newest_bar = last_closed_open_time(now, interval)
    with rt.database.session() as session:
        advisory_xact_lock(session, placement_lock(account))
        view = risk_state.risk_view(session, account, exchange.info, exchange.positions, exchange.marks, now)
        halted, new_halt = halt_reason(view.ledger, view.snapshot, settings.limits)
        notes = view.notes
        no_monitor = None
        if require_monitor:
            # Heartbeats carry the local clock, so the guard reads it too (not the exchange's).
            no_monitor = entry_refusal(session, account, health_policy(settings), rt.clock.now_ms())
            if no_monitor is not None and dry_run:
                notes, no_monitor = (*notes, f"a real run would refuse every entry: {no_monitor}"), None
        since = None if signal_ids is not None else newest_bar - (SIGNAL_MAX_AGE_BARS - 1) * interval_ms(interval)
        candidates = [
            *market.new_signals(session, account, min_score=min_score, ids=signal_ids, since_bar_ms=since, lock=True),
            *unsaved,
        ]
        rules = exchange.rules
        decisions = decide_entries(
            candidates,
            view.snapshot,
            account=account,
            limits=settings.limits,
            level_settings=settings.levels,
            rules=rules,
            marks=exchange.marks,
            halted=halted,
            no_monitor=no_monitor,
            newest_bar_ms=newest_bar,
            interval=interval,
            max_new=max_new,
            taker_fee_rate=exchange.taker_fee_rate,
        )
        if not dry_run:
            risk_state.note_unrealized(session, account, now, view.snapshot.unrealized_pnl, view.snapshot.daily_pnl)
            if new_halt and halted is not None:
                risk_state.record_halt(session, account, now, halted)
                day = utc_day_start_ms(now)
                enqueue_notification(session, account, f"halt:{day}", AlertNote("New entries halted", halted))
            for decision in decisions:
                _record(session, rt, decision, rules, exchange.taker_fee_rate)
    logger = run_logger()
    approved = sum(1 for d in decisions if d.approved)
    verb = "would open" if dry_run else "approved"
    logger.info(f"{len(decisions)} signals considered: {approved} {verb}, {len(decisions) - approved} refused")
    if halted:
        logger.warning(halted)
    if no_monitor:
        logger.warning(f"entries refused: {no_monitor}")
    return Decided(decisions, view.snapshot, halted, notes, dry_run, no_monitor)


def _record(
    session: Session,
    rt: Runtime,
    decision: EntryDecision,
    rules: Mapping[str, SymbolRules],
    taker_fee_rate: Decimal,
) -> None:
    if decision.order is None or decision.key is None:
        market.set_signal_status(session, decision.signal_id, "refused", code=decision.code, reason=decision.reason)
        return
    order = decision.order
    policy = Policy.build(rules[order.symbol], order.plan, rt.settings.monitor, taker_fee_rate=taker_fee_rate)
    # The executor and the monitor measure a position's age on the local clock: open it on that clock too.
    position, actions = open_position(key=decision.key, order=order, policy=policy, time_ms=rt.clock.now_ms())
    levels = order.levels
    intent = OrderIntentRow(
        intent_key=decision.key,
        account=rt.account,
        signal_id=decision.signal_id,
        symbol=order.symbol,
        direction=order.direction.value,
        kind="manual" if decision.source == "manual" else "entry",
        status="recorded",
        quantity=order.quantity,
        leverage=order.leverage,
        reference_price=order.reference_price,
        stop_price=levels.stop,
        tp1_price=levels.tp1,
        tp2_price=levels.tp2,
        tp1_qty=levels.tp1_qty,
        tp2_qty=levels.tp2_qty,
    )
    record_new_position(session, rt.account, position, actions, source="flow", intent=intent)
    market.set_signal_status(session, decision.signal_id, "accepted", intent_key=decision.key)


# ---------------------------------------------------------------------------------------------- step 2: send


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


# A retry is safe: margin type and leverage may be set twice, and the entry is looked up by client id before any
# resend.
@task(
    name="open-position",
    task_run_name="open-{symbol}",
    retries=len(EXCHANGE_RETRY_DELAYS_S),
    retry_delay_seconds=EXCHANGE_RETRY_DELAYS_S,
    retry_condition_fn=retry_when_transient,
    cache_policy=NONE,
)
async def open_on_exchange(rt: Runtime, key: str, symbol: str, leverage: int) -> Placement:
    """Isolated margin and leverage for the symbol, then the entry (the Executor places the protection when it
    fills). The first attempt sends the entry; a retry re-drives the position instead, looking up by client id
    every order whose answer never came, so it can only adopt what exists, never send it twice."""
    journal = rt.journal()
    executor = rt.executor("flow")
    position = journal.position(key)
    if position is None:
        raise LookupError(f"no position recorded under key {key}")
    cid = client_id(key, "E")
    if not position.is_terminal:
        # Margin type and leverage go first, and only while the entry was never sent: a refusal then fails the
        # entry safely; after a send (whose answer may have been lost) only the look-up may decide.
        refused = None if _sent(rt, cid) else await _margin_and_leverage(rt, symbol, leverage)
        if refused is not None:
            journal.record_outcome(cid, OrderOutcome("REJECTED", error=refused))
            await executor.handle(key, OrderRejected(cid, rt.clock.now_ms(), None, refused))
        elif task_run.run_count <= 1:
            entry = position.entry_order
            action = (
                action_for_leg(position, entry) if entry is not None and entry.state is OrderState.REQUESTED else None
            )
            await executor.execute(key, [action] if action is not None else [])
        else:
            run_logger().info(f"retry {task_run.run_count - 1}: re-driving {symbol} (orders are looked up first)")
            await executor.redrive(key)
    final = journal.position(key)
    assert final is not None
    placement = placement_of(final)
    _store_result(rt, key, placement)
    run_logger().info(f"{symbol}: {placement.result.value} {placement.detail}".rstrip())
    return placement


def _sent(rt: Runtime, client_order_id: str) -> bool:
    """Whether an order was ever sent (the journal counts each attempt before it goes out)."""
    with rt.database.session() as session:
        attempts = session.scalar(
            select(OrderRow.attempts).where(OrderRow.account == rt.account, OrderRow.client_id == client_order_id)
        )
    return bool(attempts)


async def _margin_and_leverage(rt: Runtime, symbol: str, leverage: int) -> str | None:
    """Set isolated margin and the leverage; None when done, else why the entry must not be sent.

    What waiting can fix propagates (the task retries); a refusal (e.g. margin type locked by orders in another
    mode) fails the entry: this system never trades a symbol in cross margin.
    """
    try:
        await rt.exchange.set_margin_type(symbol, MarginType.ISOLATED)
        actual = await rt.exchange.set_leverage(symbol, leverage)
    except TRANSIENT:
        raise
    except DefiniteFailure as exc:
        return f"margin type / leverage refused: {exc}"
    if actual < leverage:
        run_logger().warning(f"{symbol}: leverage capped at {actual} (asked {leverage})")
    return None


def _store_result(rt: Runtime, key: str, placement: Placement) -> None:
    """The intent's and the signal's status follow the position: placed, failed, or still pending."""
    status = {
        PlacementResult.FAILED: "failed",
        PlacementResult.PENDING: "pending",
    }.get(placement.result, "placed")
    with rt.database.session() as session:
        session.execute(
            update(OrderIntentRow)
            .where(OrderIntentRow.intent_key == key)
            .values(status=status, error=placement.detail or None, updated_at=func.now())
        )
        signal_id = session.scalar(select(OrderIntentRow.signal_id).where(OrderIntentRow.intent_key == key))
        if signal_id is not None and status != "pending":
            market.set_signal_status(session, signal_id, status)
