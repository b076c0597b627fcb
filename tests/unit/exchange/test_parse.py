"""Parsers: Binance JSON (as documented, plus fields added later) -> typed values and events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ats.domain import Side
from ats.exchange import parse
from ats.exchange.base import (
    AccountUpdate,
    AggTrade,
    AlgoStatus,
    AlgoUpdate,
    BookTicker,
    ForceOrder,
    KlineUpdate,
    ListenKeyExpired,
    MarginType,
    MarkPriceUpdate,
    OrderStatus,
    OrderType,
    OrderUpdate,
    WorkingType,
)
from ats.exchange.parse import MalformedPayload

NEW_FIELDS = {"st": "x", "ps": "BOTH", "ap": "1", "nq": "2", "addedIn2027": {"a": [1, 2]}}

ORDER_UPDATE: dict[str, Any] = {
    "e": "ORDER_TRADE_UPDATE",
    "E": 1568879465651,
    "T": 1568879465650,
    "o": {
        "s": "BTCUSDT",
        "c": "ats_0123456789abcdef_E",
        "S": "SELL",
        "o": "MARKET",
        "f": "GTC",
        "q": "0.001",
        "p": "0",
        "ap": "9000.5",
        "sp": "0",
        "x": "TRADE",
        "X": "FILLED",
        "i": 8886774,
        "l": "0.001",
        "z": "0.001",
        "L": "9000.5",
        "N": "USDT",
        "n": "0.0045",
        "T": 1568879465650,
        "t": 42,
        "b": "0",
        "a": "9.91",
        "m": False,
        "R": True,
        "wt": "CONTRACT_PRICE",
        "ot": "MARKET",
        "ps": "BOTH",
        "cp": False,
        "rp": "1.5",
        "pP": False,
        "si": 0,
        "ss": 0,
        "V": "EXPIRE_TAKER",
        "pm": "NONE",
        "gtd": 0,
        "er": "0",
        **NEW_FIELDS,
    },
}

ALGO_UPDATE: dict[str, Any] = {
    "e": "ALGO_UPDATE",
    "T": 1750515742297,
    "E": 1750515742303,
    "o": {
        "caid": "ats_0123456789abcdef_S1",
        "aid": 2148719,
        "at": "CONDITIONAL",
        "o": "STOP_MARKET",
        "s": "BNBUSDT",
        "S": "SELL",
        "ps": "BOTH",
        "f": "GTE_GTC",
        "q": "0",
        "X": "TRIGGERED",
        "ai": "77",
        "ap": "0.00000",
        "aq": "0.00000",
        "act": "0",
        "tp": "750",
        "p": "0",
        "V": "EXPIRE_MAKER",
        "wt": "MARK_PRICE",
        "pm": "NONE",
        "cp": True,
        "pP": True,
        "R": False,
        "tt": 0,
        "gtd": 0,
        "rm": "",
        "ia": False,
    },
}

ACCOUNT_UPDATE: dict[str, Any] = {
    "e": "ACCOUNT_UPDATE",
    "E": 1564745798939,
    "T": 1564745798938,
    "a": {
        "m": "ORDER",
        "B": [{"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "50.12345678"}],
        "P": [
            {
                "s": "BTCUSDT",
                "pa": "-0.001",
                "ep": "9000",
                "bep": "9001.1",
                "cr": "200",
                "up": "0.2732781800",
                "mt": "isolated",
                "iw": "0.06391979",
                "ps": "BOTH",
                "ma": "USDT",
            }
        ],
    },
}


def test_order_update_reads_a_fill_and_ignores_unknown_fields() -> None:
    event = parse.user_event(ORDER_UPDATE)
    assert isinstance(event, OrderUpdate)
    assert (event.symbol, event.client_order_id, event.order_id, event.side) == (
        "BTCUSDT",
        "ats_0123456789abcdef_E",
        8886774,
        Side.SELL,
    )
    assert event.order_type is OrderType.MARKET
    assert event.original_type is OrderType.MARKET
    assert (event.execution_type, event.status) == ("TRADE", OrderStatus.FILLED)
    assert (event.last_filled_qty, event.last_filled_price, event.cum_filled_qty) == (
        Decimal("0.001"),
        Decimal("9000.5"),
        Decimal("0.001"),
    )
    assert (event.commission, event.commission_asset, event.trade_id) == (Decimal("0.0045"), "USDT", 42)
    assert event.realized_pnl == Decimal("1.5")
    assert event.reduce_only
    assert not event.close_position
    assert (event.event_time_ms, event.transaction_time_ms) == (1568879465651, 1568879465650)
    assert not event.is_liquidation


def test_a_new_order_without_commission_fields_parses() -> None:
    o = {k: v for k, v in ORDER_UPDATE["o"].items() if k not in ("n", "N", "rp", "ot")}
    event = parse.user_event({**ORDER_UPDATE, "o": {**o, "x": "NEW", "X": "NEW", "l": "0", "z": "0"}})
    assert isinstance(event, OrderUpdate)
    assert (event.commission, event.commission_asset, event.realized_pnl) == (Decimal(0), "", Decimal(0))
    assert event.original_type is OrderType.MARKET


def test_liquidation_fills_are_recognised() -> None:
    event = parse.user_event({**ORDER_UPDATE, "o": {**ORDER_UPDATE["o"], "c": "autoclose-1568879465650"}})
    assert isinstance(event, OrderUpdate)
    assert event.is_liquidation


def test_algo_update_reads_the_triggered_stop() -> None:
    event = parse.user_event(ALGO_UPDATE)
    assert isinstance(event, AlgoUpdate)
    assert (event.algo_id, event.client_algo_id) == (2148719, "ats_0123456789abcdef_S1")
    assert event.status is AlgoStatus.TRIGGERED
    assert event.order_type is OrderType.STOP_MARKET
    assert event.close_position
    assert not event.reduce_only
    assert (event.trigger_price, event.actual_order_id) == (Decimal(750), 77)
    assert (event.event_time_ms, event.transaction_time_ms) == (1750515742303, 1750515742297)


def test_algo_update_without_a_triggered_order_has_no_actual_order_id() -> None:
    event = parse.user_event({**ALGO_UPDATE, "o": {**ALGO_UPDATE["o"], "ai": "", "X": "NEW", "rm": "x"}})
    assert isinstance(event, AlgoUpdate)
    assert event.actual_order_id is None
    assert event.status is AlgoStatus.NEW
    assert event.reject_reason == "x"


def test_account_update_reads_changed_balances_and_positions() -> None:
    event = parse.user_event(ACCOUNT_UPDATE)
    assert isinstance(event, AccountUpdate)
    assert event.reason == "ORDER"
    assert event.balances[0].asset == "USDT"
    assert event.balances[0].wallet_balance == Decimal("122624.12345678")
    position = event.positions[0]
    assert (position.symbol, position.amount, position.entry_price) == ("BTCUSDT", Decimal("-0.001"), Decimal(9000))
    assert (position.margin_type, position.isolated_wallet) == ("isolated", Decimal("0.06391979"))


def test_listen_key_expired_with_a_string_event_time() -> None:
    event = parse.user_event({"e": "listenKeyExpired", "E": "1736996475556", "listenKey": "abc"})
    assert event == ListenKeyExpired(event_time_ms=1736996475556)


def test_unknown_user_events_are_ignored() -> None:
    assert parse.user_event({"e": "TRADE_LITE", "E": 1}) is None
    assert parse.user_event({"e": "ACCOUNT_CONFIG_UPDATE", "E": 1, "ac": {"s": "BTCUSDT", "l": 25}}) is None
    assert parse.user_event({"no": "type"}) is None


@pytest.mark.parametrize(
    "payload",
    [
        {**ORDER_UPDATE, "o": {**ORDER_UPDATE["o"], "X": "EXPLODED"}},
        {**ORDER_UPDATE, "o": {**ORDER_UPDATE["o"], "q": "one"}},
        {**ORDER_UPDATE, "o": {k: v for k, v in ORDER_UPDATE["o"].items() if k != "i"}},
        {**ORDER_UPDATE, "o": "not an object"},
        {**ALGO_UPDATE, "o": {**ALGO_UPDATE["o"], "aid": True}},
        {**ACCOUNT_UPDATE, "a": {"B": "nope"}},
        {"e": "ORDER_TRADE_UPDATE", "E": 1},
        [1, 2, 3],
    ],
)
def test_malformed_user_events_raise(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        parse.user_event(payload)


def test_market_events() -> None:
    mark = {"e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15000000", "ap": "11794.1",
            "i": "11784.62659091", "P": "11784.25641265", "r": "0.00038167", "T": 1562306400000}  # fmt: skip
    kline = {"e": "kline", "E": 1638747660000, "s": "BTCUSDT", "k": {
        "t": 1638747660000, "T": 1638747719999, "s": "BTCUSDT", "i": "1m", "f": 100, "L": 200, "o": "0.0010",
        "c": "0.0020", "h": "0.0025", "l": "0.0015", "v": "1000", "n": 100, "x": False, "q": "1.0000",
        "V": "500", "Q": "0.500", "B": "123456"}}  # fmt: skip
    book = {"e": "bookTicker", "u": 400900217, "E": 1568014460893, "T": 1568014460891, "s": "BNBUSDT",
            "b": "25.35190000", "B": "31.21000000", "a": "25.36520000", "A": "40.66000000"}  # fmt: skip
    agg = {"e": "aggTrade", "E": 123456789, "s": "BTCUSDT", "a": 5933014, "p": "0.001", "q": "100", "nq": "100",
           "f": 100, "l": 105, "T": 123456785, "m": True}  # fmt: skip
    force = {"e": "forceOrder", "E": 1568014460893, "o": {"s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC",
             "q": "0.014", "p": "9910", "ap": "9910.5", "X": "FILLED", "l": "0.014", "z": "0.014",
             "T": 1568014460893}}  # fmt: skip
    (m,) = parse.market_events(mark)
    assert m == MarkPriceUpdate("BTCUSDT", Decimal("11794.15"), Decimal("11784.62659091"), Decimal("0.00038167"),
                                1562306400000, 1562305380000)  # fmt: skip
    (k,) = parse.market_events(kline)
    assert isinstance(k, KlineUpdate)
    assert k.interval == "1m"
    assert not k.closed
    assert k.close == Decimal("0.0020")
    assert k.trades == 100
    assert k.taker_buy_volume == Decimal(500)
    (b,) = parse.market_events(book)
    assert b == BookTicker("BNBUSDT", Decimal("25.3519"), Decimal("31.21"), Decimal("25.3652"), Decimal("40.66"),
                           1568014460893)  # fmt: skip
    (a,) = parse.market_events(agg)
    assert a == AggTrade("BTCUSDT", Decimal("0.001"), Decimal(100), True, 123456785, 123456789)
    (f,) = parse.market_events(force)
    assert f == ForceOrder("BTCUSDT", Side.SELL, Decimal("9910.5"), Decimal("0.014"), 1568014460893, 1568014460893)


def test_array_payloads_and_unknown_market_events() -> None:
    marks = [
        {"e": "markPriceUpdate", "E": 1, "s": "BTCUSDT", "p": "1", "i": "1", "r": "0", "T": 2},
        {"e": "markPriceUpdate", "E": 1, "s": "ETHUSDT", "p": "2", "i": "2", "r": "0", "T": 2},
    ]
    assert [e.symbol for e in parse.market_events(marks)] == ["BTCUSDT", "ETHUSDT"]  # type: ignore[union-attr]
    assert parse.market_events({"e": "24hrMiniTicker", "E": 1, "s": "BTCUSDT"}) == []
    assert parse.market_events({"e": "contractInfo"}) == []
    with pytest.raises(MalformedPayload):
        parse.market_events({"e": "markPriceUpdate", "E": 1, "s": "BTCUSDT", "p": None})
    with pytest.raises(MalformedPayload):
        parse.market_events("text")


def test_numbers_never_pass_through_binary_floats() -> None:
    mark = {"e": "markPriceUpdate", "E": 1, "s": "X", "p": 0.1, "i": 3, "r": "1e-4", "T": 2}
    (event,) = parse.market_events(mark)
    assert isinstance(event, MarkPriceUpdate)
    assert (event.mark_price, event.index_price, event.funding_rate) == (Decimal("0.1"), Decimal(3), Decimal("0.0001"))
    for bad in (True, "NaN", "Infinity", "", [1]):
        with pytest.raises(MalformedPayload):
            parse.to_decimal(bad)


# ---------------------------------------------------------------------------------------------- REST values


def test_order_from_the_rest_api() -> None:
    raw = {"clientOrderId": "testOrder", "cumQty": "0", "cumQuote": "0", "executedQty": "0", "orderId": 22542179,
           "avgPrice": "0.00000", "origQty": "10", "price": "0", "reduceOnly": False, "side": "BUY",
           "positionSide": "SHORT", "status": "NEW", "stopPrice": "9300", "closePosition": False, "symbol": "BTCUSDT",
           "timeInForce": "GTD", "type": "LIMIT", "origType": "LIMIT", "updateTime": 1566818724722,
           "workingType": "CONTRACT_PRICE", "priceProtect": False, "priceMatch": "NONE",
           "selfTradePreventionMode": "NONE", "goodTillDate": 1693207680000}  # fmt: skip
    order = parse.order(raw)
    assert (order.order_id, order.client_order_id, order.type, order.status) == (
        22542179,
        "testOrder",
        OrderType.LIMIT,
        OrderStatus.NEW,
    )
    assert order.orig_qty == Decimal(10)
    assert order.update_time_ms == 1566818724722


def test_algo_order_from_the_rest_api() -> None:
    raw = {"algoId": 2146760, "clientAlgoId": "6B2I9XVcJpCjqPAJ4YoFX7", "algoType": "CONDITIONAL",
           "orderType": "TAKE_PROFIT_MARKET", "symbol": "BNBUSDT", "side": "SELL", "positionSide": "BOTH",
           "timeInForce": "GTC", "quantity": "0.01", "algoStatus": "NEW", "actualOrderId": "", "actualPrice": "0",
           "triggerPrice": "750.000", "price": "0", "icebergQuantity": None, "tpOrderType": "",
           "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": "MARK_PRICE", "priceMatch": "NONE",
           "closePosition": False, "priceProtect": True, "reduceOnly": True, "createTime": 1750485492076,
           "updateTime": 1750485492076, "triggerTime": 0, "goodTillDate": 0}  # fmt: skip
    algo = parse.algo_order(raw)
    assert (algo.algo_id, algo.type, algo.status, algo.working_type) == (
        2146760,
        OrderType.TAKE_PROFIT_MARKET,
        AlgoStatus.NEW,
        WorkingType.MARK_PRICE,
    )
    assert algo.trigger_price == Decimal(750)
    assert algo.quantity == Decimal("0.01")
    assert algo.reduce_only
    assert algo.actual_order_id is None
    triggered = parse.algo_order({**raw, "algoStatus": "TRIGGERED", "actualOrderId": "12345", "orderType": None,
                                  "type": "STOP_MARKET"})  # fmt: skip
    assert triggered.actual_order_id == 12345
    assert triggered.type is OrderType.STOP_MARKET


def test_positions_from_v3_infer_the_margin_type() -> None:
    raw = {"symbol": "ADAUSDT", "positionSide": "BOTH", "positionAmt": "30", "entryPrice": "0.385",
           "breakEvenPrice": "0.385077", "markPrice": "0.41047590", "unRealizedProfit": "0.76427700",
           "liquidationPrice": "0", "isolatedMargin": "0", "notional": "12.31427700", "marginAsset": "USDT",
           "isolatedWallet": "0", "initialMargin": "0.61571385", "maintMargin": "0.08004280",
           "positionInitialMargin": "0.61571385", "openOrderInitialMargin": "0", "adl": 2, "bidNotional": "0",
           "askNotional": "0", "updateTime": 1720736417660}  # fmt: skip
    cross = parse.position_info(raw)
    assert cross.margin_type is MarginType.CROSSED
    assert cross.amount == Decimal(30)
    isolated = parse.position_info({**raw, "isolatedWallet": "5.1", "isolatedMargin": "5.8"})
    assert isolated.margin_type is MarginType.ISOLATED
    assert parse.position_info({**raw, "marginType": "isolated"}).margin_type is MarginType.ISOLATED
    assert parse.position_info({**raw, "marginType": "cross"}).margin_type is MarginType.CROSSED


def test_other_rest_values() -> None:
    ticker = parse.ticker_24h({"symbol": "BTCUSDT", "priceChange": "-94.99999800", "priceChangePercent": "-95.960",
                               "weightedAvgPrice": "0.29628482", "lastPrice": "4.00000200", "lastQty": "200.00000000",
                               "openPrice": "99.00000000", "highPrice": "100.00000000", "lowPrice": "0.10000000",
                               "volume": "8913.30000000", "quoteVolume": "15.30000000", "openTime": 1499783499040,
                               "closeTime": 1499869899040, "firstId": 28385, "lastId": 28460, "count": 76})  # fmt: skip
    assert ticker.quote_volume == Decimal("15.3")
    assert ticker.trade_count == 76
    book = parse.order_book({"lastUpdateId": 1027024, "E": 1589436922972, "T": 1589436922959,
                             "bids": [["4.00000000", "431.00000000"]], "asks": [["4.00000200", "12.00000000"]]},
                            "BTCUSDT")  # fmt: skip
    assert book.bids == [(Decimal(4), Decimal(431))]
    assert book.time_ms == 1589436922959
    trade = parse.trade({"buyer": False, "commission": "-0.07819010", "commissionAsset": "USDT", "id": 698759,
                         "maker": False, "orderId": 25851813, "price": "7819.01", "qty": "0.002",
                         "quoteQty": "15.63802", "realizedPnl": "-0.91539999", "side": "SELL",
                         "positionSide": "SHORT", "symbol": "BTCUSDT", "time": 1569514978020})  # fmt: skip
    assert trade.trade_id == 698759
    assert trade.commission == Decimal("-0.0781901")
    assert trade.side is Side.SELL
    income = parse.income({"symbol": "", "incomeType": "TRANSFER", "income": "-0.37500000", "asset": "USDT",
                           "info": "TRANSFER", "time": 1570608000000, "tranId": 9689322392, "tradeId": ""})  # fmt: skip
    assert income.income == Decimal("-0.375")
    assert income.tran_id == 9689322392
    assert income.trade_id == ""
    assert parse.server_time({"serverTime": 1499827319559}) == 1499827319559
    rates = {"symbol": "BTCUSDT", "makerCommissionRate": "0.0002", "takerCommissionRate": "0.0004"}
    assert parse.commission_rates(rates) == (Decimal("0.0002"), Decimal("0.0004"))
    config = parse.symbol_config({"symbol": "BTCUSDT", "marginType": "CROSSED", "isAutoAddMargin": "false",
                                  "leverage": 21, "maxNotionalValue": "1000000"})  # fmt: skip
    assert config.margin_type is MarginType.CROSSED
    assert config.leverage == 21


def test_kline_rows_are_checked() -> None:
    row = [1499040000000, "0.01634790", "0.80000000", "0.01575800", "0.01577100", "148976.11427815",
           1499644799999, "2434.19055334", 308, "1756.87402397", "28.46694368", "0"]  # fmt: skip
    assert parse.kline_rows([row]) == [row]
    with pytest.raises(MalformedPayload):
        parse.kline_rows([row[:8]])
    with pytest.raises(MalformedPayload):
        parse.kline_rows([[*row[:4], "x", *row[5:]]])
    with pytest.raises(MalformedPayload):
        parse.kline_rows({"code": -1})
