"""The matching engine without HTTP: fills, fees, PnL, margin, funding, liquidation, algo rules, error codes."""

from __future__ import annotations

import json
from decimal import Decimal as D
from typing import Any

import pytest

from ats.clock import FakeClock
from sim.engine import Engine, EngineOptions, SimError, as_params
from sim.market import Market, SyntheticSource

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def make(
    start_ms: int = START_MS, balance: str = "10000", *, expire_stranded: bool = False
) -> tuple[Engine, Market, FakeClock, list[dict[str, Any]]]:
    clock = FakeClock(start_ms)
    market = Market(SyntheticSource(seed=3), interval="1h", start_ms=start_ms, history_bars=60)
    engine = Engine(market, clock, balance=D(balance), options=EngineOptions(expire_stranded=expire_stranded))
    events: list[dict[str, Any]] = []
    engine.subscribe(events.append)
    return engine, market, clock, events


def price(engine: Engine, market: Market, symbol: str, last: str, mark: str | None = None) -> None:
    engine.on_tick(market.set_price(symbol, D(last), D(mark) if mark else None))


def order(engine: Engine, **kw: object) -> dict[str, Any]:
    return engine.new_order(as_params(newOrderRespType="RESULT", **kw))


def algo(engine: Engine, **kw: object) -> dict[str, Any]:
    return engine.new_algo_order(as_params(algoType="CONDITIONAL", **kw))


def code_of(call: Any) -> int:
    with pytest.raises(SimError) as info:
        call()
    return info.value.code


def test_market_order_fills_at_the_ask_with_taker_fee_and_emits_events_in_order() -> None:
    engine, market, _, events = make()
    price(engine, market, "BTCUSDT", "90000")
    ask = engine.quote("BTCUSDT").ask
    result = order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.100")
    assert result["status"] == "FILLED"
    assert D(result["avgPrice"]) == ask
    fee = (ask * D("0.100") * D("0.0005")).quantize(D("0.00000001"))
    assert engine.wallet == D(10000) - fee
    pos = engine.positions["BTCUSDT"]
    assert pos.amount == D("0.100")
    assert pos.entry_price == ask
    kinds = [(e["e"], e.get("o", {}).get("x")) for e in events]
    assert kinds == [
        ("ORDER_TRADE_UPDATE", "NEW"),
        ("TRADE_LITE", None),
        ("ORDER_TRADE_UPDATE", "TRADE"),
        ("ACCOUNT_UPDATE", None),
    ]
    assert events[2]["o"]["X"] == "FILLED"
    assert D(events[2]["o"]["n"]) == fee
    assert events[3]["a"]["P"][0]["pa"] == "0.100"


def test_round_trip_realises_pnl_and_pays_both_fees() -> None:
    engine, market, _, _ = make()
    price(engine, market, "ETHUSDT", "3000")
    buy = order(engine, symbol="ETHUSDT", side="BUY", type="MARKET", quantity="1.000")
    price(engine, market, "ETHUSDT", "3100")
    sell = order(engine, symbol="ETHUSDT", side="SELL", type="MARKET", quantity="1.000")
    entry, exit_ = D(buy["avgPrice"]), D(sell["avgPrice"])
    fees = (entry + exit_) * D("0.0005")
    assert engine.positions["ETHUSDT"].amount == 0
    assert engine.wallet == D(10000) + (exit_ - entry) - fees.quantize(D("0.00000001"))
    trades = engine.user_trades(as_params(symbol="ETHUSDT"))
    assert D(trades[-1]["realizedPnl"]) == exit_ - entry
    kinds = {row["incomeType"] for row in engine.income_history({})}
    assert kinds == {"COMMISSION", "REALIZED_PNL"}


