"""BinanceFutures against a scripted exchange at the HTTP boundary (httpx.MockTransport).

These tests pin the request layout and the client's reactions to every kind of answer; the integration
tests run the same client against the simulated exchange over real HTTP.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from decimal import Decimal
from hashlib import sha256
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from pydantic import SecretStr

from ats.clock import FakeClock
from ats.config import load_settings
from ats.domain import Side, interval_ms
from ats.exchange.base import AlgoOrderRequest, AlgoStatus, MarginType, OrderRequest, OrderType
from ats.exchange.binance import BinanceFutures, algo_order_params, budget_scope, order_params
from ats.exchange.budget import BudgetLimits, InMemoryBudgetStore, Priority, RequestBudget, request_priority
from ats.exchange.errors import (
    ExchangeUnavailable,
    InsufficientMargin,
    InvalidTimestamp,
    IpBanned,
    MalformedResponse,
    PositionModeError,
    RateLimited,
    UnknownOutcome,
)
from ats.exchange.streams import BinanceMarketStream, BinanceUserStream

KEY = "SENTINEL-API-KEY-7f3a9c"
SECRET = "SENTINEL-API-SECRET-e81b24"
T0 = 1_767_225_600_000

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "msg": msg}, headers=headers)


def order_json(**overrides: Any) -> dict[str, Any]:
    body = {
        "orderId": 1, "symbol": "BTCUSDT", "status": "FILLED", "clientOrderId": "ats_k_E", "price": "0",
        "avgPrice": "91000.0", "origQty": "0.010", "executedQty": "0.010", "cumQuote": "910.0", "timeInForce": "GTC",
        "type": "MARKET", "reduceOnly": False, "closePosition": False, "side": "BUY", "positionSide": "BOTH",
        "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "MARKET",
        "updateTime": T0,
    }  # fmt: skip
    return {**body, **overrides}


def algo_json(**overrides: Any) -> dict[str, Any]:
    body = {
        "algoId": 7, "clientAlgoId": "ats_k_S1", "algoType": "CONDITIONAL", "orderType": "STOP_MARKET",
        "symbol": "BTCUSDT", "side": "SELL", "positionSide": "BOTH", "quantity": "0", "algoStatus": "NEW",
        "actualOrderId": "", "triggerPrice": "89000.0", "workingType": "MARK_PRICE", "closePosition": True,
        "priceProtect": True, "reduceOnly": False, "createTime": T0, "updateTime": T0,
    }  # fmt: skip
    return {**body, **overrides}


class FakeBinance:
    """Answers by (method, path) from a script; the server clock is the fake clock plus `skew_ms`."""

    def __init__(self, clock: FakeClock, skew_ms: int = 0) -> None:
        self.clock = clock
        self.skew_ms = skew_ms
        self.requests: list[httpx.Request] = []
        self.script: dict[tuple[str, str], list[Answer]] = {}

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.script.setdefault((method, path), []).extend(answers)

    def calls(self, method: str, path: str) -> list[dict[str, str]]:
        return [
            dict(parse_qsl(r.url.query.decode())) for r in self.requests if (r.method, r.url.path) == (method, path)
        ]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        if key == ("GET", "/fapi/v1/time") and not self.script.get(key):
            return httpx.Response(200, json={"serverTime": self.clock.now_ms() + self.skew_ms})
        answers = self.script.get(key)
        if not answers:
            raise AssertionError(f"unexpected request {request.method} {request.url.path}")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer


def make_client(fake: FakeBinance, **kw: Any) -> BinanceFutures:
    budget = kw.pop("budget", None) or RequestBudget(InMemoryBudgetStore(), scope="test", clock=fake.clock)
    return BinanceFutures(
        "https://fapi.example",
        SecretStr(KEY),
        SecretStr(SECRET),
        clock=fake.clock,
        budget=budget,
        transport=httpx.MockTransport(fake),
        **kw,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start_ms=T0 + 1_000)


@pytest.fixture
def fake(clock: FakeClock) -> FakeBinance:
    return FakeBinance(clock)


def verify_signature(request: httpx.Request) -> dict[str, str]:
    query = request.url.query.decode()
    payload, _, signature = query.rpartition("&signature=")
    assert signature == hmac.new(SECRET.encode(), payload.encode(), sha256).hexdigest()
    assert request.headers["X-MBX-APIKEY"] == KEY
    return dict(parse_qsl(query))


# ---------------------------------------------------------------------------------------------- request layout


async def test_market_order_layout(fake: FakeBinance, clock: FakeClock) -> None:
    fake.on("POST", "/fapi/v1/order", httpx.Response(200, json=order_json()))
    async with make_client(fake) as client:
        order = await client.new_order(
            OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.0100"), "ats_k:E/1", reduce_only=True)
        )
    assert order.executed_qty == Decimal("0.010")
    request = next(r for r in fake.requests if r.url.path == "/fapi/v1/order")
    params = verify_signature(request)
    assert list(params) == [
        "symbol", "side", "type", "positionSide", "quantity", "reduceOnly", "newClientOrderId", "newOrderRespType",
        "recvWindow", "timestamp", "signature",
    ]  # fmt: skip
    assert params["quantity"] == "0.01"
    assert params["reduceOnly"] == "true"
    assert params["positionSide"] == "BOTH"
    assert params["newClientOrderId"] == "ats_k:E/1"
    assert params["newOrderRespType"] == "RESULT"
    assert "timeInForce" not in params
    assert int(params["timestamp"]) == clock.now_ms()
    assert b"ats_k%3AE%2F1" in request.url.query


def test_order_and_algo_parameters() -> None:
    limit = order_params(OrderRequest("X", Side.SELL, OrderType.LIMIT, Decimal(1), "c", price=Decimal("2.50")))
    assert (limit["price"], limit["timeInForce"], "reduceOnly" in limit) == (Decimal("2.50"), "GTC", False)
    stop = algo_order_params(
        AlgoOrderRequest(
            "BTCUSDT", Side.SELL, OrderType.STOP_MARKET, Decimal("89000.0"), "ats_k_S1", close_position=True
        )
    )
    assert stop["algoType"] == "CONDITIONAL"
    assert stop["closePosition"] is True
    assert "quantity" not in stop
    assert "reduceOnly" not in stop
    assert stop["workingType"] == "MARK_PRICE"
    assert stop["priceProtect"] is True
    tp = algo_order_params(
        AlgoOrderRequest(
            "BTCUSDT", Side.SELL, OrderType.TAKE_PROFIT_MARKET, Decimal(95000), "t", quantity=Decimal("0.005"),
            reduce_only=True,
        )
    )  # fmt: skip
    assert (tp["quantity"], tp["reduceOnly"], "closePosition" in tp) == (Decimal("0.005"), True, False)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: order_params(OrderRequest("X", Side.BUY, OrderType.STOP_MARKET, Decimal(1), "c")), "new_algo_order"),
        (lambda: order_params(OrderRequest("X", Side.BUY, OrderType.MARKET, Decimal(0), "c")), "positive"),
        (lambda: order_params(OrderRequest("X", Side.BUY, OrderType.MARKET, Decimal(1), "bad id!")), "client id"),
        (lambda: order_params(OrderRequest("X", Side.BUY, OrderType.MARKET, Decimal(1), "ats_k_E\n")), "client id"),
        (
            lambda: algo_order_params(
                AlgoOrderRequest("X", Side.SELL, OrderType.STOP_MARKET, Decimal(1), "x" * 37, close_position=True)
            ),
            "client id",
        ),
        (
            lambda: order_params(OrderRequest("X", Side.BUY, OrderType.MARKET, Decimal(1), "c", price=Decimal(1))),
            "price",
        ),
        (lambda: order_params(OrderRequest("X", Side.BUY, OrderType.LIMIT, Decimal(1), "c")), "price"),
        (
            lambda: algo_order_params(
                AlgoOrderRequest(
                    "X", Side.SELL, OrderType.STOP_MARKET, Decimal(1), "c", quantity=Decimal(1), close_position=True
                )
            ),
            "closePosition",
        ),
        (
            lambda: algo_order_params(AlgoOrderRequest("X", Side.SELL, OrderType.STOP_MARKET, Decimal(1), "c")),
            "quantity",
        ),
        (lambda: algo_order_params(AlgoOrderRequest("X", Side.SELL, OrderType.LIMIT, Decimal(1), "c")), "STOP_MARKET"),
    ],
)
def test_invalid_orders_are_refused_before_sending(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


async def test_algo_order_round_trip_and_cancel_reads_back_the_final_state(fake: FakeBinance) -> None:
    fake.on("POST", "/fapi/v1/algoOrder", httpx.Response(200, json=algo_json()))
    fake.on("DELETE", "/fapi/v1/algoOrder", httpx.Response(200, json={"algoId": 7, "clientAlgoId": "ats_k_S1",
                                                                       "code": "200", "msg": "success"}))  # fmt: skip
    fake.on("GET", "/fapi/v1/algoOrder", httpx.Response(200, json=algo_json(algoStatus="CANCELED")))
    async with make_client(fake) as client:
        placed = await client.new_algo_order(
            AlgoOrderRequest(
                "BTCUSDT", Side.SELL, OrderType.STOP_MARKET, Decimal(89000), "ats_k_S1", close_position=True
            )
        )
        canceled = await client.cancel_algo_order(client_algo_id="ats_k_S1")
    assert placed.status is AlgoStatus.NEW
    assert canceled is not None
    assert canceled.status is AlgoStatus.CANCELED
    assert fake.calls("GET", "/fapi/v1/algoOrder")[0]["algoId"] == "7"
    assert fake.calls("POST", "/fapi/v1/algoOrder")[0]["triggerPrice"] == "89000"


async def test_unknown_orders_read_as_none(fake: FakeBinance) -> None:
    fake.on("GET", "/fapi/v1/order", error(400, -2013, "Order does not exist."))
    fake.on("DELETE", "/fapi/v1/order", error(400, -2011, "Unknown order sent."))
    fake.on("GET", "/fapi/v1/algoOrder", error(400, -2013, "Order does not exist."))
    fake.on("DELETE", "/fapi/v1/algoOrder", error(400, -2011, "Unknown order sent."))
    async with make_client(fake) as client:
        assert await client.get_order("BTCUSDT", client_order_id="ats_k_E") is None
        assert await client.cancel_order("BTCUSDT", order_id=5) is None
        assert await client.get_algo_order(client_algo_id="ats_k_S1") is None
        assert await client.cancel_algo_order(algo_id=7) is None
        with pytest.raises(ValueError, match="give one of"):
            await client.get_order("BTCUSDT")


async def test_cancel_all_reaches_normal_and_algo_orders(fake: FakeBinance) -> None:
    done = httpx.Response(200, json={"code": 200, "msg": "The operation of cancel all open order is done."})
    fake.on("DELETE", "/fapi/v1/allOpenOrders", done)
    fake.on("DELETE", "/fapi/v1/algoOpenOrders", error(503, -1001, "Internal error; unable to process your request."))
    async with make_client(fake) as client:
        with pytest.raises(UnknownOutcome):  # a cancel answered 503 may have been done
            await client.cancel_all_orders("BTCUSDT")
    assert fake.calls("DELETE", "/fapi/v1/allOpenOrders")[0]["symbol"] == "BTCUSDT"  # tried despite the failure


async def test_settings_calls_are_idempotent(fake: FakeBinance) -> None:
    fake.on("POST", "/fapi/v1/marginType", error(400, -4046, "No need to change margin type."))
    fake.on("POST", "/fapi/v1/leverage", httpx.Response(200, json={"leverage": 7, "maxNotionalValue": "1000000",
                                                                    "symbol": "BTCUSDT"}))  # fmt: skip
    async with make_client(fake) as client:
        await client.set_margin_type("BTCUSDT", MarginType.ISOLATED)
        assert await client.set_leverage("BTCUSDT", 7) == 7
    assert fake.calls("POST", "/fapi/v1/marginType")[0]["marginType"] == "ISOLATED"


async def test_one_way_mode_is_required(fake: FakeBinance) -> None:
    position = {"symbol": "BTCUSDT", "positionSide": "LONG", "positionAmt": "0.010", "entryPrice": "90000",
                "isolatedWallet": "0", "updateTime": T0}  # fmt: skip
    fake.on("GET", "/fapi/v1/positionSide/dual", httpx.Response(200, json={"dualSidePosition": True}))
    fake.on("GET", "/fapi/v3/positionRisk", httpx.Response(200, json=[position]))
    async with make_client(fake) as client:
        with pytest.raises(PositionModeError, match="hedge mode"):
            await client.ensure_one_way_mode()
    assert not fake.calls("POST", "/fapi/v1/positionSide/dual")

    fake.script[("GET", "/fapi/v3/positionRisk")] = [httpx.Response(200, json=[{**position, "positionAmt": "0"}])]
    fake.on("POST", "/fapi/v1/positionSide/dual", error(400, -4059, "No need to change position side."))
    async with make_client(fake) as client:
        await client.ensure_one_way_mode()
    assert fake.calls("POST", "/fapi/v1/positionSide/dual")[0]["dualSidePosition"] == "false"


# ---------------------------------------------------------------------------------------------- time


async def test_signed_requests_use_the_synced_server_time(clock: FakeClock) -> None:
    fake = FakeBinance(clock, skew_ms=-7_500)  # the local clock runs 7.5 s fast
    fake.on("GET", "/fapi/v3/account", httpx.Response(200, json={
        "totalWalletBalance": "100", "totalUnrealizedProfit": "1", "totalMarginBalance": "101",
        "availableBalance": "90", "maxWithdrawAmount": "90"}))  # fmt: skip
    async with make_client(fake) as client:
        account = await client.account()
        assert client.time_offset_ms == -7_500
    assert account.total_margin_balance == Decimal(101)
    assert int(fake.calls("GET", "/fapi/v3/account")[0]["timestamp"]) == clock.now_ms() - 7_500
    assert len(fake.calls("GET", "/fapi/v1/time")) == 3  # best of three samples


async def test_time_is_resynced_after_the_resync_period(fake: FakeBinance, clock: FakeClock) -> None:
    fake.on("GET", "/fapi/v1/openOrders", httpx.Response(200, json=[]))
    async with make_client(fake, time_resync_s=300) as client:
        await client.open_orders("BTCUSDT")
        clock.advance(299)
        await client.open_orders("BTCUSDT")
        assert len(fake.calls("GET", "/fapi/v1/time")) == 3
        clock.advance(2)
        await client.open_orders("BTCUSDT")
    assert len(fake.calls("GET", "/fapi/v1/time")) == 6


async def test_minus_1021_resyncs_and_retries_exactly_once(fake: FakeBinance) -> None:
    stale = error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    fake.on("POST", "/fapi/v1/order", stale, httpx.Response(200, json=order_json()))
    async with make_client(fake) as client:
        await client.new_order(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"), "ats_k_E"))
    assert len(fake.calls("POST", "/fapi/v1/order")) == 2
    assert len(fake.calls("GET", "/fapi/v1/time")) == 6  # initial sync + resync

    fake.script[("POST", "/fapi/v1/order")] = [stale]
    async with make_client(fake) as client:
        with pytest.raises(InvalidTimestamp):
            await client.new_order(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"), "ats_k_E"))
    assert len(fake.calls("POST", "/fapi/v1/order")) == 4


# ---------------------------------------------------------------------------------------------- limits


async def test_weight_headers_feed_the_shared_budget(fake: FakeBinance, clock: FakeClock) -> None:
    limits = BudgetLimits(weight_per_minute=2400, safety_margin=0.2)  # usable: 1920
    budget = RequestBudget(InMemoryBudgetStore(), scope="test", clock=clock, limits=limits)
    fake.on("GET", "/fapi/v1/exchangeInfo", httpx.Response(200, json={"symbols": []},
                                                              headers={"X-MBX-USED-WEIGHT-1M": "1900"}))  # fmt: skip
    fake.on("GET", "/fapi/v1/ticker/24hr", httpx.Response(200, json=[], headers={"X-MBX-USED-WEIGHT-1M": "40"}))
    async with make_client(fake, budget=budget) as client:
        await client.exchange_info()
        before = clock.now_ms()
        await client.tickers_24h()  # weight 40 does not fit in what is left of this minute
    assert before < T0 + 60_000 <= clock.now_ms()


async def test_429_backs_off_for_retry_after_then_retries(fake: FakeBinance, clock: FakeClock) -> None:
    fake.on("GET", "/fapi/v1/premiumIndex", error(429, -1003, "Too many requests.", {"Retry-After": "3"}),
            httpx.Response(200, json={"symbol": "BTCUSDT", "markPrice": "91000", "indexPrice": "90990",
                                      "lastFundingRate": "0.0001", "nextFundingTime": T0, "time": T0}))  # fmt: skip
    async with make_client(fake) as client:
        started = clock.now_ms()
        (index,) = await client.premium_index("BTCUSDT")
    assert index.mark_price == Decimal(91000)
    assert clock.now_ms() - started >= 3000

    fake.script[("GET", "/fapi/v1/premiumIndex")] = [error(429, -1003, "Too many requests.", {"Retry-After": "1"})]
    async with make_client(fake, rate_limit_retries=2) as client:
        with pytest.raises(RateLimited):
            await client.premium_index("BTCUSDT")
    assert len(fake.calls("GET", "/fapi/v1/premiumIndex")) == 2 + 3


def stop_request() -> AlgoOrderRequest:
    return AlgoOrderRequest(
        "BTCUSDT", Side.SELL, OrderType.STOP_MARKET, Decimal("89000.0"), "ats_k_S1", close_position=True
    )


async def test_a_protective_request_goes_again_as_each_retry_after_ends_until_it_is_taken(
    fake: FakeBinance, clock: FakeClock
) -> None:
    too_many = error(429, -1003, "Too many requests.", {"Retry-After": "2"})
    fake.on("POST", "/fapi/v1/algoOrder", *[too_many] * 6, httpx.Response(200, json=algo_json()))
    async with make_client(fake) as client:
        await client.sync_time()
        started = clock.now_ms()
        with request_priority(Priority.PROTECTIVE):
            stop = await client.new_algo_order(stop_request())
    assert stop.status is AlgoStatus.NEW
    assert len(fake.calls("POST", "/fapi/v1/algoOrder")) == 7
    assert clock.now_ms() - started == 6 * 2000  # exactly Retry-After each time: no back-off of its own

    fake.script[("POST", "/fapi/v1/algoOrder")] = [too_many]
    async with make_client(fake) as client:  # normal work: three tries, then the caller hears of it
        with pytest.raises(RateLimited):
            await client.new_algo_order(stop_request())
    assert len(fake.calls("POST", "/fapi/v1/algoOrder")) == 7 + 3

    fake.script[("POST", "/fapi/v1/algoOrder")] = [error(429, -1003, "Too many requests.", {"Retry-After": "10"})]
    async with make_client(fake, protective_patience_s=30) as client:  # a storm that does not end
        with request_priority(Priority.PROTECTIVE), pytest.raises(RateLimited):
            await client.new_algo_order(stop_request())
    assert len(fake.calls("POST", "/fapi/v1/algoOrder")) == 10 + 4  # at 0, 10, 20 and 30 s


async def test_a_spent_normal_share_delays_normal_requests_only(fake: FakeBinance, clock: FakeClock) -> None:
    budget = RequestBudget(InMemoryBudgetStore(), scope="test", clock=clock)  # normal work may use 1560 of 2400
    await budget.record(used_weight=1600, orders_10s=None, orders_1m=None)  # a scan elsewhere on the host
    fake.on("GET", "/fapi/v1/algoOrder", httpx.Response(200, json=algo_json()))
    fake.on("POST", "/fapi/v1/listenKey", httpx.Response(200, json={"listenKey": "k"}))
    fake.on("GET", "/fapi/v1/openInterest",
            httpx.Response(200, json={"symbol": "BTCUSDT", "openInterest": "10659.509", "time": T0}))  # fmt: skip
    async with (
        make_client(fake, budget=budget) as client,
        make_client(fake, budget=budget, priority=Priority.PROTECTIVE) as emergency,
    ):
        with request_priority(Priority.PROTECTIVE):
            await client.get_algo_order(client_algo_id="ats_k_S1")  # a re-drive's look-up (and its time sync)
        await client.create_listen_key()  # the user stream's key is protective by itself
        await emergency.open_interest("BTCUSDT")  # a client whose default is protective
        assert clock.now_ms() == T0 + 1_000
        await client.open_interest("BTCUSDT")
        assert clock.now_ms() == T0 + 60_000  # normal work waits for the next window


async def test_418_stops_all_traffic_until_the_ban_ends(fake: FakeBinance, clock: FakeClock) -> None:
    until = T0 + 180_000
    msg = f"Way too many requests; IP(1.2.3.4) banned until {until}. Please use the websocket for live updates."
    fake.on("GET", "/fapi/v1/openInterest", error(418, -1003, msg),
            httpx.Response(200, json={"symbol": "BTCUSDT", "openInterest": "10659.509", "time": T0}))  # fmt: skip
    async with make_client(fake) as client:
        with pytest.raises(IpBanned) as info:
            await client.open_interest("BTCUSDT")
        assert info.value.until_ms == until
        sent = len(fake.requests)
        for call in (client.open_interest("BTCUSDT"), client.server_time(), client.open_orders()):
            with pytest.raises(IpBanned):
                await call
        assert len(fake.requests) == sent  # nothing left the process during the ban
        clock.set_ms(until)
        assert (await client.open_interest("BTCUSDT")).open_interest == Decimal("10659.509")


# ---------------------------------------------------------------------------------------------- outcomes


async def test_a_timeout_after_sending_a_write_is_an_unknown_outcome(fake: FakeBinance) -> None:
    fake.on("POST", "/fapi/v1/order", httpx.ReadTimeout("timed out"))
    async with make_client(fake) as client:
        with pytest.raises(UnknownOutcome, match="may have been executed"):
            await client.new_order(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"), "ats_k_E"))
    assert len(fake.calls("POST", "/fapi/v1/order")) == 1  # never retried


async def test_connect_errors_are_definite_and_reads_are_retried(fake: FakeBinance) -> None:
    fake.on("POST", "/fapi/v1/order", httpx.ConnectError("refused"))
    fake.on("GET", "/fapi/v1/openOrders", httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("eof"),
            httpx.Response(200, json=[order_json(status="NEW")]))  # fmt: skip
    async with make_client(fake) as client:
        with pytest.raises(ExchangeUnavailable, match="could not connect"):
            await client.new_order(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"), "ats_k_E"))
        (order,) = await client.open_orders("BTCUSDT")
    assert len(fake.calls("GET", "/fapi/v1/openOrders")) == 3
    assert order.status.value == "NEW"


@pytest.mark.parametrize(
    ("answer", "write_error", "read_error"),
    [
        (error(503, -1000, "Unknown error, please check your request or try again later."), UnknownOutcome,
         ExchangeUnavailable),
        (error(503, None, "Service Unavailable."), UnknownOutcome, ExchangeUnavailable),  # type: ignore[arg-type]
        (httpx.Response(403, text="<html>Request blocked</html>"), UnknownOutcome, ExchangeUnavailable),
        (httpx.Response(502, text=""), UnknownOutcome, ExchangeUnavailable),
        (error(400, -2019, "Margin is insufficient."), InsufficientMargin, InsufficientMargin),
        (httpx.Response(200, text="<html>oops</html>"), UnknownOutcome, MalformedResponse),
        (httpx.Response(200, json={"unexpected": True}), UnknownOutcome, MalformedResponse),
    ],
)  # fmt: skip
async def test_answers_map_to_outcomes(
    fake: FakeBinance, answer: httpx.Response, write_error: type[Exception], read_error: type[Exception]
) -> None:
    fake.on("POST", "/fapi/v1/order", answer)
    fake.on("GET", "/fapi/v1/order", answer)
    async with make_client(fake, read_retries=0) as client:
        with pytest.raises(write_error):
            await client.new_order(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"), "ats_k_E"))
        with pytest.raises(read_error):
            await client.get_order("BTCUSDT", client_order_id="ats_k_E")


# ---------------------------------------------------------------------------------------------- paging


def kline_server(clock: FakeClock, interval: str, first_open_ms: int) -> Callable[[httpx.Request], httpx.Response]:
    """A klines endpoint with bars from `first_open_ms` up to and including the forming one."""
    step = interval_ms(interval)

    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.url.query.decode()))
        limit = int(params.get("limit", 500))
        now = clock.now_ms()
        last_open = now - now % step
        end = min(int(params.get("endTime", last_open)), last_open)
        if "startTime" in params:
            start = max(int(params["startTime"]), first_open_ms)
            start += (-start) % step
            opens = list(range(start, end + 1, step))[:limit]
        else:
            opens = [t for t in range(first_open_ms, end + 1, step)][-limit:]
        rows = [[t, "1", "2", "0.5", "1.5", "10", t + step - 1, "15", 3, "5", "7.5", "0"] for t in opens]
        return httpx.Response(200, json=rows)

    return answer


async def test_klines_page_forward_and_never_return_the_forming_bar(fake: FakeBinance, clock: FakeClock) -> None:
    step = interval_ms("1m")
    clock.set_ms(T0 + 4000 * step + 30_000)  # 30 s into the forming bar
    fake.on("GET", "/fapi/v1/klines", kline_server(clock, "1m", T0))
    async with make_client(fake) as client:
        bars = await client.klines("BTCUSDT", "1m", start_ms=T0, limit=5000)
        assert len(bars) == 4000
        assert bars.open_time[0] == T0
        assert bars.open_time[-1] == T0 + 3999 * step  # the bar opened at T0 + 4000 steps is still forming
        limits = [int(c["limit"]) for c in fake.calls("GET", "/fapi/v1/klines")]
        assert limits == [1500, 1500, 1500]
        part = await client.klines("BTCUSDT", "1m", start_ms=T0 + 10 * step, end_ms=T0 + 19 * step, limit=500)
        assert list(part.open_time) == [T0 + i * step for i in range(10, 20)]


async def test_klines_page_backward_for_the_latest_bars(fake: FakeBinance, clock: FakeClock) -> None:
    step = interval_ms("1h")
    clock.set_ms(T0 + 3000 * step + 5)
    fake.on("GET", "/fapi/v1/klines", kline_server(clock, "1h", T0))
    async with make_client(fake) as client:
        bars = await client.klines("BTCUSDT", "1h", limit=2000)
        assert len(bars) == 2000
        assert bars.open_time[-1] == T0 + 2999 * step
        assert (bars.open_time[1:] - bars.open_time[:-1] == step).all()
        everything = await client.klines("BTCUSDT", "1h", limit=10_000)
    assert len(everything) == 3000  # the history ran out: no endless paging
    assert float(bars.close[-1]) == 1.5


async def test_user_trades_walk_seven_day_windows_and_full_pages(fake: FakeBinance, clock: FakeClock) -> None:
    day = 86_400_000

    def trades(request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.url.query.decode()))
        start, end, limit = int(params["startTime"]), int(params["endTime"]), int(params["limit"])
        assert end - start < 7 * day
        all_times = [T0 + i * day // 4 for i in range(80)]  # four fills a day for 20 days
        rows = [
            {"symbol": "BTCUSDT", "id": i, "orderId": i, "side": "BUY", "price": "1", "qty": "1", "time": t,
             "commission": "0", "commissionAsset": "USDT", "realizedPnl": "0", "maker": False, "quoteQty": "1"}
            for i, t in enumerate(all_times)
            if start <= t <= end
        ][:limit]  # fmt: skip
        return httpx.Response(200, json=rows)

    fake.on("GET", "/fapi/v1/userTrades", trades)
    async with make_client(fake) as client:
        found = await client.user_trades("BTCUSDT", start_ms=T0, end_ms=T0 + 20 * day, limit=10)
    assert [t.trade_id for t in found] == list(range(80))
    windows = {c["endTime"] for c in fake.calls("GET", "/fapi/v1/userTrades")}
    assert len(windows) == 3


async def test_user_trades_up_to_now_means_the_exchange_s_now(clock: FakeClock) -> None:
    fake = FakeBinance(clock, skew_ms=7_500)  # the local clock runs 7.5 s behind the exchange
    fill_at = clock.now_ms() + 7_000  # a second ago, by the exchange's clock

    def trades(request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.url.query.decode()))
        row = {"symbol": "BTCUSDT", "id": 1, "orderId": 1, "side": "BUY", "price": "1", "qty": "1", "time": fill_at}
        in_window = int(params["startTime"]) <= fill_at <= int(params["endTime"])
        return httpx.Response(200, json=[row] if in_window else [])

    fake.on("GET", "/fapi/v1/userTrades", trades)
    async with make_client(fake) as client:
        found = await client.user_trades("BTCUSDT", start_ms=clock.now_ms() - 60_000)
    assert [t.trade_id for t in found] == [1]


# ---------------------------------------------------------------------------------------------- listenKey


async def test_listen_key_lifecycle(fake: FakeBinance) -> None:
    fake.on("POST", "/fapi/v1/listenKey", httpx.Response(200, json={"listenKey": "key-1"}),
            httpx.Response(200, json={"listenKey": "key-2"}))  # fmt: skip
    fake.on("PUT", "/fapi/v1/listenKey", httpx.Response(200, json={"listenKey": "key-1"}),
            error(400, -1125, "This listenKey does not exist."))  # fmt: skip
    fake.on("DELETE", "/fapi/v1/listenKey", httpx.Response(200, json={}))
    async with make_client(fake) as client:
        assert await client.create_listen_key() == "key-1"
        await client.keepalive_listen_key()
        held = [client.listen_key]
        await client.keepalive_listen_key()  # -1125: replaced
        held.append(client.listen_key)
        await client.close_listen_key()
        held.append(client.listen_key)
        assert held == ["key-1", "key-2", None]
    for request in fake.requests:
        if request.url.path == "/fapi/v1/listenKey":
            assert request.headers["X-MBX-APIKEY"] == KEY
            assert b"signature" not in request.url.query


async def test_malformed_market_entries_are_skipped(fake: FakeBinance) -> None:
    good = {"symbol": "BTCUSDT", "status": "TRADING", "contractType": "PERPETUAL", "quoteAsset": "USDT",
            "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.10", "minPrice": "1",
                         "maxPrice": "100"}]}  # fmt: skip
    fake.on("GET", "/fapi/v1/exchangeInfo", httpx.Response(200, json={"symbols": [good, {"no": "symbol"}]}))
    fake.on("GET", "/fapi/v1/ticker/24hr", httpx.Response(200, json=[{"symbol": "BAD"}]))
    async with make_client(fake) as client:
        assert list(await client.exchange_info()) == ["BTCUSDT"]
        assert await client.tickers_24h() == []


# ---------------------------------------------------------------------------------------------- secrets


async def test_secrets_never_reach_logs_errors_or_reprs(fake: FakeBinance, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.on("POST", "/fapi/v1/order", httpx.ReadTimeout(f"timed out {KEY}"))
    fake.on("GET", "/fapi/v1/order", error(400, -2015, "Invalid API-key, IP, or permissions for action."))
    fake.on("GET", "/fapi/v1/klines", httpx.Response(200, json=[]))
    errors: list[str] = []
    async with make_client(fake) as client:
        await client.klines("BTCUSDT", "1m", limit=10)
        for call in (
            client.new_order(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.01"), "ats_k_E")),
            client.get_order("BTCUSDT", client_order_id="ats_k_E"),
        ):
            with pytest.raises(Exception) as info:  # noqa: PT011 - any error will do, its text is what matters
                await call
            errors.append(str(info.value))
            errors.append(repr(info.value))
        errors.append(repr(client))
        errors.append(repr(client.budget))
    logged = [record.getMessage() + json.dumps(getattr(record, "fields", {}), default=str) for record in caplog.records]
    for text in errors + logged:
        assert KEY not in text
        assert SECRET not in text
        assert "signature=" not in text
    assert logged  # the client did log (time sync, requests)


def test_budget_scope_is_per_host() -> None:
    assert budget_scope("https://fapi.binance.com") == "rest:fapi.binance.com:443"
    assert budget_scope("http://127.0.0.1:8765/") == "rest:127.0.0.1:8765"


async def test_from_settings_reads_the_exchange_section() -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    settings = load_settings(
        venue="testnet",
        exchange={
            "rest_url": "http://127.0.0.1:1/",
            "ws_url": "ws://127.0.0.1:1",
            "api_key": KEY,
            "api_secret": pem,
            "key_type": "ed25519",
            "weight_safety_margin": 0.5,
            "protective_reserve": 0.25,
        },
    )
    async with BinanceFutures.from_settings(settings) as client:
        assert repr(client) == "BinanceFutures(rest_url='http://127.0.0.1:1', key_type='ed25519')"
        limits = client.budget.limits
        assert (limits.cap(2400, Priority.NORMAL), limits.cap(2400, Priority.PROTECTIVE)) == (600, 1200)
        assert client.budget.scope == "rest:127.0.0.1:1"
    market = BinanceMarketStream.from_settings(settings)
    user = BinanceUserStream.from_settings(settings, client)
    assert market.health().streams == 0
    assert not user.health().connected
