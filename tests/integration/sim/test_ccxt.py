"""Wire compatibility: ccxt's independent Binance USDⓈ-M client works against the simulated exchange."""

from __future__ import annotations

import ccxt
import pytest

from ats.sim.server import SimServerThread


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