def test_isolated_margin_liquidation_loses_exactly_the_isolated_margin() -> None:
    engine, market, _, events = make()
    engine.change_margin_type(as_params(symbol="BTCUSDT", marginType="ISOLATED"))
    engine.change_leverage(as_params(symbol="BTCUSDT", leverage=20))
    price(engine, market, "BTCUSDT", "90000")
    order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.100")
    pos = engine.positions["BTCUSDT"]
    margin = pos.isolated_wallet
    assert margin == pos.entry_price * D("0.100") / 20
    wallet_after_open = engine.wallet
    liquidation = engine.liquidation_price("BTCUSDT")
    assert D(85000) < liquidation < pos.entry_price
    price(engine, market, "BTCUSDT", str((liquidation + 50).quantize(D("0.1"))))
    assert engine.positions["BTCUSDT"].amount == D("0.100"), "not yet at the liquidation price"
    events.clear()
    price(engine, market, "BTCUSDT", str((liquidation - 5).quantize(D("0.1"))))
    assert engine.positions["BTCUSDT"].amount == 0
    assert engine.wallet == wallet_after_open - margin
    fill = next(e for e in events if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "CALCULATED")
    assert fill["o"]["c"].startswith("autoclose-")
    assert fill["o"]["o"] == "LIQUIDATION"
    assert fill["o"]["X"] == "FILLED"
    assert any(f["o"]["s"] == "BTCUSDT" for f in market.force_orders if f["E"] == fill["T"])


def test_margin_call_is_pushed_once_before_liquidation() -> None:
    engine, market, _, events = make()
    engine.change_margin_type(as_params(symbol="BTCUSDT", marginType="ISOLATED"))
    engine.change_leverage(as_params(symbol="BTCUSDT", leverage=50))
    price(engine, market, "BTCUSDT", "90000")
    order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.100")
    liquidation = engine.liquidation_price("BTCUSDT")
    close_to = liquidation + (engine.positions["BTCUSDT"].entry_price - liquidation) / 30
    price(engine, market, "BTCUSDT", str(close_to.quantize(D("0.1"))))
    price(engine, market, "BTCUSDT", str((close_to - 1).quantize(D("0.1"))))
    calls = [e for e in events if e["e"] == "MARGIN_CALL"]
    assert len(calls) == 1
    assert calls[0]["p"][0]["s"] == "BTCUSDT"


def test_funding_is_paid_by_positions_held_at_the_funding_time() -> None:
    start = START_MS + 8 * 3_600_000 - 60_000  # 07:59:00
    engine, market, clock, events = make(start_ms=start)
    price(engine, market, "SOLUSDT", "180")
    order(engine, symbol="SOLUSDT", side="BUY", type="MARKET", quantity="10.00")
    wallet = engine.wallet

    def tick(info: Any) -> None:
        clock.set_ms(max(clock.now_ms(), info.time_ms))
        engine.on_tick(info)

    market.advance(90, tick)
    funding = [r for r in engine.income_history({}) if r["incomeType"] == "FUNDING_FEE"]
    assert len(funding) == 1
    settled = market.funding_history[market.index["SOLUSDT"]][-1]
    assert settled[0] == START_MS + 8 * 3_600_000
    expected = -D("10.00") * engine.quote("SOLUSDT").mark * D(f"{settled[1]:.8f}")
    assert abs(D(funding[0]["income"]) - expected) < D("0.01")
    assert engine.wallet == wallet + D(funding[0]["income"])
    update = [e for e in events if e["e"] == "ACCOUNT_UPDATE" and e["a"]["m"] == "FUNDING_FEE"]
    assert len(update) == 1


def test_stop_market_triggers_on_mark_price_and_creates_the_actual_market_order() -> None:
    engine, market, _, events = make()
    price(engine, market, "BTCUSDT", "90000")
    order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    stop = algo(
        engine,
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_MARKET",
        triggerPrice="88000",
        closePosition=True,
        workingType="MARK_PRICE",
    )
    assert stop["algoStatus"] == "NEW"
    assert stop["timeInForce"] == "GTE_GTC"
    price(engine, market, "BTCUSDT", "87900", mark="88500")
    assert engine.positions["BTCUSDT"].amount == D("0.010"), "mark has not crossed: no trigger"
    events.clear()
    price(engine, market, "BTCUSDT", "87900", mark="87990")
    assert engine.positions["BTCUSDT"].amount == 0
    statuses = [e["o"]["X"] for e in events if e["e"] == "ALGO_UPDATE"]
    assert statuses == ["TRIGGERING", "TRIGGERED", "FINISHED"]
    detail = engine.query_algo(as_params(algoId=stop["algoId"]))
    actual = engine.query_order(as_params(symbol="BTCUSDT", orderId=detail["actualOrderId"]))
    assert actual["type"] == "MARKET"
    assert actual["origType"] == "STOP_MARKET"
    assert actual["status"] == "FILLED"
    assert actual["closePosition"] is True
    assert code_of(lambda: engine.query_order(as_params(symbol="BTCUSDT", orderId=stop["algoId"]))) == -2013


