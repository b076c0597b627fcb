"""Reconciliation's pure planning: which legs to look up or re-drive, orphans, vanished and unknown positions,
fill and funding replay, mismatches and adoption."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from ats.config import Settings
from ats.domain import Direction, Side
from ats.exchange.base import (
    AlgoOrder,
    AlgoStatus,
    Income,
    MarginType,
    Order,
    OrderStatus,
    OrderType,
    PositionInfo,
    Trade,
    WorkingType,
    is_liquidation_client_id,
)
from ats.lifecycle import Notify, OrderState, PlaceStop, PlaceTakeProfit, Position
from ats.reconcile import (
    OVERLAP_MS,
    ExchangeSnapshot,
    adopted_key,
    adoption,
    due_for_redrive,
    fills_for_order,
    funding_events,
    held_closes,
    mismatched_symbols,
    orders_with_unseen_trades,
    plan,
    quantity_mismatches,
    recovered_fills,
)
from tests.unit.lifecycle.harness import KEY, RULES, Driver

SYMBOL = RULES.symbol


def held(amount: str, symbol: str = SYMBOL, entry: str = "100.00", updated: int = 5_000) -> PositionInfo:
    return PositionInfo(
        symbol=symbol,
        amount=D(amount),
        entry_price=D(entry),
        break_even_price=D(entry),
        mark_price=D(entry),
        unrealized_pnl=D(0),
        liquidation_price=D(0),
        isolated_margin=D(0),
        notional=D(amount) * D(entry),
        margin_type=MarginType.ISOLATED,
        update_time_ms=updated,
    )


def algo(cid: str, symbol: str = SYMBOL) -> AlgoOrder:
    return AlgoOrder(
        symbol=symbol,
        algo_id=1,
        client_algo_id=cid,
        side=Side.SELL,
        type=OrderType.STOP_MARKET,
        status=AlgoStatus.NEW,
        trigger_price=D("98.00"),
        quantity=D(0),
        close_position=True,
        reduce_only=True,
        working_type=WorkingType.MARK_PRICE,
        actual_order_id=None,
        create_time_ms=0,
        update_time_ms=0,
    )


def order(
    cid: str,
    order_id: int = 7,
    status: OrderStatus = OrderStatus.FILLED,
    executed: str = "1.000",
    symbol: str = SYMBOL,
) -> Order:
    return Order(
        symbol=symbol,
        order_id=order_id,
        client_order_id=cid,
        side=Side.SELL,
        type=OrderType.MARKET,
        status=status,
        orig_qty=D(executed),
        executed_qty=D(executed),
        avg_price=D("99"),
        price=D(0),
        cum_quote=D(0),
        reduce_only=True,
        close_position=False,
        update_time_ms=9_000,
    )


def trade(trade_id: int, order_id: int = 7, qty: str = "0.500", time_ms: int = 8_000) -> Trade:
    return Trade(
        symbol=SYMBOL,
        trade_id=trade_id,
        order_id=order_id,
        side=Side.SELL,
        price=D("99"),
        qty=D(qty),
        quote_qty=D(qty) * 99,
        realized_pnl=D("-0.5"),
        commission=D("0.02"),
        commission_asset="USDT",
        time_ms=time_ms,
        maker=False,
    )


def snapshot(
    positions: tuple[PositionInfo, ...] = (), algos: tuple[str, ...] = (), orders: tuple[str, ...] = ()
) -> ExchangeSnapshot:
    return ExchangeSnapshot(positions, tuple(order(c, status=OrderStatus.NEW) for c in orders), tuple(map(algo, algos)))


def opened() -> Driver:
    driver = Driver()
    driver.open_fully()
    return driver


# ---------------------------------------------------------------------------------------------- legs


def test_protected_position_needs_nothing() -> None:
    d = opened()
    work = plan([d.p], snapshot((held("1.000"),), algos=(d.cid("S1"), d.cid("T1"), d.cid("T2"))), since_ms=None)
    assert work.lookups == {}
    assert work.pending == {}
    assert work.orphans == ()
    assert work.vanished == ()
    assert work.unknown == ()


def test_acknowledged_legs_gone_from_the_exchange_are_looked_up() -> None:
    d = opened()
    work = plan([d.p], snapshot((held("1.000"),), algos=(d.cid("T1"),)), since_ms=None)
    assert [leg.leg for leg in work.lookups[KEY]] == ["S1", "T2"]
    assert work.pending == {}


def test_requested_legs_are_redriven_unless_already_on_the_exchange() -> None:
    d = Driver()
    d.accept("E")
    d.fill("E", "1.000", "100.00", done=True, cum="1.000")  # S1, T1, T2 requested, none acknowledged
    work = plan([d.p], snapshot((held("1.000"),), algos=(d.cid("S1"),)), since_ms=None)
    assert [leg.leg for leg in work.lookups[KEY]] == ["S1"]  # placed: only the acknowledgement was lost
    assert work.pending[KEY] == (d.cid("T1"), d.cid("T2"))


def test_cancels_still_open_are_redriven_and_finished_ones_looked_up() -> None:
    d = opened()
    d.fill("T1", "0.500", "104.00", done=True)  # breakeven stop S2 requested; S1 is cancelled once S2 is up
    d.accept("S2")
    assert d.leg("S1").state is OrderState.CANCELING
    still_open = plan([d.p], snapshot((held("0.500"),), algos=(d.cid("S1"), d.cid("S2"), d.cid("T2"))), since_ms=None)
    assert still_open.pending == {KEY: (d.cid("S1"),)}
    gone = plan([d.p], snapshot((held("0.500"),), algos=(d.cid("S2"), d.cid("T2"))), since_ms=None)
    assert [leg.leg for leg in gone.lookups[KEY]] == ["S1"]


def test_entry_not_on_the_exchange_is_pending_until_it_shows_up() -> None:
    d = Driver()  # entry requested, nothing known
    work = plan([d.p], snapshot(), since_ms=None)
    assert work.pending == {KEY: (d.cid("E"),)}
    assert work.vanished == ()  # nothing filled, nothing to vanish


def test_redrive_waits_for_the_decider_except_for_unrecorded_legs() -> None:
    assert not due_for_redrive(["a", "b"], {"a": 1.0, "b": 4.9}, 5.0)
    assert due_for_redrive(["a", "b"], {"a": 1.0, "b": 5.0}, 5.0)
    assert due_for_redrive(["a"], {}, 5.0)


# ---------------------------------------------------------------------------------------------- orders and positions


def test_our_orders_without_a_live_leg_are_orphans_others_are_left_alone() -> None:
    d = opened()
    stale = "ats_feedfacefeedface_S1"
    work = plan(
        [d.p],
        snapshot(
            (held("1.000"),),
            algos=(d.cid("S1"), d.cid("T1"), d.cid("T2"), stale, "manual-stop"),
            orders=("web_123", "ats_feedfacefeedface_X1"),
        ),
        since_ms=None,
    )
    assert {(o.client_id, o.algo) for o in work.orphans} == {(stale, True), ("ats_feedfacefeedface_X1", False)}


def test_a_closed_positions_leftover_order_is_an_orphan() -> None:
    d = opened()
    d.fill("S1", "1.000", "98.00", done=True)  # closed; T1 and T2 are being cancelled
    work = plan([d.p], snapshot(algos=(d.cid("T1"),)), since_ms=None)
    assert d.p.is_terminal
    assert [o.client_id for o in work.orphans] == [d.cid("T1")]


@pytest.mark.parametrize(
    ("exchange", "vanished"),
    [((), True), (("-1.000",), True), (("1.000",), False), (("0.400",), False)],
    ids=["flat", "flipped", "held", "partly held"],
)
def test_positions_the_exchange_does_not_hold_are_vanish_candidates(exchange: tuple[str, ...], vanished: bool) -> None:
    d = opened()
    work = plan([d.p], snapshot(tuple(held(a) for a in exchange)), since_ms=None)
    assert work.vanished == ((KEY,) if vanished else ())


def test_exchange_positions_nobody_recorded_are_adoption_candidates() -> None:
    d = opened()
    work = plan([d.p], snapshot((held("1.000"), held("-3", symbol="ETHUSDT"))), since_ms=None)
    assert [p.symbol for p in work.unknown] == ["ETHUSDT"]


def test_fill_windows_start_at_the_last_pass_but_never_before_the_position() -> None:
    d = opened()  # opened at 0
    assert plan([d.p], snapshot(), since_ms=None).trade_windows == {SYMBOL: -OVERLAP_MS}
    assert plan([d.p], snapshot(), since_ms=600_000).trade_windows == {SYMBOL: 600_000 - OVERLAP_MS}


# ---------------------------------------------------------------------------------------------- fills and funding


def test_orders_with_unseen_trades_keep_all_their_trades() -> None:
    trades = [trade(1), trade(2), trade(3, order_id=8)]
    assert orders_with_unseen_trades(trades, {1, 3}) == {7: [trade(1), trade(2)]}
    assert orders_with_unseen_trades(trades, {1, 2, 3}) == {}


def test_replayed_fills_carry_cumulative_quantity_and_the_finishing_flag() -> None:
    trades = [trade(1, time_ms=8_000), trade(2, time_ms=8_001)]
    fills = fills_for_order(KEY, order(KEY, executed="1.000"), trades, recorded={1})
    assert [(f.trade_id, f.order_filled_qty, f.order_done, f.liquidation) for f in fills] == [
        (2, D("1.000"), True, False)
    ]


def test_liquidation_fills_are_marked() -> None:
    assert is_liquidation_client_id("autoclose-1700000000")
    assert is_liquidation_client_id("adl_autoclose")
    assert not is_liquidation_client_id("ats_0123456789abcdef_S1")
    fills = fills_for_order("autoclose-17", order("autoclose-17", executed="0.500"), [trade(1)], recorded=set())
    assert [f.liquidation for f in fills] == [True]


def test_funding_goes_to_positions_that_held_through_it_once() -> None:
    d = opened()
    d.funding("-0.10", "11")

    def income(tran_id: int, amount: str, time_ms: int, symbol: str = SYMBOL, asset: str = "USDT") -> Income:
        return Income(symbol, "FUNDING_FEE", D(amount), asset, time_ms, tran_id, "")

    incomes = [
        income(11, "-0.10", 5_000),  # already applied
        income(12, "-0.20", 6_000),
        income(13, "0.30", -5),  # before the position opened
        income(14, "0.30", 6_000, symbol="ETHUSDT"),
        income(15, "0.30", 6_000, asset="BNB"),
        income(16, "0", 6_000),
    ]
    events = funding_events(incomes, [d.p])
    assert [(e.ref, e.amount) for e in events[KEY]] == [("12", D("-0.20"))]


def test_mismatches_compare_signed_quantities() -> None:
    d = opened()
    assert quantity_mismatches([d.p], snapshot((held("1.000"),))) == []
    assert len(quantity_mismatches([d.p], snapshot((held("0.400"),)))) == 1
    assert len(quantity_mismatches([d.p], snapshot())) == 1


def test_symbols_whose_exchange_position_differs_are_suspects() -> None:
    d = opened()
    pending = Driver()  # no fill yet: nothing to compare
    assert mismatched_symbols([d.p, pending.p], snapshot((held("1.000"),))) == frozenset()
    assert mismatched_symbols([d.p], snapshot((held("0.500"),))) == {SYMBOL}  # TP1 filled, unseen
    assert mismatched_symbols([d.p], snapshot()) == {SYMBOL}  # stopped out, unseen


def test_a_paused_close_goes_ahead_only_where_the_exchange_still_holds_the_position() -> None:
    d = opened()
    d.close()
    assert held_closes([d.p], snapshot((held("1.000"),))) == []  # not paused
    d.reject("X1", -2022, "ReduceOnly Order is rejected.")
    assert held_closes([d.p], snapshot((held("1.000"),))) == [(KEY, D("1.000"))]
    assert held_closes([d.p], snapshot((held("-1.000"),))) == []  # the other direction: not ours to close
    assert held_closes([d.p], snapshot()) == []  # flat: the replay or the vanished check decides


def test_recovered_fills_count_the_trades_a_pass_applied() -> None:
    d = opened()
    before = d.p
    assert recovered_fills([before], {KEY: before}) == 0
    d.fill("T1", "0.500", "104.00")
    d.funding("-0.1", "f1")  # not a fill
    assert recovered_fills([before], {KEY: d.p}) == 1
    assert recovered_fills([before], {KEY: None}) == 0


# ---------------------------------------------------------------------------------------------- adoption


def test_adoption_protects_with_the_default_levels_and_alerts() -> None:
    info = held("-2.000", entry="100.00")
    key = adopted_key("main", info)
    assert key == adopted_key("main", info)
    assert len(key) == 16
    assert key != adopted_key("other", info)
    position, actions = adoption(info, key=key, rules=RULES, leverage=3, settings=Settings(), time_ms=10_000)
    assert isinstance(position, Position)
    assert position.adopted
    assert position.direction is Direction.SHORT
    assert position.open_qty == D(2)
    assert position.stop_price == D("102.00")  # LevelSettings.stop_pct = 2 %, above a short's entry
    stops = [a for a in actions if isinstance(a, PlaceStop)]
    assert [(s.trigger, s.quantity, s.side) for s in stops] == [(D("102.00"), None, Side.BUY)]
    assert [a.trigger for a in actions if isinstance(a, PlaceTakeProfit)] == [D("96.00"), D("92.00")]
    alerts = [a for a in actions if isinstance(a, Notify) and a.key == f"{key}:alert:adopted"]
    assert len(alerts) == 1
