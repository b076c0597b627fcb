"""Property tests: random exchange behaviour, delivery order and duplicates never break the lifecycle's promises.

- an open position always has a stop requested or acknowledged, or a market close in flight (or a human alerted,
  or the exchange said a close had nothing to reduce and reconciliation decides);
- the stop never loosens, and no order is ever placed twice under one client id;
- no notification is emitted twice; a redelivered event changes nothing and sends nothing;
- quantity is conserved: when the position is closed, entries equal exits and the exchange holds nothing;
- a closed position leaves no live order behind, and -4130 (a second closePosition stop) never happens.
"""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ats.domain import Direction, Side
from ats.lifecycle import (
    Action,
    CloseRequested,
    Event,
    Fill,
    FundingPaid,
    MarketClose,
    MarkPrice,
    Notify,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    Phase,
    PlaceEntry,
    PlaceStop,
    PlaceTakeProfit,
    Position,
    PositionHeld,
    PositionVanished,
    RecordAnomaly,
    ReversalSignal,
    Role,
    open_position,
    transition,
)
from ats.risk import tighten_stop
from tests.unit.lifecycle.harness import KEY, Driver, policy, sized
from tests.unit.lifecycle.model import ModelExchange

PLACING = (PlaceEntry, PlaceStop, PlaceTakeProfit, MarketClose)


class Run:
    """One position driven against the model exchange, checking every promise after every event."""

    def __init__(
        self, data: st.DataObject, direction: Direction, qty: D, drift: int = 0, **policy_overrides: object
    ) -> None:
        self.exchange = ModelExchange(data, direction)
        self.drift = drift  # ticks in the trade's favour added to every move, so that runs reach the far targets
        self.position, actions = open_position(
            key=KEY, order=sized(direction, qty), policy=policy(direction, **policy_overrides), time_ms=0
        )
        self.delivered: list[Event] = []
        self.notify_keys: set[str] = set()
        self.placed_ids: set[str] = set()
        self.last_stop_trigger: D | None = None
        self.bar = 0
        self._check_actions(actions)
        self.exchange.execute(actions)

    def _check_actions(self, actions: list[Action]) -> None:
        direction = self.position.direction
        for action in actions:
            if isinstance(action, Notify):
                assert action.key not in self.notify_keys, f"notification {action.key} emitted twice"
                self.notify_keys.add(action.key)
            if isinstance(action, PLACING):
                assert action.client_id not in self.placed_ids, f"{action.client_id} placed twice"
                self.placed_ids.add(action.client_id)
            if isinstance(action, PlaceStop):
                if self.last_stop_trigger is not None:
                    assert tighten_stop(self.last_stop_trigger, action.trigger, direction) == action.trigger
                self.last_stop_trigger = action.trigger

    def deliver(self, event: Event, *, duplicate: bool = False) -> None:
        before = self.position
        self.position, actions = transition(before, event)
        after = self.position
        self._check_actions(actions)
        if duplicate:
            # A stale acknowledgement may make the machine cancel an order once more (harmless, idempotent), whose
            # confirmation looks just like an old one; beyond order bookkeeping a replay must change nothing.
            assert figures(after) == figures(before), f"redelivered {event} changed the position"
            assert not [a for a in actions if isinstance(a, (*PLACING, Notify))], f"redelivered {event}: {actions}"
        if before.stop_price is not None and after.stop_price is not None:
            assert tighten_stop(before.stop_price, after.stop_price, after.direction) == after.stop_price
        assert_protected(after)
        if after.phase is Phase.CLOSED:
            assert after.entry_qty == after.exit_qty
        ignored = after == before and any(isinstance(a, RecordAnomaly) for a in actions)
        if not duplicate and not ignored and not isinstance(event, MarkPrice):
            self.delivered.append(event)
        self.exchange.execute(actions)

    def deliver_queued(self, index: int) -> None:
        queue = self.exchange.queue
        if queue:
            self.deliver(queue.pop(index % len(queue)))

    def drain(self) -> None:
        while self.exchange.queue:
            self.deliver(self.exchange.queue.pop(0))

    def move(self, ticks: int, ms: int) -> None:
        self.exchange.move(ticks + self.drift * self.position.direction.sign)
        self.deliver(MarkPrice(self.exchange.price, self.exchange.tick(ms)))

    def reversal(self, strength: float) -> None:
        self.bar += 1
        opposite = Direction.SHORT if self.position.direction is Direction.LONG else Direction.LONG
        self.deliver(ReversalSignal(opposite, strength, self.exchange.price, self.bar, self.exchange.tick()))

    def reconcile(self) -> None:
        """What the shell does when a close reduced nothing: replay what the exchange has, then report it held."""
        if not self.position.close_paused:
            return
        self.drain()
        if self.position.close_paused and self.exchange.position > 0:
            self.deliver(PositionHeld(self.exchange.tick(), self.exchange.position))

    def wind_down(self) -> None:
        """No more random failures: close what is left and let every event arrive."""
        self.exchange.final = True
        for _ in range(8):
            self.drain()
            self.reconcile()
            if self.position.is_terminal or self.position.needs_attention:
                break
            self.deliver(CloseRequested("end of test", self.exchange.tick()))
        self.drain()