def test_trigger_rules_for_stop_and_take_profit_on_contract_price() -> None:
    engine, market, _, _ = make()
    price(engine, market, "ETHUSDT", "3000")
    assert engine._triggered("STOP_MARKET", "BUY", D(3000), D(3000))
    assert not engine._triggered("STOP_MARKET", "BUY", D(3001), D(3000))
    assert engine._triggered("STOP_MARKET", "SELL", D(3000), D(2999))
    assert engine._triggered("TAKE_PROFIT_MARKET", "SELL", D(3000), D(3000))
    assert engine._triggered("TAKE_PROFIT_MARKET", "BUY", D(3000), D(2999))
    assert not engine._triggered("TAKE_PROFIT_MARKET", "BUY", D(3000), D(3001))
    immediate = {"symbol": "ETHUSDT", "quantity": "1.000"}
    assert code_of(lambda: algo(engine, side="BUY", type="STOP_MARKET", triggerPrice="2990", **immediate)) == -2021
    assert code_of(lambda: algo(engine, side="SELL", type="STOP_MARKET", triggerPrice="3010", **immediate)) == -2021
    take_profit = {"side": "SELL", "type": "TAKE_PROFIT_MARKET", "triggerPrice": "2990"}
    assert code_of(lambda: algo(engine, **take_profit, **immediate)) == -2021
    algo(engine, side="BUY", type="STOP_MARKET", triggerPrice="3100", **immediate)
    price(engine, market, "ETHUSDT", "3099.99")
    assert engine.position("ETHUSDT").amount == 0
    price(engine, market, "ETHUSDT", "3100")
    assert engine.position("ETHUSDT").amount == D(1), "a plain-quantity stop opens a position"


def test_second_close_position_stop_in_the_same_direction_is_rejected() -> None:
    engine, market, _, _ = make()
    price(engine, market, "BTCUSDT", "90000")
    order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    common = {"symbol": "BTCUSDT", "side": "SELL", "closePosition": True}
    algo(engine, type="STOP_MARKET", triggerPrice="88000", **common)
    assert code_of(lambda: algo(engine, type="STOP_MARKET", triggerPrice="87000", **common)) == -4130
    algo(engine, type="TAKE_PROFIT_MARKET", triggerPrice="95000", **common)
    assert code_of(lambda: algo(engine, type="STOP_MARKET", triggerPrice="88000", quantity="0.010", **common)) == -4137


