"""The simulated exchange over real HTTP and WebSocket on loopback, with requests signed here by hand."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import websockets

from ats.clock import FakeClock
from sim.faults import FaultRule
from sim.server import OffsetClock, SimConfig, SimServer, SimServerThread
from tests.integration.sim.wire import FORM, Client, signed


@pytest.fixture
async def client(sim: SimServer) -> Any:
    c = Client(sim)
    yield c
    await c.aclose()


async def receive(ws: Any, wait_s: float = 2.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), wait_s))


async def test_public_endpoints_and_weight_header(sim: SimServer, client: Client) -> None:
    response = await client.http.get("/fapi/v1/time")
    assert abs(response.json()["serverTime"] - sim.clock.now_ms()) < 1000
    info = (await client.http.get("/fapi/v1/exchangeInfo")).json()
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert {f["filterType"] for f in btc["filters"]} >= {"PRICE_FILTER", "LOT_SIZE", "MIN_NOTIONAL", "PERCENT_PRICE"}
    klines = await client.http.get("/fapi/v1/klines", params={"symbol": "BTCUSDT", "interval": "1h", "limit": 1500})
    assert len(klines.json()) == 1500
    assert klines.headers["X-MBX-USED-WEIGHT-1M"] == str(1 + 1 + 10)
    tickers = await client.http.get("/fapi/v1/ticker/24hr")
    assert len(tickers.json()) >= 30
    assert int(tickers.headers["X-MBX-USED-WEIGHT-1M"]) == 52
    oi = await client.http.get("/futures/data/openInterestHist", params={"symbol": "ETHUSDT", "period": "5m"})
    assert len(oi.json()) == 30
    bad = await client.http.get("/fapi/v1/klines", params={"symbol": "NOPE", "interval": "1h"})
    assert bad.status_code == 400
    assert bad.json()["code"] == -1121


async def test_signing_is_checked_like_binance(sim: SimServer, client: Client) -> None:
    ok = await client.get("/fapi/v3/account")
    assert ok.status_code == 200
    assert ok.json()["totalWalletBalance"] == "10000.00000000"
    bad_signature = await client.http.get(f"/fapi/v3/account?{signed('wrong-secret', {})}", headers=client.headers)
    assert bad_signature.json()["code"] == -1022
    unknown_key = await client.http.get(
        f"/fapi/v3/account?{signed(sim.api_secret, {})}", headers={"X-MBX-APIKEY": "someone-else"}
    )
    assert (unknown_key.status_code, unknown_key.json()["code"]) == (401, -2015)
    no_key = await client.http.get(f"/fapi/v3/account?{signed(sim.api_secret, {})}")
    assert no_key.json()["code"] == -2014
    stale = await client.http.get(
        f"/fapi/v3/account?{signed(sim.api_secret, {}, timestamp_ms=sim.clock.now_ms() - 6000)}",
        headers=client.headers,
    )
    assert stale.json()["code"] == -1021
    future = await client.http.get(
        f"/fapi/v3/account?{signed(sim.api_secret, {}, timestamp_ms=sim.clock.now_ms() + 1500)}",
        headers=client.headers,
    )
    assert future.json()["code"] == -1021
    query_and_body = urlencode({"symbol": "BTCUSDT", "leverage": 7})
    body = urlencode({"timestamp": int(time.time() * 1000)})
    digest = hmac.new(sim.api_secret.encode(), (query_and_body + body).encode(), hashlib.sha256).hexdigest()
    split = await client.http.post(
        f"/fapi/v1/leverage?{query_and_body}", content=f"{body}&signature={digest}", headers={**client.headers, **FORM}
    )
    assert split.json() == {"leverage": 7, "maxNotionalValue": "230000000", "symbol": "BTCUSDT"}


async def test_clock_skew_fault_gives_minus_1021_until_the_client_resyncs(sim: SimServer, client: Client) -> None:
    sim.faults.clock_skew_ms = 10_000
    assert (await client.get("/fapi/v3/balance")).json()["code"] == -1021
    server_time = (await client.http.get("/fapi/v1/time")).json()["serverTime"]
    offset = server_time - int(time.time() * 1000)
    resynced = await client.http.get(
        f"/fapi/v3/balance?{signed(sim.api_secret, {}, timestamp_ms=int(time.time() * 1000) + offset)}",
        headers=client.headers,
    )
    assert resynced.status_code == 200


async def test_weight_limit_gives_429_then_418_ban() -> None:
    config = SimConfig(weight_limit=10, bans_after_429=2, ban_seconds=60)
    async with SimServer(config) as sim, httpx.AsyncClient(base_url=sim.rest_url) as http:
        statuses = []
        for _ in range(14):
            response = await http.get("/fapi/v1/ping")
            statuses.append(response.status_code)
        assert statuses[:10] == [200] * 10
        assert statuses[10:12] == [429, 429]
        assert 418 in statuses[12:]
        limited = await http.get("/fapi/v1/ping")
        assert limited.status_code == 418
        assert int(limited.headers["Retry-After"]) > 0
        assert limited.json()["code"] == -1003


async def test_a_storm_announces_its_retry_after_and_bans_only_a_client_that_does_not_wait() -> None:
    clock = OffsetClock()
    async with SimServer(SimConfig(bans_after_429=2), clock) as sim, httpx.AsyncClient(base_url=sim.rest_url) as http:
        sim.faults.add("rate_limit", path="/fapi/*", retry_after_s=2)
        for _ in range(5):  # each Retry-After waited out: never banned, however long the storm
            response = await http.get("/fapi/v1/ping")
            assert (response.status_code, response.headers["Retry-After"]) == (429, "2")
            clock.advance(2)
        statuses = [(await http.get("/fapi/v1/ping")).status_code for _ in range(4)]  # one that does not wait
        assert statuses == [429, 429, 429, 418]
    with pytest.raises(ValueError, match="retry_after_s"):
        FaultRule.from_json({"kind": "rate_limit", "retry_after_s": 0})


async def test_order_and_algo_round_trip_with_order_count_headers(sim: SimServer, client: Client) -> None:
    await sim.set_price("BTCUSDT", Decimal("90000"))
    placed = await client.post(
        "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010",
        newClientOrderId="ats_abc_E", newOrderRespType="RESULT",
    )  # fmt: skip
    assert placed.status_code == 200
    assert placed.json()["status"] == "FILLED"
    assert placed.headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert placed.headers["X-MBX-ORDER-COUNT-1M"] == "1"
    looked_up = await client.get("/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="ats_abc_E")
    assert looked_up.json()["orderId"] == placed.json()["orderId"]
    stop = await client.post(
        "/fapi/v1/algoOrder", algoType="CONDITIONAL", symbol="BTCUSDT", side="SELL", type="STOP_MARKET",
        triggerPrice="88000", closePosition="true", workingType="MARK_PRICE", clientAlgoId="ats_abc_S1",
    )  # fmt: skip
    assert stop.json()["algoStatus"] == "NEW"
    open_algos = (await client.get("/fapi/v1/openAlgoOrders", symbol="BTCUSDT")).json()
    assert [a["clientAlgoId"] for a in open_algos] == ["ats_abc_S1"]
    assert (await client.get("/fapi/v1/openOrders", symbol="BTCUSDT")).json() == []
    as_order = await client.get("/fapi/v1/order", symbol="BTCUSDT", orderId=stop.json()["algoId"])
    assert as_order.json()["code"] == -2013
    conditional = await client.post(
        "/fapi/v1/order", symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stopPrice="88000", quantity="0.010"
    )
    assert conditional.json()["code"] == -4120
    cancelled = await client.delete("/fapi/v1/algoOrder", clientAlgoId="ats_abc_S1")
    assert cancelled.json()["code"] == "200"
    again = await client.delete("/fapi/v1/algoOrder", clientAlgoId="ats_abc_S1")
    assert again.json()["code"] == -2011
    positions = (await client.get("/fapi/v3/positionRisk")).json()
    assert [(p["symbol"], p["positionAmt"]) for p in positions] == [("BTCUSDT", "0.010")]


async def test_user_stream_delivers_events_in_order_after_a_fill(sim: SimServer, client: Client) -> None:
    await sim.set_price("ETHUSDT", Decimal("3000"))
    listen_key = (await client.http.post("/fapi/v1/listenKey", headers=client.headers)).json()["listenKey"]
    assert len(listen_key) == 64
    same = (await client.http.post("/fapi/v1/listenKey", headers=client.headers)).json()["listenKey"]
    assert same == listen_key
    async with websockets.connect(f"{sim.ws_url}/private/ws/{listen_key}") as ws:
        await client.post("/fapi/v1/order", symbol="ETHUSDT", side="BUY", type="MARKET", quantity="1.000")
        await client.post(
            "/fapi/v1/algoOrder", algoType="CONDITIONAL", symbol="ETHUSDT", side="SELL",
            type="TAKE_PROFIT_MARKET", triggerPrice="3100", quantity="1.000", reduceOnly="true",
        )  # fmt: skip
        await sim.set_price("ETHUSDT", Decimal("3105"))
        seen = []
        times = []
        for _ in range(12):
            event = await receive(ws)
            times.append(event["E"])
            status = event.get("o", {}).get("X") if event["e"] in ("ORDER_TRADE_UPDATE", "ALGO_UPDATE") else None
            seen.append((event["e"], status))
        assert seen[:4] == [
            ("ORDER_TRADE_UPDATE", "NEW"), ("TRADE_LITE", None), ("ORDER_TRADE_UPDATE", "FILLED"),
            ("ACCOUNT_UPDATE", None),
        ]  # fmt: skip
        assert seen[4:] == [
            ("ALGO_UPDATE", "NEW"), ("ALGO_UPDATE", "TRIGGERING"), ("ALGO_UPDATE", "TRIGGERED"),
            ("ORDER_TRADE_UPDATE", "NEW"), ("TRADE_LITE", None), ("ORDER_TRADE_UPDATE", "FILLED"),
            ("ACCOUNT_UPDATE", None), ("ALGO_UPDATE", "FINISHED"),
        ]  # fmt: skip
        assert times == sorted(times)
    keepalive = await client.http.put("/fapi/v1/listenKey", headers=client.headers)
    assert keepalive.json() == {"listenKey": listen_key}


async def test_listen_key_expiry_is_pushed_and_keepalive_then_fails(sim: SimServer, client: Client) -> None:
    listen_key = (await client.http.post("/fapi/v1/listenKey", headers=client.headers)).json()["listenKey"]
    async with websockets.connect(f"{sim.ws_url}/private/stream?streams={listen_key}") as ws:
        await sim.advance(3601)
        message = await receive(ws)
        assert message["stream"] == listen_key
        assert message["data"]["e"] == "listenKeyExpired"
        missing = await client.http.put("/fapi/v1/listenKey", headers=client.headers)
        assert missing.json()["code"] == -1125


async def test_combined_market_streams_on_market_and_public_paths() -> None:
    async with SimServer(SimConfig(), clock=FakeClock(1_767_225_600_000 - 5_000)) as sim:
        await _combined_streams(sim)


async def _combined_streams(sim: SimServer) -> None:
    market_url = f"{sim.ws_url}/market/stream?streams=btcusdt@markPrice@1s/ethusdt@kline_1h"
    async with websockets.connect(market_url) as market, websockets.connect(f"{sim.ws_url}/public/ws") as public:
        await public.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1}))
        assert await receive(public) == {"result": None, "id": 1}
        await public.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        assert await receive(public) == {"result": ["btcusdt@bookTicker"], "id": 2}
        await sim.advance(1)
        streams = {(await receive(market))["stream"] for _ in range(2)}
        assert streams == {"btcusdt@markPrice@1s", "ethusdt@kline_1h"}
        book = await receive(public)
        assert book["e"] == "bookTicker"
        assert Decimal(book["b"]) < Decimal(book["a"])
        await sim.advance(5)
        closed: list[dict[str, Any]] = []
        while len(closed) < 1:
            message = await receive(market)
            if message["stream"] == "ethusdt@kline_1h" and message["data"]["k"]["x"]:
                closed.append(message)
        assert closed[0]["data"]["k"]["i"] == "1h"


async def test_unsubscribe_matches_subscribe_whatever_the_symbol_case(sim: SimServer) -> None:
    async with websockets.connect(f"{sim.ws_url}/public/ws") as public:
        await public.send(json.dumps({"method": "SUBSCRIBE", "params": ["BTCUSDT@bookTicker"], "id": 1}))
        assert await receive(public) == {"result": None, "id": 1}
        await public.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        assert await receive(public) == {"result": ["btcusdt@bookTicker"], "id": 2}
        await public.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["BTCUSDT@bookTicker"], "id": 3}))
        assert await receive(public) == {"result": None, "id": 3}
        await public.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 4}))
        assert await receive(public) == {"result": [], "id": 4}


async def test_old_style_paths_accept_subscriptions_and_deliver_nothing(sim: SimServer) -> None:
    async with websockets.connect(f"{sim.ws_url}/ws/btcusdt@markPrice@1s") as old:
        await old.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 7}))
        assert await receive(old) == {"result": None, "id": 7}
        await sim.advance(5)
        with pytest.raises(TimeoutError):
            await receive(old, wait_s=0.3)


async def test_faults_unknown_error_executes_and_unavailable_does_not(sim: SimServer, client: Client) -> None:
    await sim.set_price("BTCUSDT", Decimal("90000"))
    sim.faults.add("unknown_error", path="/fapi/v1/order", count=1)
    unknown = await client.post(
        "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010", newClientOrderId="u1"
    )
    assert (unknown.status_code, unknown.json()["msg"]) == (
        503,
        "Unknown error, please check your request or try again later.",
    )
    assert (await client.get("/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="u1")).json()["status"] == "FILLED"
    sim.faults.add("unavailable", path="/fapi/v1/order", method="POST", count=1)
    unavailable = await client.post(
        "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010", newClientOrderId="u2"
    )
    assert (unavailable.status_code, unavailable.json()["msg"]) == (503, "Service Unavailable.")
    assert (await client.get("/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="u2")).json()["code"] == -2013
    assert sim.faults.rules == []


async def test_malformed_answers_execute_and_answer_nothing_a_client_can_read(sim: SimServer, client: Client) -> None:
    await sim.set_price("BTCUSDT", Decimal("90000"))
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}
    sim.faults.add("malformed", path="/fapi/v1/order", method="POST", count=1, status=502)
    html = await client.post("/fapi/v1/order", **order, newClientOrderId="m1")
    assert (html.status_code, html.headers["content-type"]) == (502, "text/html")
    assert html.text.startswith("<html>")
    sim.faults.add("malformed", path="/fapi/v1/order", method="POST", count=1, shape="empty")
    empty = await client.post("/fapi/v1/order", **order, newClientOrderId="m2")
    assert (empty.status_code, empty.content) == (200, b"")
    sim.faults.add("malformed", path="/fapi/v1/order", method="POST", count=1, shape="missing_fields")
    partial = await client.post("/fapi/v1/order", **order, newClientOrderId="m3")
    assert (partial.status_code, len(partial.json())) == (200, 1)
    for cid in ("m1", "m2", "m3"):
        found = await client.get("/fapi/v1/order", symbol="BTCUSDT", origClientOrderId=cid)
        assert found.json()["status"] == "FILLED"


async def test_a_bogus_tick_reaches_the_stream_and_moves_nothing(sim: SimServer) -> None:
    await sim.set_price("BTCUSDT", Decimal("90000"))
    async with websockets.connect(f"{sim.ws_url}/market/ws/btcusdt@markPrice@1s") as market:
        event = sim.market.mark_price_event("BTCUSDT") | {"p": "1.00"}
        assert sim.send_stream_event("btcusdt@markPrice@1s", event) == 1  # subscribed as the socket was accepted
        assert (await receive(market))["p"] == "1.00"
    assert sim.market.mark_price_event("BTCUSDT")["p"] != "1.00"


async def test_fault_drop_response_after_accepting_the_order(sim: SimServer, client: Client) -> None:
    await sim.set_price("BTCUSDT", Decimal("90000"))
    sim.faults.add("drop_response", path="/fapi/v1/order", method="POST", count=1, hold_s=5)
    with pytest.raises(httpx.TimeoutException):
        await client.http.post(
            "/fapi/v1/order",
            content=signed(sim.api_secret, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                            "quantity": "0.010", "newClientOrderId": "lost"}),
            headers={**client.headers, **FORM},
            timeout=0.3,
        )  # fmt: skip
    assert (await client.get("/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="lost")).json()["status"] == "FILLED"
    sim.faults.add("drop_response", path="/fapi/v1/order", method="POST", count=1, mode="close")
    with pytest.raises(httpx.TransportError):
        await client.post("/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    sim.faults.add("latency", path="/fapi/v1/time", latency_ms=200, count=1)
    started = time.perf_counter()
    await client.http.get("/fapi/v1/time")
    assert time.perf_counter() - started >= 0.2
    sim.faults.add("rate_limit", path="/fapi/*", count=2)
    storm = [await client.http.get("/fapi/v1/ping") for _ in range(3)]
    assert [r.status_code for r in storm] == [429, 429, 200]
    assert "Retry-After" in storm[0].headers


async def test_websocket_disconnect_and_stall_faults(sim: SimServer) -> None:
    async with websockets.connect(f"{sim.ws_url}/market/ws/btcusdt@markPrice@1s") as ws:
        sim.stall_websockets(0.5, "/market/*")
        await sim.advance(2)
        with pytest.raises(TimeoutError):
            await receive(ws, wait_s=0.2)
        await asyncio.sleep(0.4)
        await sim.advance(1)
        assert (await receive(ws))["e"] == "markPriceUpdate"
        await sim.disconnect_websockets()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2)


async def _pong_within(ws: Any, wait_s: float) -> bool:
    waiter = await ws.ping()
    try:
        await asyncio.wait_for(waiter, wait_s)
    except TimeoutError:
        return False
    return True


async def test_a_stalled_user_stream_loses_its_events_with_or_without_answering_pings(
    sim: SimServer, client: Client
) -> None:
    listen_key = (await client.http.post("/fapi/v1/listenKey", headers=client.headers)).json()["listenKey"]
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}
    async with websockets.connect(f"{sim.ws_url}/private/ws/{listen_key}", ping_interval=None) as ws:
        assert sim.stall_websockets(None, "/private/*") == 1  # until resumed
        assert sim.state()["stalled_websockets"] == 1
        await client.post("/fapi/v1/order", **order)
        assert await _pong_within(ws, 1.0)  # the socket looks alive ...
        with pytest.raises(TimeoutError):
            await receive(ws, wait_s=0.3)  # ... and delivers nothing

        sim.stall_websockets(None, "/private/*", pings=False)  # a black hole: pings go unanswered too
        assert not await _pong_within(ws, 0.3)
        assert sim.resume_websockets("/private/*") == 1
        assert await _pong_within(ws, 1.0)
        await client.post("/fapi/v1/order", **order)
        event = await receive(ws)
        assert event["e"] == "ORDER_TRADE_UPDATE"  # delivered again; what was lost stays lost
        assert event["o"]["X"] == "NEW"
        assert sim.state()["stalled_websockets"] == 0


async def test_a_silent_listen_key_expiry_pushes_nothing(sim: SimServer, client: Client) -> None:
    listen_key = (await client.http.post("/fapi/v1/listenKey", headers=client.headers)).json()["listenKey"]
    async with websockets.connect(f"{sim.ws_url}/private/ws/{listen_key}") as ws:
        assert sim.expire_listen_keys(silent=True) == 1
        await client.post("/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
        with pytest.raises(TimeoutError):
            await receive(ws, wait_s=0.3)
        assert await _pong_within(ws, 1.0)  # open and mute
        missing = await client.http.put("/fapi/v1/listenKey", headers=client.headers)
        assert missing.json()["code"] == -1125


def test_thread_server_and_admin_api(sim_thread: SimServerThread) -> None:
    control = sim_thread.control
    control.set_price("BTCUSDT", "90000")
    control.set_balance("2500")
    state = control.state()
    assert state["wallet_balance"] == "2500.00000000"
    control.add_fault("unavailable", path="/fapi/v1/ping", count=1)
    with httpx.Client(base_url=sim_thread.rest_url) as http:
        assert http.get("/fapi/v1/ping").status_code == 503
        assert http.get("/fapi/v1/ping").status_code == 200
        body = signed(
            sim_thread.api_secret, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}
        )
        placed = http.post("/fapi/v1/order", content=body, headers={"X-MBX-APIKEY": sim_thread.api_key, **FORM})
        assert placed.status_code == 200
    control.advance(60)
    assert control.state()["positions"]["BTCUSDT"]["amount"] == "0.01"
    before = control.state()["market_time"]
    control.advance(3600, tick_seconds=60)  # an hour in sixty ticks: how a demo moves bar by bar
    assert control.state()["market_time"] == before + 3_600_000


def test_stream_faults_through_the_admin_api(sim_thread: SimServerThread) -> None:
    control = sim_thread.control

    with httpx.Client(base_url=sim_thread.rest_url) as http:
        key = http.post("/fapi/v1/listenKey", headers={"X-MBX-APIKEY": sim_thread.api_key}).json()["listenKey"]

    async def scenario() -> None:
        async with websockets.connect(f"{sim_thread.ws_url}/private/ws/{key}", ping_interval=None) as ws:
            assert await asyncio.to_thread(control.stall_websockets, None, "/private/*", pings=False) == 1
            assert not await _pong_within(ws, 0.3)
            await asyncio.to_thread(control.clear_faults)  # clearing the faults ends the stalls too
            assert await _pong_within(ws, 1.0)
            assert await asyncio.to_thread(control.stall_websockets, 5, "/private/*") == 1
            assert await asyncio.to_thread(control.resume_websockets, "/private/*") == 1
            assert await asyncio.to_thread(control.expire_listen_keys, silent=True) == 1

    asyncio.run(scenario())
    with httpx.Client(base_url=sim_thread.rest_url) as http:
        refused = http.post("/sim/ws/stall", json={"seconds": -1})
        assert refused.status_code == 400
        assert http.post("/sim/ws/stall", json={"pings": "no"}).status_code == 400


async def test_state_file_survives_a_restart(tmp_path: Any) -> None:
    state_file = tmp_path / "sim-state.json"
    config = SimConfig(state_file=state_file)
    async with SimServer(config) as sim:
        await sim.set_price("BTCUSDT", Decimal("90000"))
        sim.engine.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"})
        wallet = sim.engine.wallet
    assert state_file.exists()
    async with SimServer(config) as again:
        assert again.engine.wallet == wallet
        assert again.engine.positions["BTCUSDT"].amount == Decimal("0.010")


async def test_realtime_mode_ticks_with_the_wall_clock() -> None:
    async with SimServer(SimConfig(mode="realtime")) as sim:
        started = sim.market.now_ms
        async with websockets.connect(f"{sim.ws_url}/market/ws/btcusdt@markPrice@1s") as ws:
            update = await receive(ws, wait_s=3)
        assert update["e"] == "markPriceUpdate"
        assert sim.market.now_ms > started


async def test_a_huge_query_string_gets_414_not_a_reset(sim: SimServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    try:
        writer.write(b"GET /fapi/v1/time?junk=" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: sim\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 414 ")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        await reader.readexactly(length)
        writer.write(b"GET /fapi/v1/ping HTTP/1.1\r\nHost: sim\r\n\r\n")  # the connection is still usable
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