def figures(p: Position) -> tuple[object, ...]:
    return (p.phase, p.entry_qty, p.exit_qty, p.fees, p.funding, p.stop_price, p.levels, p.close_reason, p.notified)


def assert_protected(p: Position) -> None:
    if p.is_terminal or p.open_qty <= 0 or p.needs_attention or p.close_paused:
        return
    stop = any(o.role is Role.STOP and o.state.working for o in p.orders)
    closing = any(o.role is Role.CLOSE and o.state.live for o in p.orders)
    assert stop or closing, f"open position without protection: {p.phase} {p.orders}"


# What happens next, weighted so that runs go far enough to hit stops, targets and the breakeven move.
KINDS = (
    ["deliver"] * 24
    + ["move"] * 16
    + ["duplicate"] * 6
    + ["reversal"] * 4
    + ["funding", "funding", "cancel", "cancel", "manual", "close", "liquidate", "reconcile", "reconcile"]
)
STEPS = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(-300, 300)), min_size=20, max_size=80)


def play(run: Run, steps: list[tuple[str, int]], data: st.DataObject) -> None:
    for kind, value in steps:
        match kind:
            case "deliver":
                run.deliver_queued(abs(value))
            case "duplicate" if run.delivered:
                run.deliver(run.delivered[abs(value) % len(run.delivered)], duplicate=True)
            case "move":
                run.move(value, data.draw(st.integers(0, 6_000), label="ms"))
            case "funding":
                run.exchange.funding(D(value) / 1000)
            case "reversal":
                run.reversal(float(50 + abs(value) % 51))
            case "cancel":
                run.exchange.cancel_on_exchange(abs(value))
            case "manual":
                run.exchange.manual_reduce(1 + abs(value) % 9)
            case "close" if value > 150:  # rarer than the other steps: a close ends the interesting part
                run.deliver(CloseRequested("manual", run.exchange.tick()))
            case "liquidate" if value > 150:
                run.exchange.liquidate()
            case "reconcile":
                run.reconcile()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    data=st.data(),
    direction=st.sampled_from(Direction),
    qty=st.sampled_from([D("0.001"), D("0.003"), D("0.010"), D("1.000"), D("2.345")]),
    on_reversal=st.sampled_from(["tighten", "close", "ignore"]),
    drift=st.sampled_from([-60, 0, 60, 120, 200]),
    steps=STEPS,
)
def test_random_exchange_behaviour_keeps_every_promise(
    data: st.DataObject, direction: Direction, qty: D, on_reversal: str, drift: int, steps: list[tuple[str, int]]
) -> None:
    run = Run(data, direction, qty, drift, on_reversal=on_reversal)
    play(run, steps, data)
    run.wind_down()

    p, exchange = run.position, run.exchange
    assert exchange.rejected_4130 == 0, "a second closePosition stop was sent"
    assert p.is_terminal or p.needs_attention, f"not wound down: {p.phase}"
    assert p.open_qty == exchange.position, "the position's quantity disagrees with the exchange"
    if p.phase is Phase.CLOSED:
        assert p.entry_qty == p.exit_qty
        assert exchange.position == 0
        assert not exchange.open_conditional_orders(), "orders left behind after the close"
        assert p.exit_reason is not None
        assert f"{KEY}:result" in run.notify_keys
    if p.phase is Phase.FAILED:
        assert p.entry_qty == 0
        assert f"{KEY}:failed" in run.notify_keys
    if p.levels is not None:
        assert f"{KEY}:entry" in run.notify_keys


