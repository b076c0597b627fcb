"""The less common Binance endpoints over real HTTP: batch, modify, test order, margin, countdown, history."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from sim.server import SimServer
from tests.integration.sim.wire import Client


@pytest.fixture
async def client(sim: SimServer) -> Any:
    c = Client(sim)
    yield c
    await c.aclose()


async def test_test_order_validates_and_places_nothing(sim: SimServer, client: Client) -> None:
    await sim.set_price("BTCUSDT", Decimal(90000))
    ok = await client.post("/fapi/v1/order/test", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    assert ok.status_code == 200
    assert (ok.json()["orderId"], ok.json()["status"]) == (0, "NEW")
    bad = await client.post("/fapi/v1/order/test", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.0101")
    assert bad.json()["code"] == -1111
    assert sim.engine.orders == {}
    assert sim.engine.positions.get("BTCUSDT") is None or sim.engine.positions["BTCUSDT"].amount == 0


async def test_batch_orders_answer_each_order_on_its_own_and_cancel_in_batch(sim: SimServer, client: Client) -> None:
    await sim.set_price("BTCUSDT", Decimal(90000))
    batch = [
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.010",
         "price": "86000", "newClientOrderId": "b1"},
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.010",
         "price": "86000.05"},
        {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "quantity": "0.010", "stopPrice": "80000"},
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.010",
         "price": "86500", "newClientOrderId": "b4"},
    ]  # fmt: skip
    placed = (await client.post("/fapi/v1/batchOrders", batchOrders=json.dumps(batch))).json()
    assert placed[0]["clientOrderId"] == "b1"
    assert placed[1]["code"] == -4014
    assert placed[2]["code"] == -4120
    assert placed[3]["clientOrderId"] == "b4"
    too_many = await client.post("/fapi/v1/batchOrders", batchOrders=json.dumps(batch * 2))
    assert too_many.json()["code"] == -1130
    ids = [placed[0]["orderId"], 123]
    cancelled = (await client.delete("/fapi/v1/batchOrders", symbol="BTCUSDT", orderIdList=json.dumps(ids))).json()
    assert cancelled[0]["status"] == "CANCELED"
    assert cancelled[1]["code"] == -2011
    by_client = await client.delete("/fapi/v1/batchOrders", symbol="BTCUSDT", origClientOrderIdList='["b4"]')
    assert by_client.json()[0]["status"] == "CANCELED"


async def test_modify_order_amends_price_and_quantity_and_fills_when_it_crosses(sim: SimServer, client: Client) -> None:
    await sim.set_price("BTCUSDT", Decimal(90000))
    events: list[dict[str, Any]] = []
    sim.engine.subscribe(events.append)
    order = (
        await client.post(
            "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010",
            price="86000",
        )
    ).json()  # fmt: skip
    same = await client.put("/fapi/v1/order", symbol="BTCUSDT", orderId=order["orderId"], side="BUY",
                            quantity="0.010", price="86000")  # fmt: skip
    assert same.json()["code"] == -5027
    amended = await client.put("/fapi/v1/order", symbol="BTCUSDT", orderId=order["orderId"], side="BUY",
                               quantity="0.020", price="87000")  # fmt: skip
    assert (amended.json()["price"], amended.json()["origQty"], amended.json()["status"]) == (
        "87000.00",
        "0.020",
        "NEW",
    )
    assert [e["o"]["x"] for e in events if e["e"] == "ORDER_TRADE_UPDATE"][-1] == "AMENDMENT"
    crossing = await client.put("/fapi/v1/order", symbol="BTCUSDT", orderId=order["orderId"], side="BUY",
                                quantity="0.020", price="91000")  # fmt: skip
    assert crossing.json()["status"] == "FILLED"
    gone = await client.put("/fapi/v1/order", symbol="BTCUSDT", orderId=order["orderId"], side="BUY",
                            quantity="0.020", price="86000")  # fmt: skip
    assert gone.json()["code"] == -2013


async def test_isolated_position_margin_can_be_added_and_removed_with_history(sim: SimServer, client: Client) -> None:
    await sim.set_price("BTCUSDT", Decimal(90000))
    cross = await client.post("/fapi/v1/positionMargin", symbol="BTCUSDT", amount="10", type=1)
    assert cross.json()["code"] == -4049  # ADD_ISOLATED_MARGIN_REJECT
    await client.post("/fapi/v1/marginType", symbol="BTCUSDT", marginType="ISOLATED")
    none = await client.post("/fapi/v1/positionMargin", symbol="BTCUSDT", amount="10", type=1)
    assert none.json()["code"] == -4054  # ADD_ISOLATED_MARGIN_NO_POSITION_REJECT
    await client.post("/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    before = sim.engine.positions["BTCUSDT"].isolated_wallet
    added = await client.post("/fapi/v1/positionMargin", symbol="BTCUSDT", amount="25", type=1)
    assert added.json() == {"amount": 25.0, "code": 200, "msg": "Successfully modify position margin.", "type": 1}
    assert sim.engine.positions["BTCUSDT"].isolated_wallet == before + 25
    too_much = await client.post("/fapi/v1/positionMargin", symbol="BTCUSDT", amount="10000", type=2)
    assert too_much.json()["code"] == -4051
    await client.post("/fapi/v1/positionMargin", symbol="BTCUSDT", amount="5", type=2)
    history = (await client.get("/fapi/v1/positionMargin/history", symbol="BTCUSDT")).json()
    assert [(h["type"], h["amount"]) for h in history] == [(1, "25.00000000"), (2, "5.00000000")]
    adl = (await client.get("/fapi/v1/adlQuantile", symbol="BTCUSDT")).json()
    assert adl[0]["symbol"] == "BTCUSDT"
    assert set(adl[0]["adlQuantile"]) == {"LONG", "SHORT", "BOTH"}


async def test_countdown_cancel_all_cancels_open_orders_unless_renewed(sim: SimServer, client: Client) -> None:
    await sim.set_price("BTCUSDT", Decimal(90000))
    await client.post("/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                      quantity="0.010", price="86000")  # fmt: skip
    armed = await client.post("/fapi/v1/countdownCancelAll", symbol="BTCUSDT", countdownTime=10_000)
    assert armed.json() == {"symbol": "BTCUSDT", "countdownTime": "10000"}
    await sim.advance(8)
    await client.post("/fapi/v1/countdownCancelAll", symbol="BTCUSDT", countdownTime=10_000)  # heartbeat
    await sim.advance(8)
    assert len(sim.engine.open_orders) == 1
    await sim.advance(3)
    assert sim.engine.open_orders == {}


async def test_market_history_endpoints_answer_in_binance_shapes(sim: SimServer, client: Client) -> None:
    await sim.advance(5)
    http = client.http
    histories: list[tuple[str, dict[str, str | int]]] = [
        ("/fapi/v1/markPriceKlines", {"symbol": "BTCUSDT", "interval": "4h", "limit": 10}),
        ("/fapi/v1/indexPriceKlines", {"pair": "BTCUSDT", "interval": "1h", "limit": 10}),
        ("/fapi/v1/premiumIndexKlines", {"symbol": "BTCUSDT", "interval": "1d", "limit": 10}),
        ("/fapi/v1/continuousKlines", {"pair": "BTCUSDT", "contractType": "PERPETUAL", "interval": "1M", "limit": 2}),
    ]
    for path, params in histories:
        rows = (await http.get(path, params=params)).json()
        assert len(rows) == params["limit"], path
        assert all(len(r) == 12 and r[6] > r[0] for r in rows), path
    too_fine = await http.get("/fapi/v1/markPriceKlines", params={"symbol": "BTCUSDT", "interval": "5m"})
    assert too_fine.json()["code"] == -1120
    trades = (await http.get("/fapi/v1/aggTrades", params={"symbol": "BTCUSDT", "limit": 3})).json()
    assert len(trades) == 3
    assert [t["a"] for t in trades] == sorted(t["a"] for t in trades)
    assert set(trades[0]) == {"a", "p", "q", "f", "l", "T", "m"}
    recent = (await http.get("/fapi/v1/trades", params={"symbol": "BTCUSDT", "limit": 2})).json()
    assert set(recent[0]) == {"id", "price", "qty", "quoteQty", "time", "isBuyerMaker"}
    limits = (await client.get("/fapi/v1/rateLimit/order")).json()
    assert {(r["interval"], r["limit"]) for r in limits} == {("SECOND", 300), ("MINUTE", 1200)}
    assert (await client.get("/fapi/v1/apiTradingStatus")).json()["indicators"] == {}
    assert (await client.get("/fapi/v1/forceOrders")).json() == []
