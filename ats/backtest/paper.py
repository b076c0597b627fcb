"""The exchange of a backtest: fills the lifecycle's orders against bars, and feeds the fills back to it.

Market orders (entries and closes) fill at the open of the next bar plus slippage. Stops and take-profits rest
until a bar reaches their trigger and then fill at the trigger plus slippage, or at the open when the bar opened
beyond it. Where one bar reaches several, the stop fires first, and an order placed while a bar is being replayed
(the breakeven stop after TP1) is checked against the rest of that same bar: without finer bars the order of the
prices inside a bar is unknown, and the backtest assumes the worst. With 1m/5m bars the hour is replayed through
them, so only what happens within one of those is assumed.

Triggers read trade prices (the history's klines); the live stops read the mark price. Liquidation is not
modelled: the sizing keeps leverage below what a stop's distance would liquidate (ats.risk.liquidation_safe_leverage).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from ats.domain import Side, parse_client_id
from ats.journal import MemoryJournal
from ats.lifecycle import (
    Action,
    CancelOrder,
    Event,
    Fill,
    MarketClose,
    OrderAccepted,
    OrderCanceled,
    PlaceEntry,
    PlaceStop,
    PlaceTakeProfit,
    RequestReconcile,
)

ZERO = Decimal(0)
ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Resting:
    """A stop or take-profit waiting on the exchange."""

    key: str
    client_id: str
    stop: bool  # True: a stop (fires first); False: a take-profit
    side: Side
    trigger: Decimal
    qty: Decimal | None  # None: closePosition (whatever is open when it fires)

    def reached(self, high: Decimal, low: Decimal) -> bool:
        """Whether a bar from `low` to `high` reaches the trigger (a SELL stop or BUY target below, and so on)."""
        below = self.stop == (self.side is Side.SELL)  # SELL stop and BUY take-profit fire when the price falls
        return low <= self.trigger if below else high >= self.trigger

    def price(self, open_: Decimal) -> Decimal:
        """Where it executes before slippage: the trigger, or the open when the bar opened beyond it."""
        below = self.stop == (self.side is Side.SELL)
        return min(open_, self.trigger) if below else max(open_, self.trigger)


@dataclass(frozen=True, slots=True)
class MarketOrder:
    key: str
    client_id: str
    side: Side
    qty: Decimal
    reduce_only: bool


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of prices as Decimals (exact from the stored floats' shortest representation)."""

    open_ms: int
    close_ms: int
    open: Decimal
    high: Decimal
    low: Decimal