# ---------------------------------------------------------------------------------------------- arbitrary events

LEGS = ["E", "S1", "S2", "S3", "T1", "T2", "T1M", "X1", "X2", "X3", "ZZ"]


def _arbitrary_event() -> st.SearchStrategy[Event]:
    """Built once: a strategy built inside each draw costs Hypothesis its validation every time (20 s a run)."""
    cid = st.sampled_from(LEGS).map(Driver.cid)
    now = st.integers(0, 10**7)
    amount = st.one_of(
        st.decimals(min_value=D("-2"), max_value=D("3"), places=3), st.sampled_from([D("NaN"), D("Infinity")])
    )
    price = st.decimals(min_value=D("50"), max_value=D("150"), places=2)
    events: st.SearchStrategy[Event] = st.one_of(
        st.builds(
            Fill,
            client_id=st.one_of(cid, st.just("autoclose-1"), st.just("web_1")),
            trade_id=st.integers(1, 40),
            side=st.sampled_from(Side),
            qty=amount,
            price=price,
            fee=st.just(D("0.01")),
            time_ms=now,
            order_done=st.booleans(),
            order_filled_qty=st.one_of(st.none(), amount),
            liquidation=st.booleans(),
        ),
        st.builds(OrderAccepted, cid, now),
        st.builds(OrderRejected, cid, now, st.sampled_from([-2021, -2022, -4130, None])),
        st.builds(OrderCanceled, cid, now, st.booleans(), st.one_of(st.none(), amount)),
        st.builds(MarkPrice, price, now),
        st.builds(FundingPaid, amount, now, st.sampled_from(["a", "b"])),
        st.builds(PositionVanished, now, st.one_of(st.none(), price)),
        st.builds(PositionHeld, now, amount),
        st.builds(ReversalSignal, st.sampled_from(Direction), st.floats(0, 100), price, st.integers(0, 5), now),
        st.builds(CloseRequested, st.just("manual"), now),
    )
    return events


ARBITRARY_EVENT = _arbitrary_event()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(direction=st.sampled_from(Direction), events=st.lists(ARBITRARY_EVENT, max_size=30))
def test_any_event_in_any_state_is_handled(direction: Direction, events: list[Event]) -> None:
    """Nonsense included: never raises, never loosens the stop, never repeats a notification or a client id,
    never leaves quantity without a stop or a market close in flight."""
    position, actions = open_position(key=KEY, order=sized(direction), policy=policy(direction), time_ms=0)
    keys: set[str] = set()
    placed = {a.client_id for a in actions if isinstance(a, PLACING)}
    for event in events:
        before = position
        position, actions = transition(position, event)
        for action in actions:
            if isinstance(action, Notify):
                assert action.key not in keys
                keys.add(action.key)
            if isinstance(action, PLACING):
                assert action.client_id not in placed
                placed.add(action.client_id)
        if before.stop_price is not None:
            assert position.stop_price is not None
            assert tighten_stop(before.stop_price, position.stop_price, direction) == position.stop_price
        assert_protected(position)