def test_stranded_reduce_only_and_close_position_orders_stay_open_and_expire_when_they_would_execute() -> None:
    engine, market, _, events = make()
    price(engine, market, "BTCUSDT", "90000")
    order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.020")
    stop = algo(engine, symbol="BTCUSDT", side="SELL", type="STOP_MARKET", triggerPrice="88000", closePosition=True)
    limit = order(
        engine, symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC", price="92000.0", quantity="0.010",
        reduceOnly=True,
    )  # fmt: skip
    order(engine, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.020")
    assert set(engine.open_algos) == {stop["algoId"]}
    assert set(engine.open_orders) == {limit["orderId"]}
    events.clear()
    price(engine, market, "BTCUSDT", "92000")
    price(engine, market, "BTCUSDT", "87000")
    assert engine.open_algos == {}
    assert engine.open_orders == {}
    assert engine.position("BTCUSDT").amount == 0, "a stranded reduce-only order never opens a position"
    assert {e["o"]["X"] for e in events if e["e"] == "ALGO_UPDATE"} == {"EXPIRED"}


def test_reduce_only_and_close_position_orders_expire_when_the_position_is_gone() -> None:
    engine, market, _, events = make(expire_stranded=True)
    price(engine, market, "BTCUSDT", "90000")
    order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.020")
    stop = algo(engine, symbol="BTCUSDT", side="SELL", type="STOP_MARKET", triggerPrice="88000", closePosition=True)
    tp = algo(
        engine,
        symbol="BTCUSDT",
        side="SELL",
        type="TAKE_PROFIT_MARKET",
        triggerPrice="95000",
        quantity="0.010",
        reduceOnly=True,
    )
    limit = order(
        engine,
        symbol="BTCUSDT",
        side="SELL",
        type="LIMIT",
        timeInForce="GTC",
        price="92000.0",
        quantity="0.010",
        reduceOnly=True,
    )
    events.clear()
    order(engine, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.020")
    assert engine.open_algos == {}
    assert engine.open_orders == {}
    expired_algos = {e["o"]["aid"] for e in events if e["e"] == "ALGO_UPDATE" and e["o"]["X"] == "EXPIRED"}
    assert expired_algos == {stop["algoId"], tp["algoId"]}
    assert any(
        e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["i"] == limit["orderId"] and e["o"]["X"] == "EXPIRED" for e in events
    )


def test_reduce_only_never_flips_the_position() -> None:
    engine, market, _, _ = make()
    price(engine, market, "BTCUSDT", "90000")
    order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    result = order(engine, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.050", reduceOnly=True)
    assert result["executedQty"] == "0.010"
    assert result["status"] == "EXPIRED"
    assert engine.positions["BTCUSDT"].amount == 0
    assert (
        code_of(lambda: order(engine, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.010", reduceOnly=True))
        == -2022
    )


def test_limit_orders_rest_and_fill_as_maker_when_price_crosses() -> None:
    engine, market, _, _ = make()
    price(engine, market, "ETHUSDT", "3000")
    resting = order(
        engine, symbol="ETHUSDT", side="BUY", type="LIMIT", timeInForce="GTC", price="2950.00", quantity="1.000"
    )
    assert resting["status"] == "NEW"
    assert D(engine.account_json(3)["totalOpenOrderInitialMargin"]) > 0
    price(engine, market, "ETHUSDT", "2960")
    assert engine.query_order(as_params(symbol="ETHUSDT", orderId=resting["orderId"]))["status"] == "NEW"
    price(engine, market, "ETHUSDT", "2949")
    filled = engine.query_order(as_params(symbol="ETHUSDT", orderId=resting["orderId"]))
    assert filled["status"] == "FILLED"
    assert D(filled["avgPrice"]) == D("2950")
    assert engine.trades[-1]["maker"] is True
    assert D(engine.trades[-1]["commission"]) == D("2950") * D("0.0002")


def test_time_in_force_gtx_ioc_fok() -> None:
    engine, market, _, _ = make(balance="100000000")
    price(engine, market, "ETHUSDT", "3000")
    crossing = {"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "price": "3010.00", "quantity": "1.000"}
    assert code_of(lambda: order(engine, timeInForce="GTX", **crossing)) == -5022
    at_ask = {**crossing, "price": str(engine.quote("ETHUSDT").ask), "quantity": "9000.000"}
    assert code_of(lambda: order(engine, timeInForce="FOK", **at_ask)) == -5021
    ioc = order(engine, timeInForce="IOC", **{**crossing, "price": "2990.00"})
    assert ioc["status"] == "EXPIRED"
    assert ioc["executedQty"] == "0.000"


def test_filter_and_parameter_error_codes() -> None:
    engine, market, _, _ = make()
    price(engine, market, "BTCUSDT", "90000")
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    assert code_of(lambda: order(engine, **base, price="90000.123", quantity="0.010")) == -1111
    assert code_of(lambda: order(engine, **base, price="90000.05", quantity="0.010")) == -4014
    assert code_of(lambda: order(engine, **base, price="90000.0", quantity="0.0105")) == -1111
    assert code_of(lambda: order(engine, **{**base, "symbol": "DOGEUSDT"}, price="0.18000", quantity="100.5")) == -1111
    price(engine, market, "AAVEUSDT", "250")
    assert code_of(lambda: order(engine, **{**base, "symbol": "AAVEUSDT"}, price="250.000", quantity="1.05")) == -4023
    assert code_of(lambda: order(engine, **base, price="90000.0", quantity="0.001")) == -4164
    assert code_of(lambda: order(engine, **base, price="99000.0", quantity="0.010")) == -4016
    assert code_of(lambda: order(engine, **base, quantity="0.010")) == -1102
    assert code_of(lambda: order(engine, **base, price="90000.0", quantity="0.010\n")) == -1100
    assert code_of(lambda: order(engine, **{**base, "symbol": "NOPEUSDT"}, price="1", quantity="1")) == -1121
    assert code_of(lambda: order(engine, **{**base, "type": "STOP_MARKET"}, quantity="0.010")) == -4120
    assert code_of(lambda: order(engine, **base, price="90000.0", quantity="0.010", newClientOrderId="x" * 37)) == -4015
    assert code_of(lambda: order(engine, **base, price="90000.0", quantity="0.010", newClientOrderId="bad id")) == -4015
    assert code_of(lambda: order(engine, **base, price="90000.0", quantity="0.010", newClientOrderId="ok\n")) == -4015
    assert code_of(lambda: order(engine, **base, price="90000.0", quantity="0.010", positionSide="LONG")) == -4061
    assert code_of(lambda: order(engine, **base, price="90000.0", quantity="1000")) == -2019
    resting = {**base, "price": "89000.0", "quantity": "0.010", "newClientOrderId": "ats_k:1/E"}
    order(engine, **resting)
    assert code_of(lambda: order(engine, **resting)) == -4116


def test_min_notional_does_not_apply_to_reduce_only() -> None:
    engine, market, _, _ = make()
    price(engine, market, "BTCUSDT", "90000")
    order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.002")
    done = order(engine, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.001", reduceOnly=True)
    assert done["status"] == "FILLED"


def test_percent_price_rejects_market_orders_far_from_mark() -> None:
    engine, market, _, _ = make()
    price(engine, market, "BTCUSDT", "90000", mark="80000")
    assert code_of(lambda: order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")) == -4131


def test_unknown_orders_and_settings_no_change_codes() -> None:
    engine, market, _, _ = make()
    price(engine, market, "BTCUSDT", "90000")
    assert code_of(lambda: engine.query_order(as_params(symbol="BTCUSDT", orderId=1))) == -2013
    assert code_of(lambda: engine.cancel_order(as_params(symbol="BTCUSDT", origClientOrderId="nope"))) == -2011
    assert code_of(lambda: engine.cancel_algo(as_params(algoId=5))) == -2011
    assert code_of(lambda: engine.change_margin_type(as_params(symbol="BTCUSDT", marginType="CROSSED"))) == -4046
    assert code_of(lambda: engine.change_position_mode(as_params(dualSidePosition=False))) == -4059
    order(engine, symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", price="89000.0", quantity="0.010")
    assert code_of(lambda: engine.change_margin_type(as_params(symbol="BTCUSDT", marginType="ISOLATED"))) == -4047
    engine.cancel_all(as_params(symbol="BTCUSDT"))
    order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    assert code_of(lambda: engine.change_margin_type(as_params(symbol="BTCUSDT", marginType="ISOLATED"))) == -4048
    assert code_of(lambda: engine.change_leverage(as_params(symbol="BTCUSDT", leverage=126))) == -4028


def test_hedge_mode_is_refused_at_the_switch_and_position_side_must_be_both() -> None:
    engine, market, _, _ = make()
    price(engine, market, "BTCUSDT", "90000")
    assert code_of(lambda: engine.change_position_mode(as_params(dualSidePosition=True))) == -1002
    assert not engine.dual_side
    assert code_of(lambda: engine.change_position_mode(as_params(dualSidePosition=False))) == -4059
    long_side = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010", "positionSide": "LONG"}
    assert code_of(lambda: order(engine, **long_side)) == -4061


def test_trailing_stop_activation_on_the_wrong_side_of_the_market_would_trigger_immediately() -> None:
    engine, market, _, _ = make()
    price(engine, market, "ETHUSDT", "3000")
    trail = {"symbol": "ETHUSDT", "type": "TRAILING_STOP_MARKET", "quantity": "1.000", "callbackRate": "1"}
    assert code_of(lambda: algo(engine, side="SELL", activatePrice="2990", **trail)) == -2021
    assert code_of(lambda: algo(engine, side="BUY", activatePrice="3010", **trail)) == -2021
    assert algo(engine, side="SELL", activatePrice="3010", **trail)["algoStatus"] == "NEW"
    assert algo(engine, side="BUY", activatePrice="2990", **trail)["algoStatus"] == "NEW"
    assert algo(engine, side="SELL", **trail)["algoStatus"] == "NEW"  # no activation price: trails at once


def test_duplicate_client_id_is_allowed_once_the_first_order_is_no_longer_open() -> None:
    engine, market, _, _ = make()
    price(engine, market, "BTCUSDT", "90000")
    first = order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010", newClientOrderId="same")
    second = order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010", newClientOrderId="same")
    assert first["orderId"] != second["orderId"]


def test_an_open_algo_order_refuses_a_second_with_its_client_id_until_it_is_gone() -> None:
    """The exchange's last line of defence against a re-sent stop: -4116 before -4130, while the first is open."""
    engine, market, _, _ = make()
    price(engine, market, "BTCUSDT", "90000")
    order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    stop = {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "triggerPrice": "88000", "closePosition": True}
    first = algo(engine, **stop, clientAlgoId="ats_k_S1")
    assert code_of(lambda: algo(engine, **stop, clientAlgoId="ats_k_S1")) == -4116
    engine.cancel_algo(as_params(algoId=first["algoId"]))
    assert algo(engine, **stop, clientAlgoId="ats_k_S1")["algoId"] != first["algoId"]


def test_snapshot_round_trip_keeps_the_paper_account() -> None:
    engine, market, clock, _ = make()
    price(engine, market, "BTCUSDT", "90000")
    engine.change_margin_type(as_params(symbol="BTCUSDT", marginType="ISOLATED"))
    order(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    algo(engine, symbol="BTCUSDT", side="SELL", type="STOP_MARKET", triggerPrice="88000", closePosition=True)
    snapshot = engine.snapshot()
    restored = Engine(market, clock)
    restored.restore(snapshot)
    assert restored.wallet == engine.wallet
    assert restored.positions["BTCUSDT"].amount == D("0.010")
    assert restored.positions["BTCUSDT"].isolated_wallet == engine.positions["BTCUSDT"].isolated_wallet
    assert len(restored.open_algos) == 1
    assert restored.setting("BTCUSDT").margin_type == "ISOLATED"
    next_order = order(restored, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    assert next_order["orderId"] > max(engine.orders)


def test_a_countdown_survives_a_restart_with_state() -> None:
    """countdownCancelAll keeps its deadline through snapshot and restore (and JSON): the orders go when it passes."""
    engine, market, clock, _ = make()
    price(engine, market, "ETHUSDT", "3000")
    resting = order(engine, symbol="ETHUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="1.000",
                    price="2900")  # fmt: skip
    engine.countdown_cancel_all(as_params(symbol="ETHUSDT", countdownTime=10_000))
    restored = Engine(market, clock)
    restored.restore(json.loads(json.dumps(engine.snapshot())))
    clock.advance(5)
    price(restored, market, "ETHUSDT", "3001")
    assert resting["orderId"] in restored.open_orders
    clock.advance(6)
    price(restored, market, "ETHUSDT", "3002")
    assert resting["orderId"] not in restored.open_orders
    assert not restored.countdowns


def test_history_is_capped() -> None:
    clock = FakeClock(START_MS)
    market = Market(SyntheticSource(seed=3), interval="1h", start_ms=START_MS, history_bars=60)
    engine = Engine(market, clock, options=EngineOptions(max_history=20))
    price(engine, market, "DOGEUSDT", "0.18")
    for _ in range(30):
        order(engine, symbol="DOGEUSDT", side="BUY", type="MARKET", quantity="100")
        order(engine, symbol="DOGEUSDT", side="SELL", type="MARKET", quantity="100")
    assert len(engine.orders) <= 20
    assert len(engine.trades) == 20
    assert len(engine.income) == 20