class PaperExchange:
    """Orders of every symbol, and the journal whose positions they belong to."""

    def __init__(self, journal: MemoryJournal, *, taker_fee_rate: Decimal, slippage: Decimal) -> None:
        if not ZERO <= slippage < ONE:
            raise ValueError("slippage is a fraction of the price in [0, 1)")
        self.journal = journal
        self.taker_fee_rate = taker_fee_rate
        self.slippage = slippage
        self.reconcile_requests: list[RequestReconcile] = []
        self._resting: dict[str, list[Resting]] = {}
        self._market: dict[str, list[MarketOrder]] = {}
        self._symbol_of: dict[str, str] = {}  # position key -> symbol
        self._trade_id = 0

    def symbols_with_orders(self) -> set[str]:
        return {s for s, orders in self._resting.items() if orders} | {
            s for s, orders in self._market.items() if orders
        }

    def has_orders(self, symbol: str) -> bool:
        return bool(self._resting.get(symbol) or self._market.get(symbol))

    def perform(self, actions: Iterable[Action], time_ms: int) -> None:
        """Carry out the actions, and those their outcomes lead to, until nothing is left to send."""
        queue: deque[Action] = deque(actions)
        while queue:
            for key, event in self._act(queue.popleft(), time_ms):
                _, more = self.journal.apply(key, event, source="backtest")
                queue.extend(more)

    def on_bar(self, symbol: str, bars: Sequence[Bar]) -> None:
        """Replay one bar of the trading interval (or the finer bars that make it up, in order)."""
        if not bars:
            return
        self._fill_market(symbol, bars[0])
        for bar in bars:
            self._fill_triggers(symbol, bar)

    # ------------------------------------------------------------------------------------------ internals

    def _act(self, action: Action, time_ms: int) -> list[tuple[str, Event]]:
        match action:
            case PlaceEntry() | MarketClose():
                key = self._key(action.client_id)
                self._symbol_of[key] = action.symbol
                reduce_only = isinstance(action, MarketClose) and action.reduce_only
                order = MarketOrder(key, action.client_id, action.side, action.quantity, reduce_only)
                self._market.setdefault(action.symbol, []).append(order)
                return []
            case PlaceStop() | PlaceTakeProfit():
                key = self._key(action.client_id)
                self._symbol_of[key] = action.symbol
                resting = Resting(
                    key,
                    action.client_id,
                    isinstance(action, PlaceStop),
                    action.side,
                    action.trigger,
                    action.quantity,
                )
                self._resting.setdefault(action.symbol, []).append(resting)
                return [(key, OrderAccepted(action.client_id, time_ms))]
            case CancelOrder():
                orders = self._resting.get(action.symbol, [])
                found = [o for o in orders if o.client_id == action.client_id]
                if not found:
                    return []  # already filled (its fill is known) or never placed: nothing to report
                self._resting[action.symbol] = [o for o in orders if o.client_id != action.client_id]
                return [(found[0].key, OrderCanceled(action.client_id, time_ms, filled_qty=ZERO))]
            case RequestReconcile():
                self.reconcile_requests.append(action)
                return []
            case _:
                return []  # records and notifications: the journal keeps them

    def _key(self, client_id: str) -> str:
        parsed = parse_client_id(client_id)
        if parsed is None:
            raise ValueError(f"not one of our client ids: {client_id}")
        return parsed[0]

    def _open_qty(self, key: str) -> Decimal:
        position = self.journal.position(key)
        return ZERO if position is None else max(position.open_qty, ZERO)

    def _slipped(self, price: Decimal, side: Side) -> Decimal:
        return price * (ONE + self.slippage) if side is Side.BUY else price * (ONE - self.slippage)

    def _fill(self, key: str, client_id: str, side: Side, qty: Decimal, price: Decimal, time_ms: int) -> None:
        self._trade_id += 1
        executed = self._slipped(price, side)
        fee = qty * executed * self.taker_fee_rate
        fill = Fill(client_id, self._trade_id, side, qty, executed, fee, time_ms, order_done=True, order_filled_qty=qty)
        _, actions = self.journal.apply(key, fill, source="backtest")
        self.perform(actions, time_ms)

    def _fill_market(self, symbol: str, bar: Bar) -> None:
        orders = self._market.pop(symbol, [])
        for order in orders:
            qty = min(order.qty, self._open_qty(order.key)) if order.reduce_only else order.qty
            if qty > 0:
                self._fill(order.key, order.client_id, order.side, qty, bar.open, bar.open_ms)
            else:
                self.perform(
                    self.journal.apply(
                        order.key, OrderCanceled(order.client_id, bar.open_ms, True, ZERO), source="backtest"
                    )[1],
                    bar.open_ms,
                )

    def _fill_triggers(self, symbol: str, bar: Bar) -> None:
        """Fire what the bar reaches, stops first, until nothing more fires (a fill may place a new stop).

        An order that rested at the bar's open fills at the open when the bar opened beyond its trigger; one placed
        during the bar (after a fill in it) can only have been reached later, at its trigger.
        """
        at_open = {o.client_id for o in self._resting.get(symbol, [])}
        while True:
            orders = self._resting.get(symbol, [])
            reached = [o for o in orders if o.reached(bar.high, bar.low)]
            if not reached:
                return
            order = next((o for o in reached if o.stop), reached[0])
            self._resting[symbol] = [o for o in orders if o.client_id != order.client_id]
            open_qty = self._open_qty(order.key)
            qty = open_qty if order.qty is None else min(order.qty, open_qty)
            price = order.price(bar.open) if order.client_id in at_open else order.trigger
            if qty > 0:
                self._fill(order.key, order.client_id, order.side, qty, price, bar.close_ms)
            else:  # nothing left to reduce: the exchange expires a reduce-only order
                event = OrderCanceled(order.client_id, bar.close_ms, True, ZERO)
                self.perform(self.journal.apply(order.key, event, source="backtest")[1], bar.close_ms)
