"""Market and user streams against the simulated exchange: real WebSockets on loopback, injected failures."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from ats.domain import Side
from ats.exchange.base import (
    AccountUpdate,
    AlgoOrderRequest,
    AlgoStatus,
    AlgoUpdate,
    BookTicker,
    KlineUpdate,
    ListenKeyExpired,
    MarkPriceUpdate,
    OrderRequest,
    OrderType,
    OrderUpdate,
    StreamGap,
    UserEvent,
)
from ats.exchange.binance import BinanceFutures
from ats.exchange.streams import BinanceMarketStream, BinanceUserStream
from sim.server import SimServer

FAST: dict[str, Any] = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "ping_interval_s": 5.0}


async def next_matching(events: AsyncIterator[Any], wanted: type, timeout_s: float = 5.0) -> Any:
    async with asyncio.timeout(timeout_s):
        async for event in events:
            if isinstance(event, wanted):
                return event
    raise AssertionError("the stream ended")


def buy(qty: str, cid: str, side: Side = Side.BUY) -> OrderRequest:
    return OrderRequest("BTCUSDT", side, OrderType.MARKET, Decimal(qty), cid)


async def test_market_streams_are_routed_parsed_and_resubscribed(exchange_sim: SimServer) -> None:
    async with BinanceMarketStream(exchange_sim.ws_url, **FAST) as stream:
        events = stream.events()
        await stream.subscribe(["BTCUSDT@markPrice@1s", "btcusdt@bookTicker", "btcusdt@kline_1h"])
        assert await stream.wait_connected(5)
        assert sorted(c.path for c in exchange_sim.connections) == ["/market/stream", "/public/stream"]
        await exchange_sim.advance(1)
        kinds: set[type] = set()
        async with asyncio.timeout(5):
            async for event in events:
                kinds.add(type(event))
                if kinds >= {MarkPriceUpdate, BookTicker, KlineUpdate}:
                    break
        await stream.subscribe(["ethusdt@markPrice@1s"])  # live, on the open connection
        await exchange_sim.disconnect_websockets("/market/*")
        gap = await next_matching(events, StreamGap)
        assert gap.stream == "market"
        assert await stream.wait_connected(5)
        await exchange_sim.advance(1)
        symbols: set[str] = set()
        async with asyncio.timeout(5):
            async for event in events:
                if isinstance(event, MarkPriceUpdate):
                    symbols.add(event.symbol)
                if symbols == {"BTCUSDT", "ETHUSDT"}:
                    break
        assert stream.health().reconnects == 1


async def test_user_stream_delivers_fills_and_algo_updates(client: BinanceFutures, exchange_sim: SimServer) -> None:
    async with BinanceUserStream(client, exchange_sim.ws_url, **FAST) as stream:
        events = stream.events()
        assert await stream.wait_connected(5)
        entry = await client.new_order(buy("0.010", "ats_u1_E"))
        fill = await next_matching(events, OrderUpdate)
        while fill.execution_type != "TRADE":
            fill = await next_matching(events, OrderUpdate)
        assert (fill.order_id, fill.client_order_id, fill.cum_filled_qty) == (
            entry.order_id,
            "ats_u1_E",
            entry.executed_qty,
        )
        account = await next_matching(events, AccountUpdate)
        assert account.positions[0].amount == Decimal("0.010")

        stop = await client.new_algo_order(
            AlgoOrderRequest(
                "BTCUSDT", Side.SELL, OrderType.STOP_MARKET, Decimal(89000), "ats_u1_S1", close_position=True
            )
        )
        placed = await next_matching(events, AlgoUpdate)
        assert (placed.algo_id, placed.status) == (stop.algo_id, AlgoStatus.NEW)
        await exchange_sim.set_price("BTCUSDT", Decimal(88_900))
        statuses = []
        closing: OrderUpdate | None = None
        async with asyncio.timeout(5):
            async for event in events:
                if isinstance(event, AlgoUpdate):
                    statuses.append(event.status)
                if isinstance(event, OrderUpdate) and event.execution_type == "TRADE":
                    closing = event
                if closing is not None and AlgoStatus.FINISHED in statuses:
                    break
        assert closing is not None
        assert closing.side is Side.SELL
        assert AlgoStatus.TRIGGERED in statuses


async def test_no_fill_is_lost_across_disconnects_stalls_and_listen_key_expiry(
    client: BinanceFutures, exchange_sim: SimServer
) -> None:
    """The consumer's side of the contract: on every StreamGap, fetch the gap's fills over REST."""
    fills: dict[int, str] = {}  # trade id -> "stream" or "rest"
    gaps: list[StreamGap] = []
    changed = asyncio.Condition()

    async def consume(events: AsyncIterator[UserEvent]) -> None:
        async for event in events:
            if isinstance(event, OrderUpdate) and event.execution_type == "TRADE":
                fills.setdefault(event.trade_id, "stream")
            elif isinstance(event, StreamGap):
                for trade in await client.user_trades("BTCUSDT", start_ms=event.down_since_ms - 1):
                    fills.setdefault(trade.trade_id, "rest")
                gaps.append(event)
            async with changed:
                changed.notify_all()

    async def until(condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5), changed:
            await changed.wait_for(condition)

    stream = BinanceUserStream(client, exchange_sim.ws_url, stale_after_s=0.4, **FAST)
    assert await stream.wait_connected(5)
    consumer = asyncio.create_task(consume(stream.events()))
    try:
        await client.new_order(buy("0.010", "ats_n1_E"))
        await until(lambda: len(fills) == 1)

        await exchange_sim.disconnect_websockets("/private/*")
        await client.new_order(buy("0.010", "ats_n2_E"))
        await until(lambda: len(gaps) >= 1 and len(fills) == 2)

        exchange_sim.stall_websockets(3.0, "/private/*")  # silent: the events of this order are dropped
        stalled = await client.new_order(buy("0.010", "ats_n3_E"))
        await until(lambda: len(fills) == 3)  # the watchdog notices the silence; the gap is filled over REST

        gaps_before = len(gaps)
        exchange_sim.expire_listen_keys()
        await until(lambda: len(gaps) > gaps_before)
        await client.new_order(buy("0.030", "ats_n4_E", side=Side.SELL))
        await until(lambda: len(fills) == 4)
    finally:
        await stream.aclose()
        consumer.cancel()
    every_fill = {t.trade_id for t in await client.user_trades("BTCUSDT")}
    assert len(every_fill) == 4
    assert set(fills) == every_fill  # nothing lost
    stalled_trades = [t.trade_id for t in await client.user_trades("BTCUSDT") if t.order_id == stalled.order_id]
    assert [fills[t] for t in stalled_trades] == ["rest"]  # the stalled stream never delivered it
    assert any(g.reason == "listenKeyExpired" for g in gaps)
    assert stream.health().reconnects >= 3


async def test_listen_key_expiry_reaches_the_consumer(client: BinanceFutures, exchange_sim: SimServer) -> None:
    async with BinanceUserStream(client, exchange_sim.ws_url, **FAST) as stream:
        events = stream.events()
        assert await stream.wait_connected(5)
        first_key = client.listen_key
        exchange_sim.expire_listen_keys()
        assert isinstance(await next_matching(events, ListenKeyExpired), ListenKeyExpired)
        gap = await next_matching(events, StreamGap)
        assert gap.reason == "listenKeyExpired"
        assert client.listen_key != first_key
        await client.new_order(buy("0.010", "ats_k_E"))
        assert isinstance(await next_matching(events, OrderUpdate), OrderUpdate)


async def test_nothing_secret_is_logged_over_real_http_and_websockets(
    client: BinanceFutures, exchange_sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with BinanceUserStream(client, exchange_sim.ws_url, **FAST) as stream:
        events = stream.events()
        assert await stream.wait_connected(5)
        await client.new_order(buy("0.010", "ats_log_E"))
        await next_matching(events, OrderUpdate)
        await exchange_sim.disconnect_websockets("/private/*")
        await next_matching(events, StreamGap)
    listen_key = client.listen_key
    assert listen_key
    for record in caplog.records:
        text = record.getMessage() + json.dumps(getattr(record, "fields", {}), default=str)
        for secret in (exchange_sim.api_key, exchange_sim.api_secret, listen_key, "signature="):
            assert secret not in text, record.name
