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
from dataclasses import dataclass
from decimal import Decimal

from prefect import task
from prefect.cache_policies import NONE
from prefect.runtime import task_run
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ats.clock import utc_day_start_ms
from ats.domain import SymbolRules, client_id, interval_ms
from ats.exchange.base import AccountInfo, MarginType, PositionInfo
from ats.exchange.errors import (
    DefiniteFailure,
)
from ats.execution import OrderOutcome, action_for_leg
from ats.factors import last_closed_open_time
from ats.health import health_policy
from ats.lifecycle import OrderRejected, OrderState
from ats.messages import data, text
from ats.notify import AlertNote
from ats.placement import (
    LOSS_LIMIT,
    SIGNAL_MAX_AGE_BARS,
    Candidate,
    EntryDecision,
    Placement,
    PlacementResult,
    decide_entries,
    halt_code,
    halt_reason,
    open_approved,
    placement_of,
    refusal_note,
)
from ats.risk import AccountSnapshot
from db import market, risk_state
from db.health import entry_refusal
from db.journal import enqueue_notification, record_new_position
from db.models import OrderIntentRow, OrderRow
from db.session import advisory_xact_lock
from tasks.market import fetch_rules
from tasks.runtime import EXCHANGE_RETRY_DELAYS_S, TRANSIENT, Runtime, retry_when_transient, run_logger


def placement_lock(account: str) -> str:
    return f"place-orders:{account}"


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
    unsaved: Sequence[Candidate] = (),
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
            halted_code=halt_code(view.ledger),
            no_monitor=no_monitor,
            newest_bar_ms=newest_bar,
            interval=interval,
            max_new=max_new,
            taker_fee_rate=exchange.taker_fee_rate,
        )
        if not dry_run:
            risk_state.note_unrealized(session, account, now, view.snapshot.unrealized_pnl, view.snapshot.daily_pnl)
            if new_halt and halted is not None:
                risk_state.record_halt(session, account, now, halted, by=LOSS_LIMIT)
                day = utc_day_start_ms(now)
                note = AlertNote(text("placement.halted"), (data(halted),))
                enqueue_notification(session, account, f"halt:{day}", note, language=settings.language)
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
        key = f"refused:{decision.signal_id}:{decision.code}"
        enqueue_notification(session, rt.account, key, refusal_note(decision), language=rt.settings.language)
        return
    order = decision.order
    # The executor and the monitor measure a position's age on the local clock: open it on that clock too.
    position, actions = open_approved(
        decision, rules[order.symbol], rt.settings.monitor, taker_fee_rate=taker_fee_rate, time_ms=rt.clock.now_ms()
    )
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
    record_new_position(
        session, rt.account, position, actions, source="flow", intent=intent, language=rt.settings.language
    )
    market.set_signal_status(session, decision.signal_id, "accepted", intent_key=decision.key)


# ---------------------------------------------------------------------------------------------- step 2: send


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
            await executor.apply(key, [OrderRejected(cid, rt.clock.now_ms(), None, refused)])
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
