"""Wire compatibility: ccxt's independent Binance USDⓈ-M client works against the simulated exchange."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import ccxt
import ccxt.pro
import pytest

from sim.server import SimServer, SimServerThread


@pytest.fixture
def exchange(sim_thread: SimServerThread) -> ccxt.binanceusdm:
    client = ccxt.binanceusdm({
        "apiKey": sim_thread.api_key,
        "secret": sim_thread.api_secret,
        "options": {"fetchCurrencies": False},
    })  # fmt: skip
    for name, url in list(client.urls["api"].items()):
        if name.startswith("fapi"):
            client.urls["api"][name] = url.replace("https://fapi.binance.com", sim_thread.rest_url)
    return client


def test_ccxt_reads_markets_klines_balance_and_positions(exchange: ccxt.binanceusdm) -> None:
    markets = exchange.load_markets()
    btc = markets["BTC/USDT:USDT"]
    assert btc["precision"]["price"] == 0.1
    assert btc["limits"]["cost"]["min"] == 100
    assert len([m for m in markets.values() if m["swap"]]) >= 30
    candles = exchange.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=300)
    assert len(candles) == 300
    assert all(c[3] <= min(c[1], c[4]) and c[2] >= max(c[1], c[4]) for c in candles)
    assert exchange.fetch_balance()["USDT"]["total"] == 10000
    assert exchange.fetch_positions() == []
    assert exchange.fetch_ticker("ETH/USDT:USDT")["last"] > 0


def test_ccxt_places_and_cancels_orders(sim_thread: SimServerThread, exchange: ccxt.binanceusdm) -> None:
    sim_thread.control.set_price("BTCUSDT", "90000")
    exchange.load_markets()
    exchange.set_leverage(5, "BTC/USDT:USDT")
    bought = exchange.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
    assert bought["status"] == "closed"
    positions = exchange.fetch_positions(["BTC/USDT:USDT"])
    assert [(p["side"], p["contracts"]) for p in positions] == [("long", 0.01)]
    resting = exchange.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, 88000)
    assert exchange.fetch_order(resting["id"], "BTC/USDT:USDT")["status"] == "open"
    assert exchange.cancel_order(resting["id"], "BTC/USDT:USDT")["status"] == "canceled"
    stop = exchange.create_order(
        "BTC/USDT:USDT", "STOP_MARKET", "sell", 0.01, None, {"stopPrice": 85000, "reduceOnly": True}
    )
    open_triggers = exchange.fetch_open_orders("BTC/USDT:USDT", params={"trigger": True})
    assert [o["id"] for o in open_triggers] == [stop["id"]]
    exchange.cancel_order(stop["id"], "BTC/USDT:USDT", {"trigger": True})
    assert exchange.fetch_open_orders("BTC/USDT:USDT", params={"trigger": True}) == []
    sold = exchange.create_order("BTC/USDT:USDT", "market", "sell", 0.01, None, {"reduceOnly": True})
    assert sold["status"] == "closed"
    assert sim_thread.control.state()["positions"] == {}


def test_ccxt_trades_a_protected_position_with_the_less_common_calls(
    sim_thread: SimServerThread, exchange: ccxt.binanceusdm
) -> None:
    sim_thread.control.set_price("BTCUSDT", "90000")
    exchange.load_markets()
    symbol = "BTC/USDT:USDT"
    for interval in ("1h", "4h", "1d", "1w"):
        assert len(exchange.fetch_ohlcv(symbol, interval, limit=5)) == 5, interval
    assert len(exchange.fetch_ohlcv(symbol, "1M", limit=5)) == 3  # 1500 hourly bars span three calendar months
    mark = exchange.fetch_mark_ohlcv(symbol, "4h", limit=3)
    assert len(mark) == 3
    assert all(c[3] <= c[1] <= c[2] for c in mark)
    exchange.set_margin_mode("isolated", symbol)
    exchange.set_leverage(4, symbol)
    exchange.create_order(symbol, "market", "buy", 0.02)
    stop = exchange.create_order(symbol, "STOP_MARKET", "sell", None, None, {"stopPrice": 85000, "closePosition": True})
    target = exchange.create_order(symbol, "TAKE_PROFIT_MARKET", "sell", 0.01, None,
                                   {"stopPrice": 95000, "reduceOnly": True})  # fmt: skip
    triggers = {o["id"] for o in exchange.fetch_open_orders(symbol, params={"trigger": True})}
    assert triggers == {stop["id"], target["id"]}
    exchange.add_margin(symbol, 50)
    assert exchange.fetch_positions([symbol])[0]["collateral"] > 0
    batch = exchange.create_orders([
        {"symbol": symbol, "type": "limit", "side": "buy", "amount": 0.01, "price": 86000},
        {"symbol": symbol, "type": "limit", "side": "buy", "amount": 0.01, "price": 86500},
    ])  # fmt: skip
    assert [o["status"] for o in batch] == ["open", "open"]
    edited = exchange.edit_order(batch[0]["id"], symbol, "limit", "buy", 0.02, 87000)
    assert (edited["price"], edited["amount"]) == (87000, 0.02)
    exchange.cancel_all_orders(symbol)
    assert exchange.fetch_open_orders(symbol) == []
    sim_thread.control.set_price("BTCUSDT", "84000")
    assert exchange.fetch_positions([symbol]) == []
    assert exchange.fetch_open_orders(symbol, params={"trigger": True})[0]["id"] == target["id"]  # left open
    exchange.cancel_order(target["id"], symbol, {"trigger": True})


async def test_ccxt_pro_order_book_stays_equal_to_the_sims_through_a_3_percent_move(sim: SimServer) -> None:
    client = ccxt.pro.binanceusdm({"options": {"fetchCurrencies": False}})
    for name, url in list(client.urls["api"].items()):
        if isinstance(url, str) and name.startswith("fapi"):
            client.urls["api"][name] = url.replace("https://fapi.binance.com", sim.rest_url)
    client.urls["api"]["ws"]["linear"] = f"{sim.ws_url}/ws"
    symbol = "BTC/USDT:USDT"
    try:
        await client.load_markets()
        watching = asyncio.ensure_future(client.watch_order_book(symbol))
        while not watching.done():  # the manual market moves only when told: tick until the book is synced
            await sim.advance(1)
            await asyncio.sleep(0.05)
        await watching
        start = sim.market.quote("BTCUSDT").last
        for step in range(1, 31):
            await sim.set_price("BTCUSDT", start * (1 + Decimal("0.001") * step))
            book = await asyncio.wait_for(client.watch_order_book(symbol), 10)
            assert book["bids"][0][0] < book["asks"][0][0], "ccxt.pro's book is crossed"
        snapshot = sim.market.book("BTCUSDT")
        assert [[float(level.price), float(level.qty)] for level in snapshot[0]] == book["bids"]
        assert [[float(level.price), float(level.qty)] for level in snapshot[1]] == book["asks"]
        assert book["nonce"] == int(sim.market.book_id[sim.market.index["BTCUSDT"]])
    finally:
        await client.close()
