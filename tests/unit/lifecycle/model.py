"""A model of the exchange side of one position, for property tests of the lifecycle.

It follows the rules that matter for protection: market orders fill at the current price, stop and take-profit
orders trigger on the price (STOP_MARKET sell at <= trigger, TAKE_PROFIT_MARKET sell at >=, mirrored for buys),
reduce-only and closePosition orders never reduce below zero, a conditional order whose trigger is already passed
is rejected (-2021), and a second closePosition stop in one direction is rejected (-4130). Every outcome the real
exchange could choose (partial fills, expiries, rejections, the order in which racing orders fire) is drawn by
hypothesis, and the resulting events wait in a queue from which hypothesis delivers them in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal as D

from hypothesis import strategies as st

from ats.domain import Direction
from ats.lifecycle import (
    Action,
    CancelOrder,
    Event,
    Fill,
    FundingPaid,
    MarketClose,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    PlaceEntry,
    PlaceStop,
    PlaceTakeProfit,
)
from tests.unit.lifecycle.harness import FEE_RATE, RULES

TICK = RULES.tick_size
STEP = RULES.step_size


@dataclass
class ModelOrder:
    client_id: str
    kind: str  # entry, stop, tp, market
    qty: D | None  # None: closePosition
    trigger: D | None = None
    filled: D = D(0)
    open: bool = True


class ModelExchange:
    def __init__(self, data: st.DataObject, direction: Direction, price: D = D("100.00")) -> None:
        self.data = data
        self.direction = direction
        self.price = price
        self.position = D(0)  # held in the position's direction, never negative
        self.orders: dict[str, ModelOrder] = {}
        self.queue: list[Event] = []
        self.now = 1_000
        self.trade_id = 0
        self.rejected_4130 = 0
        self.final = False  # no more random failures: let the position be wound down

    # ------------------------------------------------------------------------------------------ helpers

    def draw_choice(self, options: list[str], label: str) -> str:
        return options[0] if self.final else self.data.draw(st.sampled_from(options), label=label)

    def tick(self, ms: int = 1) -> int:
        self.now += ms
        return self.now

    def _fill(self, order: ModelOrder, qty: D, *, done: bool, liquidation: bool = False) -> None:
        self.trade_id += 1
        slip = D(self.data.draw(st.integers(-2, 2), label="slippage")) * TICK if not self.final else D(0)
        price = max(self.price + slip, TICK)
        order.filled += qty
        side = self.direction.entry_side if order.kind == "entry" else self.direction.exit_side
        self.position += qty if order.kind == "entry" else -qty
        self.queue.append(
            Fill(
                client_id=order.client_id,
                trade_id=self.trade_id,
                side=side,
                qty=qty,
                price=price,
                fee=(qty * price * FEE_RATE).quantize(D("0.00000001")),
                time_ms=self.tick(),
                order_done=done,
                order_filled_qty=order.filled,
                liquidation=liquidation,
            )
        )

    def _fill_in_parts(self, order: ModelOrder, qty: D) -> None:
        parts = 1 if self.final else self.data.draw(st.integers(1, 3), label="parts")
        remaining = qty
        for index in range(parts):
            last = index == parts - 1
            part = remaining if last else RULES.floor_qty(remaining / 2)
            if part <= 0:
                continue
            remaining -= part
            self._fill(order, part, done=last)
        order.open = False

    def _crossed(self, kind: str, trigger: D) -> bool:
        """Whether the current price triggers a stop (or take-profit) at `trigger`."""
        selling = self.direction is Direction.LONG
        stop_side_hit = self.price <= trigger if selling else self.price >= trigger
        tp_side_hit = self.price >= trigger if selling else self.price <= trigger
        return stop_side_hit if kind == "stop" else tp_side_hit

    # ------------------------------------------------------------------------------------------ actions

    def execute(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case PlaceEntry():
                    self._entry(action)
                case PlaceStop():
                    self._conditional(action.client_id, "stop", action.trigger, action.quantity)
                case PlaceTakeProfit():
                    self._conditional(action.client_id, "tp", action.trigger, action.quantity)
                case CancelOrder():
                    self._cancel(action.client_id)
                case MarketClose():
                    self._market(action)
                case _:
                    pass

    def _entry(self, action: PlaceEntry) -> None:
        order = ModelOrder(action.client_id, "entry", action.quantity)
        self.orders[order.client_id] = order
        outcome = self.draw_choice(["fill"] * 12 + ["partial", "reject", "expire"], "entry outcome")
        if outcome == "reject":
            self.queue.append(OrderRejected(order.client_id, self.tick(), -2019, "Margin is insufficient."))
            order.open = False
            return
        self.queue.append(OrderAccepted(order.client_id, self.tick()))
        if outcome == "fill":
            self._fill_in_parts(order, action.quantity)
            return
        if outcome == "partial":
            part = RULES.floor_qty(action.quantity * D(self.data.draw(st.integers(1, 9), label="share")) / 10)
            if part > 0:
                self._fill(order, part, done=False)
        order.open = False
        self.queue.append(OrderCanceled(order.client_id, self.tick(), expired=True, filled_qty=order.filled))

    def _conditional(self, cid: str, kind: str, trigger: D, qty: D | None) -> None:
        if qty is None and any(o.open and o.kind == "stop" and o.qty is None for o in self.orders.values()):
            self.rejected_4130 += 1
            self.queue.append(OrderRejected(cid, self.tick(), -4130, "closePosition order exists"))
            return
        if self._crossed(kind, trigger):
            self.queue.append(OrderRejected(cid, self.tick(), -2021, "Order would immediately trigger."))
            return
        if self.draw_choice(["ok", "ok", "ok", "ok", "ok", "ok", "reject"], f"{kind} placement") == "reject":
            self.queue.append(OrderRejected(cid, self.tick(), -1111, "Precision is over the maximum"))
            return
        self.orders[cid] = ModelOrder(cid, kind, qty, trigger)
        self.queue.append(OrderAccepted(cid, self.tick()))

    def _cancel(self, cid: str) -> None:
        order = self.orders.get(cid)
        if order is not None and order.open:
            order.open = False
        # canceled, or answered "unknown order" because it already finished: the shell reports both the same way
        filled = order.filled if order is not None else None
        self.queue.append(OrderCanceled(cid, self.tick(), filled_qty=filled))

    def _market(self, action: MarketClose) -> None:
        order = ModelOrder(action.client_id, "market", action.quantity)
        self.orders[order.client_id] = order
        outcome = self.draw_choice(["fill", "fill", "fill", "reject", "partial"], "market close")
        qty = min(action.quantity, self.position)
        if qty <= 0:
            order.open = False
            self.queue.append(OrderRejected(order.client_id, self.tick(), -2022, "ReduceOnly Order is rejected."))
            return
        if outcome == "reject":
            order.open = False
            self.queue.append(OrderRejected(order.client_id, self.tick(), -1008, "Request throttled"))
            return
        self.queue.append(OrderAccepted(order.client_id, self.tick()))
        if outcome == "partial" and qty > STEP:
            self._fill(order, RULES.floor_qty(qty / 2), done=False)
            order.open = False
            self.queue.append(OrderCanceled(order.client_id, self.tick(), expired=True, filled_qty=order.filled))
            return
        self._fill_in_parts(order, qty)

    # ------------------------------------------------------------------------------------------ the market

    def move(self, ticks: int) -> None:
        """Move the price and fire every conditional order it crosses, racing in a drawn order."""
        self.price = max(self.price + ticks * TICK, D(1))
        crossed = [
            o for o in self.orders.values() if o.open and o.trigger is not None and self._crossed(o.kind, o.trigger)
        ]
        if not crossed:
            return
        for order in self.data.draw(st.permutations(crossed), label="firing order"):
            if not order.open:
                continue
            qty = self.position if order.qty is None else min(order.qty - order.filled, self.position)
            fate = self.draw_choice(["fill", "fill", "fill", "expire"], "triggered order")
            if qty <= 0 or fate == "expire":
                order.open = False
                self.queue.append(OrderCanceled(order.client_id, self.tick(), expired=True, filled_qty=order.filled))
                continue
            self._fill_in_parts(order, qty)

    def liquidate(self) -> None:
        if self.position <= 0:
            return
        order = ModelOrder(f"autoclose-{self.trade_id}", "market", self.position)
        self._fill(order, self.position, done=True, liquidation=True)

    def manual_reduce(self, share: int) -> None:
        qty = RULES.floor_qty(self.position * share / 10)
        if qty <= 0:
            return
        order = ModelOrder(f"web_{self.trade_id}", "market", qty)
        self._fill(order, qty, done=True)

    def cancel_on_exchange(self, index: int) -> None:
        live = [o for o in self.orders.values() if o.open and o.trigger is not None]
        if live:
            order = live[index % len(live)]
            order.open = False
            self.queue.append(OrderCanceled(order.client_id, self.tick(), filled_qty=order.filled))

    def funding(self, amount: D) -> None:
        if self.position > 0:
            self.queue.append(FundingPaid(amount, self.tick(), f"funding-{self.now}"))

    def open_conditional_orders(self) -> list[ModelOrder]:
        return [o for o in self.orders.values() if o.open and o.trigger is not None]
