"""BinanceFutures against the simulated exchange over real HTTP on loopback."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ats.domain import Side, interval_ms
from ats.exchange.base import (
    AlgoOrderRequest,
    AlgoStatus,
    MarginType,
    OrderRequest,
    OrderStatus,
    OrderType,
)
from ats.exchange.binance import BinanceFutures
from ats.exchange.budget import InMemoryBudgetStore, RequestBudget
from ats.exchange.errors import (
    AuthError,
    FilterRejected,
    IpBanned,
    NotionalTooSmall,
    RateLimited,
    UnknownOutcome,
    UseAlgoEndpoint,
)
from sim.faults import FaultKind
from sim.server import SimServer

from .conftest import Connect, CountingTransport, SimTime


def market_buy(qty: str, cid: str, *, reduce_only: bool = False, side: Side = Side.BUY) -> OrderRequest:
    return OrderRequest("BTCUSDT", side, OrderType.MARKET, Decimal(qty), cid, reduce_only=reduce_only)


async def test_signed_requests_are_accepted_and_a_wrong_secret_is_not(client: BinanceFutures, connect: Connect) -> None:
    account = await client.account()
    assert account.total_wallet_balance == Decimal(10_000)
    with pytest.raises(AuthError) as info:
        await connect(api_secret="wrong-secret").account()
    assert info.value.code == -1022


@pytest.mark.parametrize("skew_ms", [7_000, -3_000])
async def test_time_sync_recovers_from_injected_clock_skew(
    client: BinanceFutures, exchange_sim: SimServer, transport: CountingTransport, skew_ms: int
) -> None:
    await client.account()  # synced while the clocks agree
    assert abs(client.time_offset_ms) <= 5
    exchange_sim.faults.clock_skew_ms = skew_ms
    sent = transport.sent
    await client.account()  # -1021, resync, one retry: succeeds
    assert abs(client.time_offset_ms - skew_ms) <= 5
    assert transport.sent - sent == 1 + 3 + 1  # rejected request, three time samples, the retry


async def test_weight_reported_by_the_exchange_is_tracked(
    connect: Connect, exchange_sim: SimServer, sim_time: SimTime
) -> None:
    sim_time.advance(60 - (sim_time.now_ms() % 60_000) / 1000)  # start of a fresh minute
    store = InMemoryBudgetStore()
    client = connect(budget=RequestBudget(store, scope="sim", clock=sim_time))
    await client.exchange_info()
    await client.tickers_24h()
    await client.klines("BTCUSDT", "1h", limit=100)
    used = exchange_sim.limits.used_weight("127.0.0.1")
    assert used >= 1 + 40 + 2
    assert store.snapshot("sim").used_weight == used


async def test_a_429_is_waited_out_then_retried(
    client: BinanceFutures, exchange_sim: SimServer, sim_time: SimTime, transport: CountingTransport
) -> None:
    exchange_sim.faults.add(FaultKind.RATE_LIMIT, path="/fapi/v1/openInterest", count=1)
    before = sim_time.now_ms()
    interest = await client.open_interest("BTCUSDT")
    assert interest.open_interest > 0
    waited_ms = sim_time.now_ms() - before
    assert waited_ms >= 1000  # Retry-After (up to the next minute) was honoured
    assert transport.sent == 2


async def test_honouring_retry_after_keeps_a_429_storm_from_becoming_a_ban(
    client: BinanceFutures, exchange_sim: SimServer, transport: CountingTransport
) -> None:
    exchange_sim.faults.add(FaultKind.RATE_LIMIT, path="/fapi/v1/ticker/24hr")  # a 429 storm
    for _ in range(3):
        with pytest.raises(RateLimited):
            await client.tickers_24h()  # each 429 waited out: the sim counts too few per minute to ban
    assert transport.sent == 9
    assert exchange_sim.limits.ban_check("127.0.0.1") is None


async def test_a_ban_stops_all_traffic_until_it_ends(
    client: BinanceFutures, exchange_sim: SimServer, sim_time: SimTime, transport: CountingTransport
) -> None:
    exchange_sim.config.bans_after_429 = 0  # an exchange that bans at the first 429
    exchange_sim.faults.add(FaultKind.RATE_LIMIT, path="/fapi/v1/ticker/24hr", count=1)
    with pytest.raises(IpBanned) as info:
        await client.tickers_24h()  # 429 (ban recorded), back-off, retry: 418
    until = info.value.until_ms
    assert until is not None
    assert transport.sent == 2
    for call in (client.server_time(), client.account(), client.open_orders("BTCUSDT")):
        with pytest.raises(IpBanned):
            await call
    assert transport.sent == 2  # nothing left the process while banned
    sim_time.advance((until - sim_time.now_ms()) / 1000 + 1)
    assert (await client.server_time()) > until
    assert transport.sent == 3


async def test_order_and_algo_order_round_trips(client: BinanceFutures, exchange_sim: SimServer) -> None:
    await client.ensure_one_way_mode()
    await client.set_margin_type("BTCUSDT", MarginType.ISOLATED)
    await client.set_margin_type("BTCUSDT", MarginType.ISOLATED)  # "no need to change" is success
    assert await client.set_leverage("BTCUSDT", 5) == 5
    config = await client.symbol_config("BTCUSDT")
    assert (config.margin_type, config.leverage) == (MarginType.ISOLATED, 5)

    entry = await client.new_order(market_buy("0.010", "ats_k1:E/1"))
    assert entry.status is OrderStatus.FILLED
    assert entry.executed_qty == Decimal("0.010")
    assert await client.get_order("BTCUSDT", client_order_id="ats_k1:E/1") == entry
    (position,) = await client.positions("BTCUSDT")
    assert position.amount == Decimal("0.010")
    assert position.margin_type is MarginType.ISOLATED

    stop = await client.new_algo_order(
        AlgoOrderRequest("BTCUSDT", Side.SELL, OrderType.STOP_MARKET, Decimal("89000.0"), "ats_k1_S1",
                         close_position=True)
    )  # fmt: skip
    take = await client.new_algo_order(
        AlgoOrderRequest("BTCUSDT", Side.SELL, OrderType.TAKE_PROFIT_MARKET, Decimal("95000.0"), "ats_k1_T1",
                         quantity=Decimal("0.005"), reduce_only=True)
    )  # fmt: skip
    assert (stop.status, take.status) == (AlgoStatus.NEW, AlgoStatus.NEW)
    assert {a.client_algo_id for a in await client.open_algo_orders("BTCUSDT")} == {"ats_k1_S1", "ats_k1_T1"}
    assert await client.open_orders("BTCUSDT") == []  # algo orders are not normal orders
    found = await client.get_algo_order(client_algo_id="ats_k1_T1")
    assert found is not None
    assert found.algo_id == take.algo_id

    canceled = await client.cancel_algo_order(client_algo_id="ats_k1_T1")
    assert canceled is not None
    assert canceled.status is AlgoStatus.CANCELED
    assert await client.cancel_algo_order(client_algo_id="ats_k1_T1") is None  # already gone

    await exchange_sim.set_price("BTCUSDT", Decimal(88_900))  # the stop fires
    fired = await client.get_algo_order(algo_id=stop.algo_id)
    assert fired is not None
    assert fired.status in (AlgoStatus.TRIGGERED, AlgoStatus.FINISHED)
    assert fired.actual_order_id is not None
    assert await client.positions("BTCUSDT") == []
    closing = await client.get_order("BTCUSDT", order_id=fired.actual_order_id)
    assert closing is not None
    assert closing.status is OrderStatus.FILLED

    limit = await client.new_order(
        OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.002"), "ats_k2_E", price=Decimal("86000.0"))
    )
    assert limit.status is OrderStatus.NEW
    await client.new_algo_order(
        AlgoOrderRequest("BTCUSDT", Side.BUY, OrderType.STOP_MARKET, Decimal("99000.0"), "ats_k2_S1",
                         quantity=Decimal("0.002"))
    )  # fmt: skip
    await client.cancel_all_orders("BTCUSDT")
    assert await client.open_orders("BTCUSDT") == []
    assert await client.open_algo_orders("BTCUSDT") == []
    assert await client.cancel_order("BTCUSDT", client_order_id="ats_k2_E") is None

    trades = await client.user_trades("BTCUSDT", start_ms=entry.update_time_ms - 1)
    assert [t.order_id for t in trades] == [entry.order_id, fired.actual_order_id]
    incomes = await client.income(symbol="BTCUSDT", start_ms=entry.update_time_ms - 1)
    assert {i.income_type for i in incomes} >= {"COMMISSION", "REALIZED_PNL"}


async def test_exchange_rejections_are_typed(client: BinanceFutures) -> None:
    with pytest.raises(NotionalTooSmall):
        await client.new_order(market_buy("0.001", "ats_small_E"))
    with pytest.raises(FilterRejected):  # PERCENT_PRICE: far below the mark price
        await client.new_order(
            OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, Decimal("0.002"), "ats_far_E", price=Decimal(50000))
        )
    with pytest.raises(UseAlgoEndpoint):
        await client._request(  # the raw request the Algo migration broke
            "POST",
            "/fapi/v1/order",
            {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "stopPrice": Decimal(80000),
             "closePosition": True},
            signed=True,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "options"),
    [
        (FaultKind.DROP_RESPONSE, {"mode": "close"}),
        (FaultKind.DROP_RESPONSE, {"mode": "hold", "hold_s": 3.0}),
        (FaultKind.UNKNOWN_ERROR, {}),
    ],
)
async def test_a_lost_answer_is_an_unknown_outcome_then_found_by_client_id(
    connect: Connect, exchange_sim: SimServer, fault: FaultKind, options: dict[str, object]
) -> None:
    client = connect(timeout_s=0.5)  # the held answer outlives the client's patience
    exchange_sim.faults.add(fault, path="/fapi/v1/order", method="POST", count=1, **options)
    with pytest.raises(UnknownOutcome):
        await client.new_order(market_buy("0.010", "ats_lost_E"))
    found = await client.get_order("BTCUSDT", client_order_id="ats_lost_E")
    assert found is not None
    assert found.status is OrderStatus.FILLED


@pytest.mark.parametrize(("status", "executed"), [(503, False), (503, True), (403, False), (403, True)])
async def test_a_gateway_error_is_an_unknown_outcome_whether_or_not_it_executed(
    client: BinanceFutures, exchange_sim: SimServer, status: int, executed: bool
) -> None:
    """A 503 "Service Unavailable." or a 403 may come after the request was forwarded: only a look-up can tell."""
    exchange_sim.faults.add(
        FaultKind.UNAVAILABLE, path="/fapi/v1/order", method="POST", count=1, status=status, execute=executed
    )
    with pytest.raises(UnknownOutcome):
        await client.new_order(market_buy("0.010", "ats_gateway_E"))
    found = await client.get_order("BTCUSDT", client_order_id="ats_gateway_E")
    assert (found is not None) is executed


async def test_market_data(client: BinanceFutures, exchange_sim: SimServer) -> None:
    rules = await client.exchange_info()
    assert rules["BTCUSDT"].is_tradable_perpetual
    tickers = {t.symbol: t for t in await client.tickers_24h()}
    assert set(tickers) <= set(rules)
    bars = await client.klines("BTCUSDT", "1h", limit=1600)  # two pages; the history holds fewer
    assert len(bars) == exchange_sim.config.history_bars
    step = interval_ms("1h")
    assert (bars.open_time[1:] - bars.open_time[:-1] == step).all()
    assert bars.open_time[-1] + step <= client.server_now_ms()  # closed bars only
    newer = await client.klines("BTCUSDT", "1h", start_ms=int(bars.open_time[-10]), limit=50)
    assert list(newer.open_time) == list(bars.open_time[-10:])
    (premium,) = await client.premium_index("BTCUSDT")
    assert premium.mark_price > 0
    assert len(await client.premium_index()) == len(tickers)
    assert len(await client.open_interest_hist("BTCUSDT", "5m", limit=5)) == 5
    book = await client.depth("BTCUSDT", 10)
    assert book.bids[0][0] < book.asks[0][0]
