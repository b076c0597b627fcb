"""A small driver for lifecycle tests: builds positions and events by leg name and keeps every action."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from typing import Any, TypeVar

from ats.domain import Band, Direction, SymbolRules, client_id
from ats.lifecycle import (
    Action,
    CloseRequested,
    Event,
    Fill,
    FundingPaid,
    MarkPrice,
    Notify,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    Phase,
    Policy,
    Position,
    PositionVanished,
    ReversalSignal,
    open_position,
    transition,
)
from ats.risk import LevelPlan, SizedOrder, SizingCap, levels_for

KEY = "0123456789abcdef"
FEE_RATE = D("0.0005")
RULES = SymbolRules(
    symbol="TESTUSDT",
    base_asset="TEST",
    quote_asset="USDT",
    status="TRADING",
    contract_type="PERPETUAL",
    tick_size=D("0.01"),
    min_price=D("0.01"),
    max_price=D("100000"),
    step_size=D("0.001"),
    min_qty=D("0.001"),
    max_qty=D("1000"),
    market_step_size=D("0.001"),
    market_min_qty=D("0.001"),
    market_max_qty=D("1000"),
    min_notional=D("5"),
)

A = TypeVar("A")


def plan(direction: Direction = Direction.LONG) -> LevelPlan:
    return LevelPlan(direction, D(2), D(4), D(8), D("0.5"))


def sized(direction: Direction = Direction.LONG, qty: D = D("1.000"), price: D = D("100")) -> SizedOrder:
    level_plan = plan(direction)
    return SizedOrder(
        symbol=RULES.symbol,
        direction=direction,
        quantity=qty,
        reference_price=price,
        notional=qty * price,
        leverage=5,
        margin=qty * price / 5,
        risk_usdt=qty * price * D("0.021"),
        levels=levels_for(level_plan, price, qty, RULES),
        plan=level_plan,
        strength=82.0,
        band=Band.STRONG,
        cap=SizingCap.RISK,
    )


def policy(direction: Direction = Direction.LONG, **overrides: Any) -> Policy:
    return replace(Policy(rules=RULES, plan=plan(direction), taker_fee_rate=FEE_RATE), **overrides)


class Driver:
    """Feeds events to one position and remembers every action it produced."""

    def __init__(self, direction: Direction = Direction.LONG, qty: str = "1.000", **policy_overrides: Any) -> None:
        self.direction = direction
        self.position, first = open_position(
            key=KEY, order=sized(direction, D(qty)), policy=policy(direction, **policy_overrides), time_ms=0
        )
        self.actions: list[Action] = list(first)
        self.now = 1_000
        self.next_trade = 1

    @property
    def p(self) -> Position:
        return self.position

    def send(self, event: Event) -> list[Action]:
        self.position, actions = transition(self.position, event)
        self.actions.extend(actions)
        return actions

    def tick(self, ms: int = 100) -> int:
        self.now += ms
        return self.now

    def phase(self) -> Phase:
        """The phase now: a call, so a type checker does not carry an earlier assert on it across a step."""
        return self.p.phase

    @staticmethod
    def cid(leg: str) -> str:
        return client_id(KEY, leg)

    # events by leg ------------------------------------------------------------------------------

    def accept(self, leg: str) -> list[Action]:
        return self.send(OrderAccepted(self.cid(leg), self.tick()))

    def reject(
        self, leg: str, code: int | None = -2021, message: str = "Order would immediately trigger."
    ) -> list[Action]:
        return self.send(OrderRejected(self.cid(leg), self.tick(), code, message))

    def cancel(self, leg: str, *, expired: bool = False, filled: str | None = None) -> list[Action]:
        return self.send(OrderCanceled(self.cid(leg), self.tick(), expired, D(filled) if filled is not None else None))

    def make_fill(
        self,
        leg: str,
        qty: str,
        price: str,
        *,
        done: bool | None = None,
        cum: str | None = None,
        trade_id: int | None = None,
        fee: str | None = None,
    ) -> Fill:
        order = self.p.order(self.cid(leg))
        is_entry = leg == "E"
        side = self.direction.entry_side if is_entry else self.direction.exit_side
        if trade_id is None:
            trade_id = self.next_trade
            self.next_trade += 1
        filled_before = order.filled_qty if order is not None else D(0)
        cumulative = D(cum) if cum is not None else filled_before + D(qty)
        if done is None:
            done = order is not None and order.qty is not None and cumulative >= order.qty
        return Fill(
            client_id=self.cid(leg),
            trade_id=trade_id,
            side=side,
            qty=D(qty),
            price=D(price),
            fee=D(fee) if fee is not None else D(qty) * D(price) * FEE_RATE,
            time_ms=self.tick(),
            order_done=done,
            order_filled_qty=cumulative,
        )

    def fill(self, leg: str, qty: str, price: str, **kw: Any) -> list[Action]:
        return self.send(self.make_fill(leg, qty, price, **kw))

    def mark(self, price: str, after_ms: int = 1_000) -> list[Action]:
        return self.send(MarkPrice(D(price), self.tick(after_ms)))

    def funding(self, amount: str, ref: str) -> list[Action]:
        return self.send(FundingPaid(D(amount), self.tick(), ref))

    def reversal(self, strength: float, mark: str, bar_ms: int, direction: Direction | None = None) -> list[Action]:
        opposite = direction or (Direction.SHORT if self.direction is Direction.LONG else Direction.LONG)
        return self.send(ReversalSignal(opposite, strength, D(mark), bar_ms, self.tick()))

    def close(self, reason: str = "manual") -> list[Action]:
        return self.send(CloseRequested(reason, self.tick()))

    def vanish(self, price: str | None = None) -> list[Action]:
        return self.send(PositionVanished(self.tick(), D(price) if price is not None else None))

    # scenarios ----------------------------------------------------------------------------------

    def open_fully(self, price: str = "100.00") -> None:
        """Entry filled at once, every protective order acknowledged."""
        qty = str(self.p.requested_qty)
        self.accept("E")
        self.fill("E", qty, price, done=True, cum=qty)
        for leg in ("S1", "T1", "T2"):
            if self.p.order(self.cid(leg)) is not None:
                self.accept(leg)

    # inspection ---------------------------------------------------------------------------------

    def leg(self, leg: str) -> Any:
        order = self.p.order(self.cid(leg))
        assert order is not None, f"no order {leg}"
        return order

    def notes(self) -> list[Notify]:
        return of_type(self.actions, Notify)


def of_type(actions: list[Action], kind: type[A]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]
