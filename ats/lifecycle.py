"""The position state machine: `transition(position, event) -> (position, actions)`, pure and total.

One `Position` per trade, from the entry order to the last exit. The live monitor and the backtester feed it the
same events and execute the actions it returns; nothing here does I/O or reads a clock.

Phases: PENDING_ENTRY -> PROTECTING (entry filled, at once or in parts; stop and targets requested) -> OPEN (all
protection acknowledged) -> TP1_DONE (TP1 filled: a breakeven stop for the rest is placed first, the old stop is
cancelled only once the new one is acknowledged) -> CLOSING -> CLOSED; FAILED when the entry never filled.

How it stays safe under the exchange's real behaviour:
- A transition first records the facts its event carries (a fill, an acknowledgement, a rejection, ...); then
  `_settle` compares what the position needs with the orders it has and emits only what is missing. A replayed
  or duplicated event places no order and sends no message: fills are deduplicated by trade id, order events by
  the order's state, funding by its reference, reversal signals by bar time, close requests by their time,
  notifications by their key.
- Fills are summed, so their order does not matter. An order (the entry, TP1) is complete only when the exchange
  said it finished and every fill up to its reported cumulative quantity has been seen.
- A position with quantity always has a stop requested or acknowledged, or a market close in flight (or paused
  because the exchange said it held nothing to reduce, until reconciliation tells otherwise). The first
  stop goes out with the first entry fill and uses closePosition, so later fills and partial take-profits stay
  covered. Replacement stops are placed before the old one is cancelled; Binance allows one closePosition stop
  per direction (-4130), so a replacement is reduce-only for the open quantity while a closePosition stop lives.
- The stop price only ever tightens (risk.tighten_stop).
- A stop that cannot be placed (-2021 or any other rejection) closes the position at market and alerts. A mark
  price beyond the stop for `Policy.supervision_grace_ms` without a stop fill closes at market and alerts too,
  once the exchange takes the close (had the stop fired unseen, the close would reduce nothing).
  A rejected market close is retried under a new id up to `Policy.max_close_attempts` times, then a human is
  alerted (a later CloseRequested starts a new round). A close refused as reducing nothing (-2022) is not retried
  until reconciliation says the exchange still holds the position (PositionHeld): usually the exchange stop
  closed it and its fill has not been seen yet, which the reconciliation replays.
- Each user-visible change sends one message: entry (with its levels), TP1 (with the breakeven stop), the result
  (whatever closed it), a failed entry, and alerts for what needs a human's eye.
- Client ids are deterministic (ats.domain.client_id(key, leg)): E entry, S1, S2, ... stops, T1 and T2 targets,
  T1M/T2M market take-profits (when a target would trigger immediately), X1, X2, ... market closes.

What the shell must do: report fills of a triggered algo order under the algo order's client id, with the
order's cumulative filled quantity (Binance `z`) and `order_done` on the fill that finished it; report an order
or algo order that ended without filling (CANCELED, EXPIRED, or a cancel answered "unknown order") as
OrderCanceled (with the order's cumulative filled quantity when known), and a refusal as OrderRejected; treat
"duplicate client id" (-4116) on a placement as OrderAccepted (it is already there). On RequestReconcile, replay
the fills the exchange has (userTrades) and report PositionVanished if it then holds nothing, PositionHeld if it
still holds a position whose close is paused. Execute a transition's actions in order. Persist the returned
position (`ats.codec.to_jsonable`) and its Notify actions (the outbox) in one transaction. `exit_triggers` and
`triggers_reached` tell the shell which stops and take-profits a mark price has reached: their fills should
follow within moments; when they do not (`awaiting_fills`), the shell asks the exchange.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, Union, get_args

from ats.codec import from_jsonable, to_jsonable
from ats.config import MonitorSettings, OnReversal
from ats.domain import Band, Direction, Levels, Side, SymbolRules, client_id, is_own_client_id
from ats.exchange.base import AlgoOrderRequest, OrderRequest, OrderType, WorkingType
from ats.messages import Text, data, say_text, text
from ats.notify import AlertNote, EntryNote, ExitReason, Notification, ResultNote, TakeProfitNote
from ats.risk import (
    DEFAULT_TAKER_FEE_RATE,
    LevelPlan,
    ReversalResponse,
    SizedOrder,
    breakeven_stop_price,
    levels_for,
    loss_at_stop,
    min_order_qty,
    planned_risk,
    reversal_response,
    reversal_stop,
    stop_crossed,
    stop_price_for,
    target_reached,
    tighten_stop,
)

ZERO = Decimal(0)
REDUCE_ONLY_REJECTED = -2022  # a reduce-only order that would not reduce: nothing (left) to close on the exchange


class Phase(StrEnum):
    PENDING_ENTRY = "pending_entry"  # entry order sent, nothing filled
    PROTECTING = "protecting"  # quantity held; protection requested, not all of it acknowledged
    OPEN = "open"  # stop and targets acknowledged
    TP1_DONE = "tp1_done"  # TP1 filled; the stop moves to breakeven
    CLOSING = "closing"  # a stop is executing, or a market close is under way
    CLOSED = "closed"
    FAILED = "failed"  # the entry ended without a fill


TERMINAL_PHASES = frozenset({Phase.CLOSED, Phase.FAILED})


class Role(StrEnum):
    ENTRY = "entry"
    STOP = "stop"
    TP1 = "tp1"
    TP2 = "tp2"
    CLOSE = "close"


class OrderState(StrEnum):
    REQUESTED = "requested"  # the place action was emitted; no answer yet
    ACTIVE = "active"  # acknowledged and working
    CANCELING = "canceling"  # we asked to cancel it
    FILLED = "filled"
    CANCELED = "canceled"  # canceled or expired, possibly after partial fills
    REJECTED = "rejected"

    @property
    def live(self) -> bool:
        return self in (OrderState.REQUESTED, OrderState.ACTIVE, OrderState.CANCELING)

    @property
    def working(self) -> bool:
        """Live and wanted: not on its way out."""
        return self in (OrderState.REQUESTED, OrderState.ACTIVE)


@dataclass(frozen=True, slots=True)
class LegOrder:
    """One order of the position, as far as the position knows it."""

    leg: str
    client_id: str
    role: Role
    algo: bool  # placed through the Algo service (stops and targets)
    state: OrderState
    trigger: Decimal | None = None
    qty: Decimal | None = None  # None: a closePosition stop
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO  # sum of qty x price over its fills
    reported_qty: Decimal = ZERO  # the largest cumulative filled quantity the exchange reported for it
    fees: Decimal = ZERO
    acknowledged: bool = False
    cancel_sent: bool = False  # we asked the exchange to cancel it (not an expiry or someone else's cancel)

    @property
    def avg_price(self) -> Decimal:
        return self.filled_value / self.filled_qty if self.filled_qty else ZERO

    @property
    def complete(self) -> bool:
        """Filled, and every fill the exchange counted in it has been seen."""
        return self.state is OrderState.FILLED and self.filled_qty >= self.reported_qty


@dataclass(frozen=True, slots=True)
class Policy:
    """How one position is managed; fixed when it opens and persisted with it."""

    rules: SymbolRules
    plan: LevelPlan
    taker_fee_rate: Decimal = DEFAULT_TAKER_FEE_RATE
    on_reversal: OnReversal = "tighten"
    reversal_score: float = 70.0
    supervision_grace_ms: int = 5_000  # mark beyond the stop this long without a stop fill -> market close
    max_close_attempts: int = 3  # rejected market closes before giving up and asking a human

    @staticmethod
    def build(
        rules: SymbolRules,
        plan: LevelPlan,
        monitor: MonitorSettings,
        *,
        taker_fee_rate: Decimal = DEFAULT_TAKER_FEE_RATE,
    ) -> Policy:
        return Policy(
            rules=rules,
            plan=plan,
            taker_fee_rate=taker_fee_rate,
            on_reversal=monitor.on_reversal,
            reversal_score=monitor.reversal_score,
        )


@dataclass(frozen=True, slots=True)
class Position:
    key: str  # the intent key; client ids derive from it
    symbol: str
    direction: Direction
    policy: Policy
    requested_qty: Decimal
    leverage: int
    strength: float
    band: Band
    opened_ms: int
    phase: Phase = Phase.PENDING_ENTRY
    orders: tuple[LegOrder, ...] = ()
    entry_qty: Decimal = ZERO
    entry_value: Decimal = ZERO  # sum of qty x price over entry fills
    entry_final_qty: Decimal | None = None  # the entry order's cumulative quantity when it finished
    exit_qty: Decimal = ZERO
    exit_value: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO  # signed: positive received
    liquidation_qty: Decimal = ZERO
    external_qty: Decimal = ZERO  # closed by fills that are not ours, or gone when the position vanished
    stop_price: Decimal | None = None  # the stop level wanted now; only ever tightens
    levels: Levels | None = None  # set when the entry completes
    breakeven_set: bool = False
    close_reason: ExitReason | None = None  # set when we decided to close at market
    close_why: Text | None = None  # why we close at market (or who closed it), told with the result
    exit_reason: ExitReason | None = None
    failure: Text | None = None  # why the entry failed
    adopted: bool = False
    vanished: bool = False
    needs_attention: bool = False  # market closes kept failing; a human must look
    close_paused: bool = False  # a close reduced nothing (-2022): no new one until the exchange is seen holding it
    close_round: int = 0  # market closes up to this number belong to an earlier, given-up round
    close_requested_ms: int | None = None  # time of the last close request (a replay carries the same time)
    stop_crossed_ms: int | None = None
    last_reversal_bar_ms: int | None = None
    stop_no: int = 0
    close_no: int = 0
    seen: frozenset[str] = frozenset()
    notified: frozenset[str] = frozenset()
    closed_ms: int | None = None

    # ------------------------------------------------------------------------------------------ derived figures

    @property
    def open_qty(self) -> Decimal:
        return self.entry_qty - self.exit_qty

    @property
    def entry_price(self) -> Decimal:
        return self.entry_value / self.entry_qty if self.entry_qty else ZERO

    @property
    def exit_price(self) -> Decimal:
        return self.exit_value / self.exit_qty if self.exit_qty else ZERO

    @property
    def realized_pnl(self) -> Decimal:
        """Gross PnL of what has been closed so far, against the average entry."""
        return self.direction.sign * (self.exit_value - self.entry_price * self.exit_qty)

    @property
    def net_pnl(self) -> Decimal:
        return self.realized_pnl - self.fees + self.funding

    @property
    def entry_order(self) -> LegOrder | None:
        return next((o for o in self.orders if o.role is Role.ENTRY), None)

    @property
    def entry_done(self) -> bool:
        if self.adopted or self.vanished:
            return True
        entry = self.entry_order
        if entry is None or entry.state.live:
            return False
        return self.entry_final_qty is None or self.entry_qty >= self.entry_final_qty

    @property
    def tp1_done(self) -> bool:
        if self.levels is None:
            return False
        tp1 = [o for o in self.orders if o.role is Role.TP1]
        filled = sum((o.filled_qty for o in tp1), ZERO)
        return filled > 0 and (filled >= self.levels.tp1_qty or any(o.complete for o in tp1))

    @property
    def error(self) -> str:
        """Why the entry failed, in English: for logs and run reports (messages tell `failure` in their language)."""
        return "" if self.failure is None else say_text("en", self.failure)

    @property
    def close_note(self) -> str:
        """Why it was closed at market, in English: for logs and run reports (see `error`)."""
        return "" if self.close_why is None else say_text("en", self.close_why)

    @property
    def is_terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def order(self, cid: str) -> LegOrder | None:
        return next((o for o in self.orders if o.client_id == cid), None)

    def current_order(self, role: Role) -> LegOrder | None:
        """The newest live order of a role (for display and the positions table's client id columns)."""
        return next((o for o in reversed(self.orders) if o.role is role and o.state.live), None)

    @property
    def exchange_stop(self) -> Decimal | None:
        """The stop that would close the position now: the tightest acknowledged stop on the exchange. Until one is
        acknowledged, the stop wanted (it is being placed; if it cannot be, the position is closed at market).

        A breakeven stop requested but not yet acknowledged does not count: the old stop still guards the rest.
        """
        placed = [o.trigger for o in self.orders if o.role is Role.STOP and o.state is OrderState.ACTIVE and o.trigger]
        if not placed:
            return self.stop_price
        return functools.reduce(lambda a, b: tighten_stop(a, b, self.direction), placed)


# ---------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution. Liquidations (autoclose-*, adl_autoclose) and fills of orders that are not ours
    (a manual close on the exchange) come with their own client id."""

    client_id: str
    trade_id: int
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal  # in the quote asset
    time_ms: int
    realized_pnl: Decimal = ZERO  # as the exchange reports it (kept for the record)
    order_done: bool = False  # this fill finished the order (X = FILLED)
    order_filled_qty: Decimal | None = None  # the order's cumulative filled quantity after this fill (z)
    liquidation: bool = False


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    client_id: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class OrderRejected:
    client_id: str
    time_ms: int
    code: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class OrderCanceled:
    """Canceled, expired, or unknown to the exchange when we cancelled it."""

    client_id: str
    time_ms: int
    expired: bool = False
    filled_qty: Decimal | None = None  # the order's cumulative filled quantity, when known


@dataclass(frozen=True, slots=True)
class MarkPrice:
    price: Decimal
    time_ms: int


@dataclass(frozen=True, slots=True)
class FundingPaid:
    amount: Decimal  # signed income: negative when the position paid
    time_ms: int
    ref: str  # unique per payment (income tranId, or the funding time)


@dataclass(frozen=True, slots=True)
class PositionVanished:
    """Reconciliation found no position on the exchange after replaying every fill it could find."""

    time_ms: int
    price: Decimal | None = None  # best estimate of where it ended (the mark), for the record


@dataclass(frozen=True, slots=True)
class PositionHeld:
    """Reconciliation found the exchange still holding the position after replaying every fill it could find."""

    time_ms: int
    amount: Decimal  # the exchange's position amount (signed), for the record


@dataclass(frozen=True, slots=True)
class ReversalSignal:
    direction: Direction
    strength: float
    mark_price: Decimal
    bar_open_time_ms: int
    time_ms: int


@dataclass(frozen=True, slots=True)
class CloseRequested:
    reason: str  # "manual", "emergency", ...
    time_ms: int


Event = Union[  # noqa: UP007  (a runtime alias used in isinstance-free matching and the codec)
    Fill,
    OrderAccepted,
    OrderRejected,
    OrderCanceled,
    MarkPrice,
    FundingPaid,
    PositionVanished,
    PositionHeld,
    ReversalSignal,
    CloseRequested,
]
EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in get_args(Event)}


# ---------------------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class PlaceEntry:
    client_id: str
    symbol: str
    side: Side
    quantity: Decimal

    def request(self) -> OrderRequest:
        return OrderRequest(self.symbol, self.side, OrderType.MARKET, self.quantity, self.client_id)


@dataclass(frozen=True, slots=True)
class PlaceStop:
    """A STOP_MARKET algo order on the mark price; closePosition when `quantity` is None, else reduce-only.

    Price protection is off: a stop must fire even when mark and last price disagree.
    """

    client_id: str
    symbol: str
    side: Side
    trigger: Decimal
    quantity: Decimal | None

    def request(self) -> AlgoOrderRequest:
        return AlgoOrderRequest(
            symbol=self.symbol,
            side=self.side,
            type=OrderType.STOP_MARKET,
            trigger_price=self.trigger,
            client_algo_id=self.client_id,
            quantity=self.quantity,
            close_position=self.quantity is None,
            reduce_only=self.quantity is not None,
            working_type=WorkingType.MARK_PRICE,
            price_protect=False,
        )


@dataclass(frozen=True, slots=True)
class PlaceTakeProfit:
    client_id: str
    symbol: str
    side: Side
    leg: Literal["T1", "T2"]
    trigger: Decimal
    quantity: Decimal

    def request(self) -> AlgoOrderRequest:
        return AlgoOrderRequest(
            symbol=self.symbol,
            side=self.side,
            type=OrderType.TAKE_PROFIT_MARKET,
            trigger_price=self.trigger,
            client_algo_id=self.client_id,
            quantity=self.quantity,
            reduce_only=True,
            working_type=WorkingType.MARK_PRICE,
        )


@dataclass(frozen=True, slots=True)
class CancelOrder:
    client_id: str
    symbol: str
    algo: bool  # cancel through the Algo endpoint


@dataclass(frozen=True, slots=True)
class MarketClose:
    client_id: str
    symbol: str
    side: Side
    quantity: Decimal
    reason: ExitReason
    reduce_only: bool = True

    def request(self) -> OrderRequest:
        return OrderRequest(
            self.symbol, self.side, OrderType.MARKET, self.quantity, self.client_id, reduce_only=self.reduce_only
        )


@dataclass(frozen=True, slots=True)
class Notify:
    key: str  # the outbox's dedupe key
    note: Notification


@dataclass(frozen=True, slots=True)
class RecordFill:
    key: str
    leg: str  # E, S1, T1, ..., or LIQ / EXT for fills that are not ours
    role: str
    fill: Fill


@dataclass(frozen=True, slots=True)
class RecordResult:
    key: str
    result: ResultNote


@dataclass(frozen=True, slots=True)
class RecordAnomaly:
    """An event that cannot happen in this state: ignored, but kept for the audit trail."""

    key: str
    event: str
    detail: str


@dataclass(frozen=True, slots=True)
class RequestReconcile:
    """The exchange may disagree with this position: compare them now (positions, orders, fills)."""

    symbol: str
    reason: str


Action = (
    PlaceEntry
    | PlaceStop
    | PlaceTakeProfit
    | CancelOrder
    | MarketClose
    | Notify
    | RecordFill
    | RecordResult
    | RecordAnomaly
    | RequestReconcile
)


# ---------------------------------------------------------------------------------------------- entry points


def open_position(*, key: str, order: SizedOrder, policy: Policy, time_ms: int) -> tuple[Position, list[Action]]:
    """A new position for an approved entry, and the action that sends its market entry order."""
    cid = client_id(key, "E")
    entry = LegOrder("E", cid, Role.ENTRY, algo=False, state=OrderState.REQUESTED, qty=order.quantity)
    position = Position(
        key=key,
        symbol=order.symbol,
        direction=order.direction,
        policy=policy,
        requested_qty=order.quantity,
        leverage=order.leverage,
        strength=order.strength,
        band=order.band,
        opened_ms=time_ms,
        orders=(entry,),
    )
    return position, [PlaceEntry(cid, order.symbol, order.direction.entry_side, order.quantity)]


def adopt_position(
    *,
    key: str,
    symbol: str,
    direction: Direction,
    quantity: Decimal,
    entry_price: Decimal,
    leverage: int,
    policy: Policy,
    time_ms: int,
) -> tuple[Position, list[Action]]:
    """Take over a position found on the exchange without a record of ours, and protect it like any other."""
    if not (quantity > 0 and entry_price > 0):
        raise ValueError(f"cannot adopt {symbol}: quantity {quantity} and entry price {entry_price} must be positive")
    position = Position(
        key=key,
        symbol=symbol,
        direction=direction,
        policy=policy,
        requested_qty=quantity,
        leverage=leverage,
        strength=0.0,
        band=Band.NONE,
        opened_ms=time_ms,
        phase=Phase.PROTECTING,
        entry_qty=quantity,
        entry_value=quantity * entry_price,
        entry_final_qty=quantity,
        adopted=True,
    )
    out: list[Action] = []
    return _settle(position, time_ms, out), out


def transition(state: Position, event: Event) -> tuple[Position, list[Action]]:
    """Apply one event. Never raises for any event in any state; duplicates change nothing and emit nothing."""
    out: list[Action] = []
    match event:
        case Fill():
            new = _on_fill(state, event, out)
        case OrderAccepted():
            new = _on_accepted(state, event, out)
        case OrderRejected():
            new = _on_rejected(state, event, out)
        case OrderCanceled():
            new = _on_canceled(state, event, out)
        case MarkPrice():
            new = _on_mark(state, event, out)
        case FundingPaid():
            new = _on_funding(state, event, out)
        case PositionVanished():
            new = _on_vanished(state, event, out)
        case PositionHeld():
            new = _on_held(state, event)
        case ReversalSignal():
            new = _on_reversal(state, event, out)
        case CloseRequested():
            new = _on_close_requested(state, event)
    if new is not state:
        new = _settle(new, event.time_ms, out)
    return new, out


def open_risk(p: Position, *, mark: Decimal | None = None, reference: Decimal | None = None) -> Decimal:
    """What the position can still add to today's loss (the daily loss limit counts it before it happens).

    Filled: the loss of what is open, and of what a live entry may still fill, at its exchange stop (at the mark
    once the mark is beyond it; nothing once the stop locks in a gain). Not filled yet: the planned risk of the
    entry at `reference`, the price it was sized at (the mark if that is unknown). Closed or failed: nothing.
    """
    if p.is_terminal:
        return ZERO
    rules, plan, fee = p.policy.rules, p.policy.plan, p.policy.taker_fee_rate
    entry = p.entry_order
    unfilled = max(p.requested_qty - p.entry_qty, ZERO) if entry is not None and entry.state.live else ZERO
    if p.entry_qty > 0:
        stop = p.exchange_stop or stop_price_for(p.entry_price, plan.stop_pct, p.direction, rules)
        return loss_at_stop(p.direction, p.entry_price, max(p.open_qty, ZERO) + unfilled, stop, fee, mark)
    if unfilled == 0:
        return ZERO
    price = reference if reference is not None else mark
    if price is None or price <= 0:
        raise ValueError(f"{p.symbol}: the risk of a pending entry needs its reference price or a mark")
    return planned_risk(price, stop_price_for(price, plan.stop_pct, p.direction, rules), unfilled, fee)


# ---------------------------------------------------------------------------------------------- levels to watch


@dataclass(frozen=True, slots=True)
class ExitTrigger:
    """A stop or take-profit that may be working on the exchange, and the mark price that fires it."""

    client_id: str
    leg: str
    price: Decimal
    stop: bool  # a stop (fires against the position) or a take-profit (fires in its favour)


def exit_triggers(p: Position) -> tuple[ExitTrigger, ...]:
    """The position's live stops and take-profits: once the mark price reaches one, the exchange fires it and its
    fill follows within moments (a stream that stays silent then has stalled)."""
    if p.is_terminal:
        return ()
    return tuple(
        ExitTrigger(o.client_id, o.leg, o.trigger, o.role is Role.STOP)
        for o in p.orders
        if o.algo and o.state.live and o.trigger is not None
    )


def triggers_reached(triggers: tuple[ExitTrigger, ...], direction: Direction, mark: Decimal) -> tuple[ExitTrigger, ...]:
    """The triggers this mark price has reached (the exchange fires them on the same mark price)."""
    return tuple(
        t
        for t in triggers
        if (stop_crossed(t.price, mark, direction) if t.stop else target_reached(t.price, mark, direction))
    )


def awaiting_fills(p: Position | None, reached: tuple[ExitTrigger, ...]) -> tuple[ExitTrigger, ...]:
    """Those of `reached` (the mark reached them a while ago) that are still live in the position: no fill and no
    word of them came since. A closed position awaits nothing."""
    if p is None:
        return ()
    live = {t.client_id for t in exit_triggers(p)}
    return tuple(t for t in reached if t.client_id in live)


# ---------------------------------------------------------------------------------------------- small helpers


def _put(p: Position, order: LegOrder) -> Position:
    return replace(p, orders=tuple(order if o.client_id == order.client_id else o for o in p.orders))


def _anomaly(p: Position, out: list[Action], event: Event, detail: str) -> Position:
    out.append(RecordAnomaly(p.key, type(event).__name__, detail))
    return p


def _notify(p: Position, out: list[Action], suffix: str, note: Notification) -> Position:
    key = f"{p.key}:{suffix}"
    if key in p.notified:
        return p
    out.append(Notify(key, note))
    return replace(p, notified=p.notified | {key})


def _alert(
    p: Position,
    out: list[Action],
    suffix: str,
    title: Text,
    detail: Text | None = None,
    severity: Literal["warning", "critical"] = "warning",
) -> Position:
    return _notify(p, out, f"alert:{suffix}", AlertNote(title, () if detail is None else (detail,), p.symbol, severity))


def _cancel(p: Position, order: LegOrder, out: list[Action]) -> Position:
    out.append(CancelOrder(order.client_id, p.symbol, order.algo))
    return _put(p, replace(order, state=OrderState.CANCELING, cancel_sent=True))


def _start_close(p: Position, reason: ExitReason, why: Text) -> Position:
    if p.close_reason is not None:
        return p
    return replace(p, close_reason=reason, close_why=why)


def _exceeds_position(p: Position, qty: Decimal) -> bool:
    """An exit larger than everything the entry can have filled: impossible with reduce-only orders."""
    if p.entry_final_qty is not None:
        cap: Decimal | None = p.entry_final_qty
    else:
        cap = p.entry_qty if p.entry_done or p.phase is Phase.FAILED else None
    return cap is not None and p.exit_qty + qty > cap


def _finite(*values: Decimal | None) -> bool:
    """Exchange numbers can be anything; a NaN would make every later comparison raise."""
    return all(v is None or v.is_finite() for v in values)


def _reason_text(code: int | None, message: str) -> str:
    return f"[{code}] {message}" if code is not None else (message or "no reason given")


# ---------------------------------------------------------------------------------------------- event handlers


def _on_fill(p: Position, e: Fill, out: list[Action]) -> Position:
    seen = f"t:{e.trade_id}"
    if seen in p.seen:
        return p
    if not (_finite(e.qty, e.price, e.fee, e.order_filled_qty) and e.qty > 0 and e.price > 0):
        return _anomaly(p, out, e, f"unusable fill qty={e.qty} price={e.price} fee={e.fee}")
    if p.phase is Phase.CLOSED:
        out.append(RequestReconcile(p.symbol, f"fill {e.trade_id} after the position closed"))
        return _anomaly(p, out, e, f"fill {e.trade_id} of {e.client_id} after the position closed")
    order = p.order(e.client_id)
    if order is None:
        if e.liquidation or not is_own_client_id(e.client_id):
            return _on_foreign_fill(p, e, out)
        return _anomaly(p, out, e, f"fill for {e.client_id}, which this position never placed")
    is_entry = order.role is Role.ENTRY
    if e.side is not (p.direction.entry_side if is_entry else p.direction.exit_side):
        return _anomaly(p, out, e, f"{e.side} fill for {order.leg}")
    if not is_entry and _exceeds_position(p, e.qty):
        out.append(RequestReconcile(p.symbol, f"exit fill {e.trade_id} exceeds the position"))
        return _anomaly(p, out, e, f"exit fill {e.trade_id} of {e.qty} exceeds the position")

    filled = order.filled_qty + e.qty
    if e.order_done or (order.qty is not None and filled >= order.qty):
        state = OrderState.FILLED
    elif order.state is OrderState.REQUESTED:
        state = OrderState.ACTIVE
    else:
        state = order.state
    value = e.qty * e.price
    order = replace(
        order,
        state=state,
        filled_qty=filled,
        filled_value=order.filled_value + value,
        reported_qty=max(order.reported_qty, e.order_filled_qty or ZERO),
        fees=order.fees + e.fee,
        acknowledged=True,
    )
    p = replace(_put(p, order), seen=p.seen | {seen}, fees=p.fees + e.fee)
    if is_entry:
        p = replace(p, entry_qty=p.entry_qty + e.qty, entry_value=p.entry_value + value)
        if e.order_done:
            p = replace(p, entry_final_qty=e.order_filled_qty)
        if p.phase is Phase.FAILED:
            p = replace(p, closed_ms=None)
            p = _alert(p, out, "late_entry", text("lifecycle.late_entry"), None, "critical")
    else:
        p = replace(p, exit_qty=p.exit_qty + e.qty, exit_value=p.exit_value + value)
        p = _confirm_supervision(p, order, out)
    out.append(RecordFill(p.key, order.leg, order.role.value, e))
    return p


def _on_foreign_fill(p: Position, e: Fill, out: list[Action]) -> Position:
    """A liquidation, ADL or manual fill on the exchange: it reduces the position whatever we think of it.

    Like our own exits it may arrive before the entry fills it reduces (a replay after a stream gap), so it only
    has to fit what the entry can have filled."""
    if e.side is not p.direction.exit_side or _exceeds_position(p, e.qty):
        out.append(RequestReconcile(p.symbol, f"unexpected fill {e.trade_id} by {e.client_id}"))
        return _anomaly(p, out, e, f"{e.side} fill {e.trade_id} by {e.client_id} does not fit the position")
    value = e.qty * e.price
    p = replace(
        p,
        seen=p.seen | {f"t:{e.trade_id}"},
        fees=p.fees + e.fee,
        exit_qty=p.exit_qty + e.qty,
        exit_value=p.exit_value + value,
    )
    closes_it = p.entry_done and p.open_qty <= 0  # then the result message tells it; no second message
    if e.liquidation:
        p = replace(p, liquidation_qty=p.liquidation_qty + e.qty)
        out.append(RecordFill(p.key, "LIQ", "liquidation", e))
        if closes_it:
            return p
        fill = text("lifecycle.fill", qty=e.qty, price=e.price)
        return _alert(p, out, "liquidation", text("lifecycle.partly_liquidated"), fill, "critical")
    p = replace(p, external_qty=p.external_qty + e.qty)
    out.append(RecordFill(p.key, "EXT", "external", e))
    if closes_it:
        return replace(p, close_why=p.close_why or text("lifecycle.closed_by", client_id=e.client_id))
    fill = text("lifecycle.fill_by", qty=e.qty, price=e.price, client_id=e.client_id)
    return _alert(p, out, "external", text("lifecycle.reduced_outside"), fill)


def _on_accepted(p: Position, e: OrderAccepted, out: list[Action]) -> Position:
    order = p.order(e.client_id)
    if order is None:
        return _anomaly(p, out, e, f"acknowledgement for unknown order {e.client_id}")
    if order.state is OrderState.REQUESTED:
        return _confirm_supervision(_put(p, replace(order, state=OrderState.ACTIVE, acknowledged=True)), order, out)
    if order.acknowledged:
        return p
    if order.state is OrderState.CANCELING:
        return _put(p, replace(order, acknowledged=True))
    if order.state is OrderState.CANCELED and order.cancel_sent:
        # Our cancel overtook the placement ("unknown order"), then the placement landed: cancel it again.
        return _cancel(p, replace(order, acknowledged=True), out)
    if order.state is OrderState.REJECTED:
        out.append(RequestReconcile(p.symbol, f"{order.leg} acknowledged after it was rejected"))
        return _anomaly(p, out, e, f"{order.leg} acknowledged after it was rejected")
    return p


def _on_rejected(p: Position, e: OrderRejected, out: list[Action]) -> Position:
    order = p.order(e.client_id)
    if order is None:
        return _anomaly(p, out, e, f"rejection of unknown order {e.client_id}")
    if order.state in (OrderState.REJECTED, OrderState.FILLED, OrderState.CANCELED):
        return p
    wanted = order.state.working
    p = _put(p, replace(order, state=OrderState.REJECTED))
    reason = _reason_text(e.code, e.message)
    if order.role is Role.ENTRY:
        return replace(p, failure=text("lifecycle.entry_rejected", reason=data(reason)))
    if not wanted or p.is_terminal:
        return p
    if order.role is Role.STOP:
        p = _start_close(p, ExitReason.STOP_FAILED, text("lifecycle.stop_failed", leg=order.leg, reason=data(reason)))
        title = text("lifecycle.stop_rejected")
        return _alert(p, out, f"stop_rejected:{order.leg}", title, data(reason), "critical")
    if order.role is Role.CLOSE:
        if e.code == REDUCE_ONLY_REJECTED:
            # Nothing to reduce: most likely a stop or target closed it and the fill is still on its way. The
            # exchange is asked first; the close is resumed only if it still holds the position (PositionHeld).
            out.append(RequestReconcile(p.symbol, f"market close {order.leg} reduced nothing: {reason}"))
            return replace(p, close_paused=True)
        out.append(RequestReconcile(p.symbol, f"market close {order.leg} rejected: {reason}"))
        return p
    if order.algo and e.code == -2021 and p.close_reason is None:
        return _take_profit_at_market(p, order, out)
    return _alert(p, out, f"tp_rejected:{order.leg}", text("lifecycle.tp_rejected", leg=order.leg), data(reason))


def _take_profit_at_market(p: Position, target: LegOrder, out: list[Action]) -> Position:
    """The target's price is already passed (-2021): take that profit now with a reduce-only market order."""
    leg = f"{target.leg}M"
    qty = (target.qty or ZERO) - target.filled_qty
    if p.order(client_id(p.key, leg)) is not None or qty <= 0:
        return p
    cid = client_id(p.key, leg)
    reason = ExitReason.TP1 if target.role is Role.TP1 else ExitReason.TP2
    out.append(MarketClose(cid, p.symbol, p.direction.exit_side, qty, reason))
    order = LegOrder(leg, cid, target.role, algo=False, state=OrderState.REQUESTED, qty=qty)
    return replace(p, orders=(*p.orders, order))


def _on_canceled(p: Position, e: OrderCanceled, out: list[Action]) -> Position:
    order = p.order(e.client_id)
    if order is None or not _finite(e.filled_qty):
        return _anomaly(p, out, e, f"cancellation of unknown order {e.client_id} (filled {e.filled_qty})")
    if not order.state.live:
        return p
    expected = order.state is OrderState.CANCELING
    p = _put(p, replace(order, state=OrderState.CANCELED))
    if order.role is Role.ENTRY:
        if e.filled_qty is not None:
            p = replace(p, entry_final_qty=e.filled_qty)
        if p.failure is not None or p.entry_qty > 0:
            return p
        return replace(p, failure=text("lifecycle.entry_expired" if e.expired else "lifecycle.entry_canceled_unfilled"))
    if expected or p.is_terminal or p.close_reason is not None:
        return p
    if order.role is Role.STOP:
        title = text("lifecycle.stop_expired" if e.expired else "lifecycle.stop_canceled", leg=order.leg)
        return _alert(p, out, f"stop_canceled:{order.leg}", title)
    if order.role in (Role.TP1, Role.TP2) and not e.expired:
        return _alert(p, out, f"tp_canceled:{order.leg}", text("lifecycle.tp_canceled", leg=order.leg))
    # A target that expired was ended by the exchange itself (a reduce-only order outliving the position it
    # reduced, e.g. after the stop filled): the fills tell what happened; nobody needs to act on it.
    return p


def _on_mark(p: Position, e: MarkPrice, out: list[Action]) -> Position:
    if not (_finite(e.price) and e.price > 0):
        return _anomaly(p, out, e, f"unusable mark price {e.price}")
    if p.is_terminal or p.stop_price is None or p.open_qty <= 0 or p.close_reason is not None:
        return p
    if not stop_crossed(p.stop_price, e.price, p.direction):
        return p if p.stop_crossed_ms is None else replace(p, stop_crossed_ms=None)
    if any(o.role is Role.STOP and o.state.live and o.filled_qty > 0 for o in p.orders):
        return p  # the exchange stop is executing
    if p.stop_crossed_ms is None:
        p = replace(p, stop_crossed_ms=e.time_ms)
    assert p.stop_crossed_ms is not None
    waited = e.time_ms - p.stop_crossed_ms
    if waited < p.policy.supervision_grace_ms:
        return p
    why = text("lifecycle.stop_missed", price=e.price, stop=str(p.stop_price), seconds=f"{waited / 1000:.1f}")
    return _start_close(p, ExitReason.SUPERVISION, why)  # told once the exchange takes the close


def _confirm_supervision(p: Position, order: LegOrder, out: list[Action]) -> Position:
    """A supervision close the exchange took (acknowledged or filled): the position was there, so the exchange
    stop really did not fire. Told only now: a close refused as reducing nothing (-2022) means it did fire."""
    if order.role is not Role.CLOSE or p.close_reason is not ExitReason.SUPERVISION:
        return p
    return _alert(p, out, "supervision", text("lifecycle.supervision"), p.close_why, "critical")


def _on_funding(p: Position, e: FundingPaid, out: list[Action]) -> Position:
    seen = f"f:{e.ref}"
    if seen in p.seen:
        return p
    if (p.entry_qty <= 0 and p.entry_done) or not _finite(e.amount):
        return _anomaly(p, out, e, f"funding {e.amount} without a position")
    return replace(p, funding=p.funding + e.amount, seen=p.seen | {seen})


def _on_vanished(p: Position, e: PositionVanished, out: list[Action]) -> Position:
    if p.is_terminal or p.vanished:
        return p
    if p.entry_qty <= 0 or not _finite(e.price):
        return _anomaly(p, out, e, "no position to vanish: the entry has not filled")
    remaining = max(p.open_qty, ZERO)
    why = text("lifecycle.vanished_detail", qty=remaining)
    p = replace(p, vanished=True, close_why=why)
    if remaining > 0:
        price = e.price if e.price is not None and e.price > 0 else p.entry_price
        p = replace(
            p,
            exit_qty=p.exit_qty + remaining,
            exit_value=p.exit_value + remaining * price,
            external_qty=p.external_qty + remaining,
        )
    # Its exit and result are estimates, and the cause (liquidation, ADL, a person, an exchange that lost its
    # books) is unknown here: a person must look at the account.
    return _alert(p, out, "vanished", text("lifecycle.vanished"), why, "critical")


def _on_held(p: Position, e: PositionHeld) -> Position:
    """The exchange still holds it after the fills were replayed: the paused close goes ahead."""
    if not p.close_paused or p.is_terminal:
        return p
    return replace(p, close_paused=False)


def _on_reversal(p: Position, e: ReversalSignal, out: list[Action]) -> Position:
    if p.last_reversal_bar_ms is not None and e.bar_open_time_ms <= p.last_reversal_bar_ms:
        return p
    if not (_finite(e.mark_price) and e.mark_price > 0):
        return _anomaly(p, out, e, f"unusable mark price {e.mark_price}")
    p = replace(p, last_reversal_bar_ms=e.bar_open_time_ms)
    if p.is_terminal or p.open_qty <= 0 or p.close_reason is not None or p.stop_price is None:
        return p
    response = reversal_response(
        p.direction,
        e.direction,
        e.strength,
        on_reversal=p.policy.on_reversal,
        reversal_score=p.policy.reversal_score,
    )
    if response is ReversalResponse.TIGHTEN:
        return replace(p, stop_price=reversal_stop(p.stop_price, e.mark_price, p.direction, p.policy.rules))
    if response is ReversalResponse.CLOSE:
        why = text("lifecycle.reversal", direction=e.direction.value, strength=f"{e.strength:.0f}")
        return _start_close(p, ExitReason.REVERSAL, why)
    return p


def _on_close_requested(p: Position, e: CloseRequested) -> Position:
    """Kept even when the entry looks failed: should a late fill prove otherwise, it is closed at once.
    After the market closes were given up on, a new request starts a new round of attempts."""
    if p.phase is Phase.CLOSED or (p.close_requested_ms is not None and e.time_ms <= p.close_requested_ms):
        return p
    p = replace(p, close_requested_ms=e.time_ms)
    if p.needs_attention:
        return replace(p, needs_attention=False, close_round=p.close_no)
    return _start_close(p, ExitReason.MANUAL, data(e.reason))


# ---------------------------------------------------------------------------------------------- settling


def _settle(p: Position, time_ms: int, out: list[Action]) -> Position:
    """Bring the orders in line with what the position needs now; emit only what is missing."""
    if p.phase is Phase.CLOSED:
        return p
    entry = p.entry_order
    if p.entry_qty <= 0:
        if p.phase is Phase.FAILED:
            return p
        fills_expected = p.entry_final_qty is not None and p.entry_final_qty > 0  # reported, not yet seen
        if entry is not None and (entry.state.live or fills_expected):
            if p.close_reason is not None and entry.state.working:
                p = _cancel(p, entry, out)
            return replace(p, phase=Phase.PENDING_ENTRY)
        p = replace(p, phase=Phase.FAILED, closed_ms=time_ms)
        title = text("lifecycle.entry_canceled" if p.close_reason is ExitReason.MANUAL else "lifecycle.entry_failed")
        return _notify(p, out, "failed", AlertNote(title, () if p.failure is None else (p.failure,), p.symbol))
    if p.entry_done and p.open_qty <= 0:
        return _close_out(p, time_ms, out)
    if p.close_reason is not None and entry is not None and entry.state.working:
        p = _cancel(p, entry, out)
    if p.stop_price is None:
        p = replace(p, stop_price=stop_price_for(p.entry_price, p.policy.plan.stop_pct, p.direction, p.policy.rules))
    if p.open_qty > 0:
        if p.close_reason is not None:
            p = _ensure_close(p, out)
        else:
            p = _ensure_breakeven(p, out)
            p = _ensure_stop(p, out)
            p = _ensure_targets(p, out)
    return replace(p, phase=_phase_of(p))


def _ensure_close(p: Position, out: list[Action]) -> Position:
    closes = [o for o in p.orders if o.role is Role.CLOSE]
    if p.close_paused or any(o.state.live for o in closes):
        return p
    this_round = closes[p.close_round :]
    if sum(1 for o in this_round if o.state is OrderState.REJECTED) >= p.policy.max_close_attempts:
        if p.needs_attention:
            return p
        out.append(RequestReconcile(p.symbol, "market close keeps failing"))
        p = replace(p, needs_attention=True)
        return _alert(
            p,
            out,
            f"close_failed:{p.close_no}",
            text("lifecycle.close_failed"),
            text("lifecycle.close_failed_detail", attempts=p.policy.max_close_attempts, qty=p.open_qty),
            "critical",
        )
    number = p.close_no + 1
    cid = client_id(p.key, f"X{number}")
    reason = p.close_reason or ExitReason.MANUAL
    out.append(MarketClose(cid, p.symbol, p.direction.exit_side, p.open_qty, reason))
    order = LegOrder(f"X{number}", cid, Role.CLOSE, algo=False, state=OrderState.REQUESTED, qty=p.open_qty)
    return replace(p, orders=(*p.orders, order), close_no=number)


def _ensure_stop(p: Position, out: list[Action]) -> Position:
    desired = p.stop_price
    assert desired is not None
    stops = [o for o in p.orders if o.role is Role.STOP]
    working = [o for o in stops if o.state.working]
    good = [o for o in working if o.trigger == desired and (o.qty is None or o.qty >= p.open_qty)]
    if not good:
        close_position = not any(o.qty is None and o.state.live for o in stops)
        number = p.stop_no + 1
        leg = f"S{number}"
        cid = client_id(p.key, leg)
        qty = None if close_position else p.open_qty
        out.append(PlaceStop(cid, p.symbol, p.direction.exit_side, desired, qty))
        order = LegOrder(leg, cid, Role.STOP, algo=True, state=OrderState.REQUESTED, trigger=desired, qty=qty)
        return replace(p, orders=(*p.orders, order), stop_no=number)
    keeper = good[-1]
    if keeper.state is OrderState.ACTIVE:
        for old in working:
            if old.client_id != keeper.client_id:
                p = _cancel(p, old, out)
    return p


def _place_target(p: Position, out: list[Action], leg: Literal["T1", "T2"], trigger: Decimal, qty: Decimal) -> Position:
    cid = client_id(p.key, leg)
    role = Role.TP1 if leg == "T1" else Role.TP2
    out.append(PlaceTakeProfit(cid, p.symbol, p.direction.exit_side, leg, trigger, qty))
    order = LegOrder(leg, cid, role, algo=True, state=OrderState.REQUESTED, trigger=trigger, qty=qty)
    return replace(p, orders=(*p.orders, order))


def _ensure_targets(p: Position, out: list[Action]) -> Position:
    if p.levels is not None or not p.entry_done:
        return p
    assert p.stop_price is not None
    levels = replace(levels_for(p.policy.plan, p.entry_price, p.entry_qty, p.policy.rules), stop=p.stop_price)
    p = replace(p, levels=levels)
    if levels.tp1_qty > 0 and levels.tp1_qty >= min_order_qty(p.policy.rules):
        p = _place_target(p, out, "T1", levels.tp1, levels.tp1_qty)
        if levels.tp2_qty > 0:
            p = _place_target(p, out, "T2", levels.tp2, levels.tp2_qty)
    else:
        p = _alert(
            p,
            out,
            "no_targets",
            text("lifecycle.no_targets"),
            text("lifecycle.no_targets_detail", qty=p.entry_qty),
        )
    note = EntryNote(
        symbol=p.symbol,
        direction=p.direction,
        quantity=p.entry_qty,
        entry_price=p.entry_price,
        leverage=p.leverage,
        strength=p.strength,
        band=p.band,
        levels=levels,
        fees=p.fees,
    )
    return _notify(p, out, "entry", note)


def _ensure_breakeven(p: Position, out: list[Action]) -> Position:
    """After TP1: the stop for the rest moves to where closing it still covers every cost paid so far."""
    if p.levels is None or p.breakeven_set or p.levels.single_target or not p.tp1_done:
        return p
    assert p.stop_price is not None
    costs = p.fees + max(-p.funding, ZERO)
    rules = p.policy.rules
    breakeven = breakeven_stop_price(p.entry_price, p.direction, p.open_qty, costs, p.policy.taker_fee_rate, rules)
    p = replace(p, breakeven_set=True, stop_price=tighten_stop(p.stop_price, breakeven, p.direction))
    targets = [o for o in p.orders if o.role is Role.TP1]
    qty = sum((o.filled_qty for o in targets), ZERO)
    value = sum((o.filled_value for o in targets), ZERO)
    leg_fees = sum((o.fees for o in targets), ZERO)
    price = value / qty
    assert p.stop_price is not None
    note = TakeProfitNote(
        symbol=p.symbol,
        direction=p.direction,
        quantity=qty,
        price=price,
        entry_price=p.entry_price,
        pnl=p.direction.sign * (price - p.entry_price) * qty - leg_fees,
        remaining_qty=p.open_qty,
        new_stop=p.stop_price,
    )
    return _notify(p, out, "tp1", note)


def _exit_reason(p: Position) -> ExitReason:
    """How it ended, from which exits filled (order-independent, so replays agree)."""

    def filled(role: Role) -> bool:
        return any(o.role is role and o.filled_qty > 0 for o in p.orders)

    if p.liquidation_qty > 0:
        return ExitReason.LIQUIDATION
    if p.vanished:
        return ExitReason.EXTERNAL
    if filled(Role.CLOSE):
        return p.close_reason or ExitReason.MANUAL
    if filled(Role.STOP):
        return ExitReason.BREAKEVEN_STOP if p.tp1_done else ExitReason.STOP
    if filled(Role.TP2):
        return ExitReason.TP2
    if filled(Role.TP1):
        return ExitReason.TP1
    return ExitReason.EXTERNAL


def _close_out(p: Position, time_ms: int, out: list[Action]) -> Position:
    for order in p.orders:
        if order.state.working:
            p = _cancel(p, order, out)
    if p.open_qty < 0:
        out.append(RecordAnomaly(p.key, "close", f"exits exceed the entry by {-p.open_qty}"))
    reason = _exit_reason(p)
    p = replace(p, phase=Phase.CLOSED, exit_reason=reason, closed_ms=time_ms, stop_crossed_ms=None)
    result = ResultNote(
        symbol=p.symbol,
        direction=p.direction,
        reason=reason,
        quantity=p.entry_qty,
        entry_price=p.entry_price,
        exit_price=p.exit_price,
        gross_pnl=p.realized_pnl,
        fees=p.fees,
        funding=p.funding,
        net_pnl=p.net_pnl,
        leverage=p.leverage,
        opened_ms=p.opened_ms,
        closed_ms=time_ms,
        estimated=p.vanished,
        detail=p.close_why,
    )
    out.append(RecordResult(p.key, result))
    return _notify(p, out, "result", result)


def _phase_of(p: Position) -> Phase:
    stop_executing = any(o.role is Role.STOP and o.filled_qty > 0 for o in p.orders)
    if p.close_reason is not None or stop_executing or p.liquidation_qty > 0:
        return Phase.CLOSING
    if p.breakeven_set:
        return Phase.TP1_DONE
    if p.entry_done and p.levels is not None and _protection_acknowledged(p):
        return Phase.OPEN
    return Phase.PROTECTING


def _protection_acknowledged(p: Position) -> bool:
    stop = next(
        (o for o in reversed(p.orders) if o.role is Role.STOP and o.state.working and o.trigger == p.stop_price),
        None,
    )
    targets_pending = any(o.role in (Role.TP1, Role.TP2) and o.state is OrderState.REQUESTED for o in p.orders)
    return stop is not None and stop.state is OrderState.ACTIVE and not targets_pending


# ---------------------------------------------------------------------------------------------- persistence


def event_to_jsonable(event: Event) -> dict[str, Any]:
    """An event with its type name, for the event log (replayable with `event_from_jsonable`)."""
    return {"type": type(event).__name__, **to_jsonable(event)}


def event_from_jsonable(data: dict[str, Any]) -> Event:
    fields = dict(data)
    cls = EVENT_TYPES[fields.pop("type")]
    event: Event = from_jsonable(cls, fields)
    return event
