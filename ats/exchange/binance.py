"""The Binance USDⓈ-M futures REST client: the `Exchange` that trades real money (and paper on the sim).

One shared httpx.AsyncClient (connection pool, timeouts). Every request first reserves its weight in the
shared `RequestBudget` at its priority (`ats.exchange.budget.request_priority` around the caller, else the
client's default), signed ones carry a server-synchronised timestamp, and every answer is mapped to a
typed value or a typed error (ats.exchange.errors). The client retries only where that cannot change the
outcome: one retry after -1021 (clock resync), after a 429 back-off (normal requests twice, protective ones
until the exchange takes them or `protective_patience_s` has passed), and reads after transient failures.
Writes are never retried here otherwise; after `UnknownOutcome` the caller looks the order up by its client id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from ats.clock import Clock, WallClock
from ats.domain import Bars, SymbolRules, check_client_id, interval_ms
from ats.exchange import parse
from ats.exchange.base import (
    AccountInfo,
    AlgoOrder,
    AlgoOrderRequest,
    FundingRate,
    Income,
    MarginType,
    OpenInterest,
    OpenInterestPoint,
    Order,
    OrderBook,
    OrderRequest,
    OrderType,
    PositionInfo,
    PremiumIndex,
    SymbolConfig,
    Ticker24h,
    Trade,
)
from ats.exchange.budget import (
    BudgetLimits,
    BudgetStore,
    InMemoryBudgetStore,
    Priority,
    RequestBudget,
    current_priority,
    request_priority,
    retry_after_429,
)
from ats.exchange.errors import (
    NO_CHANGE_CODES,
    ExchangeError,
    ExchangeUnavailable,
    IpBanned,
    ListenKeyNotFound,
    MalformedResponse,
    OrderNotFound,
    PositionModeError,
    RateLimited,
    UnknownOutcome,
    banned_until_ms,
    error_for,
)
from ats.exchange.signing import KeyType, Params, encode_params, make_signer, signed_query
from ats.exchange.timesync import TimeOffset, TimeSample, best_offset
from ats.log import get_logger, redact, register_secret

if TYPE_CHECKING:
    from ats.config import Settings

log = get_logger(__name__)

R = TypeVar("R")

MAX_KLINES_PER_REQUEST = 1500
MAX_FUNDING_PER_REQUEST = 1000
MAX_TRADE_WINDOW_MS = 7 * 86_400_000 - 1  # userTrades: endTime - startTime must stay within 7 days
CONDITIONAL_TYPES = (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)
DEFAULT_BAN_MS = 120_000  # the shortest ban Binance hands out, used when a 418 names no end


@dataclass(frozen=True, slots=True)
class CommissionRate:
    symbol: str
    maker: Decimal  # fraction, e.g. Decimal("0.0002") for 0.02 %
    taker: Decimal


def kline_weight(limit: int) -> int:
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def depth_weight(limit: int) -> int:
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


def order_params(request: OrderRequest) -> dict[str, Any]:
    """The parameters of POST /fapi/v1/order for a MARKET or LIMIT order in one-way mode."""
    if request.type not in (OrderType.MARKET, OrderType.LIMIT):
        raise ValueError(f"{request.type} is a conditional order since 2025-12-09: use new_algo_order")
    if request.quantity <= 0:
        raise ValueError(f"order quantity must be positive, got {request.quantity}")
    check_client_id(request.client_order_id)
    params: dict[str, Any] = {
        "symbol": request.symbol,
        "side": request.side,
        "type": request.type,
        "positionSide": "BOTH",
        "quantity": request.quantity,
    }
    if request.type is OrderType.LIMIT:
        if request.price is None or request.price <= 0:
            raise ValueError("a LIMIT order needs a positive price")
        params["price"] = request.price
        params["timeInForce"] = request.time_in_force or "GTC"
    elif request.price is not None:
        raise ValueError("a MARKET order takes no price")
    if request.reduce_only:
        params["reduceOnly"] = True
    params["newClientOrderId"] = request.client_order_id
    params["newOrderRespType"] = "RESULT"
    return params


def algo_order_params(request: AlgoOrderRequest) -> dict[str, Any]:
    """The parameters of POST /fapi/v1/algoOrder for a STOP_MARKET or TAKE_PROFIT_MARKET order."""
    if request.type not in CONDITIONAL_TYPES:
        raise ValueError(f"algo orders here are STOP_MARKET or TAKE_PROFIT_MARKET, not {request.type}")
    if request.trigger_price <= 0:
        raise ValueError(f"trigger price must be positive, got {request.trigger_price}")
    check_client_id(request.client_algo_id)
    params: dict[str, Any] = {
        "algoType": "CONDITIONAL",
        "symbol": request.symbol,
        "side": request.side,
        "positionSide": "BOTH",
        "type": request.type,
        "triggerPrice": request.trigger_price,
        "workingType": request.working_type,
        "priceProtect": request.price_protect,
        "clientAlgoId": request.client_algo_id,
    }
    if request.close_position:
        if request.quantity is not None or request.reduce_only:
            raise ValueError("closePosition takes neither a quantity nor reduceOnly")
        params["closePosition"] = True
    else:
        if request.quantity is None or request.quantity <= 0:
            raise ValueError("an algo order without closePosition needs a positive quantity")
        params["quantity"] = request.quantity
        if request.reduce_only:
            params["reduceOnly"] = True
    return params


def _one_of(**ids: str | int | None) -> dict[str, str | int]:
    given = {key: value for key, value in ids.items() if value is not None}
    if not given:
        raise ValueError(f"give one of {', '.join(ids)}")
    return given


def _header_int(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _error_body(response: httpx.Response) -> tuple[int | None, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code, msg = body.get("code"), body.get("msg")
        if not isinstance(msg, str):
            msg = f"HTTP {response.status_code}"
        return (code if isinstance(code, int) else None), msg
    return None, f"HTTP {response.status_code} {response.reason_phrase}".strip()


def quiet_transport_loggers() -> None:
    """httpx logs every request URL (query and signature included) at INFO and websockets logs the
    handshake (listenKey included) at DEBUG: keep both at WARNING unless someone configured them."""
    for name in ("httpx", "httpcore", "websockets"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


class BinanceFutures:
    """Async REST client for one Binance USDⓈ-M futures account. Safe to share within one event loop."""

    def __init__(
        self,
        rest_url: str,
        api_key: SecretStr,
        api_secret: SecretStr,
        *,
        recv_window_ms: int = 5000,
        timeout_s: float = 10.0,
        clock: Clock | None = None,
        budget: RequestBudget | None = None,
        key_type: KeyType = "hmac",
        time_resync_s: float = 300.0,
        read_retries: int = 2,
        rate_limit_retries: int = 2,
        protective_patience_s: float = 90.0,
        priority: Priority = Priority.NORMAL,
        transport: httpx.AsyncBaseTransport | None = None,
        write_guard: Callable[[str, str], None] | None = None,
    ) -> None:
        """`write_guard(method, path)` runs just before every request that is not a GET leaves the process; raising
        refuses it (the monitor's fence: a process that lost its leadership sends nothing). `priority` applies to
        requests made outside any `request_priority` block (the emergency close-all's client makes everything
        protective)."""
        self._rest_url = rest_url.rstrip("/")
        self._clock = clock or WallClock()
        self._api_key = api_key
        self._signer = make_signer(api_secret, key_type)
        self._key_type = key_type
        register_secret(api_key.get_secret_value())
        register_secret(api_secret.get_secret_value())
        self._recv_window_ms = recv_window_ms
        self._time_resync_s = time_resync_s
        self._read_retries = read_retries
        self._rate_limit_retries = rate_limit_retries
        self._write_guard = write_guard
        self._protective_patience_s = protective_patience_s
        self._priority = priority
        self._budget = budget or RequestBudget(
            InMemoryBudgetStore(), scope=budget_scope(self._rest_url), clock=self._clock
        )
        self._offset_ms = 0
        self._synced_at: float | None = None
        self._time_lock = asyncio.Lock()  # one resync at a time, however many requests wait for it
        self._listen_key: str | None = None
        quiet_transport_loggers()
        self._http = httpx.AsyncClient(
            base_url=self._rest_url,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            transport=transport,
            headers={"User-Agent": "ats/0.1"},
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        budget_store: BudgetStore | None = None,
        priority: Priority = Priority.NORMAL,
        transport: httpx.AsyncBaseTransport | None = None,
        write_guard: Callable[[str, str], None] | None = None,
    ) -> BinanceFutures:
        """The client for the configured venue; pass the PostgreSQL budget store to share the budget host-wide."""
        clock = clock or WallClock()
        exchange = settings.exchange
        key, secret = settings.api_credentials()
        budget = RequestBudget(
            budget_store or InMemoryBudgetStore(),
            scope=budget_scope(settings.rest_url),
            clock=clock,
            limits=BudgetLimits(
                weight_per_minute=exchange.weight_limit_per_minute,
                safety_margin=exchange.weight_safety_margin,
                protective_reserve=exchange.protective_reserve,
            ),
        )
        return cls(
            settings.rest_url,
            key,
            secret,
            recv_window_ms=exchange.recv_window_ms,
            timeout_s=exchange.timeout_s,
            clock=clock,
            budget=budget,
            key_type=exchange.key_type,
            time_resync_s=exchange.time_resync_s,
            priority=priority,
            transport=transport,
            write_guard=write_guard,
        )

    def __repr__(self) -> str:
        return f"BinanceFutures(rest_url={self._rest_url!r}, key_type={self._key_type!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def budget(self) -> RequestBudget:
        return self._budget

    @property
    def listen_key(self) -> str | None:
        """The listenKey this client last created (a keepalive may replace it)."""
        return self._listen_key

    # ------------------------------------------------------------------------------------------ transport

    async def _request(
        self,
        method: str,
        path: str,
        params: Params | None = None,
        *,
        signed: bool = False,
        api_key: bool = False,
        weight: int = 1,
        orders: int = 0,
    ) -> Any:
        """Send one request (with the retries that cannot change its outcome) and return the JSON answer."""
        mutating = method != "GET"
        level = current_priority(self._priority)
        started = self._clock.monotonic()
        resynced = False
        rate_limited = 0
        read_failures = 0
        while True:
            if signed:
                await self._ensure_time_synced()
            try:
                return await self._send(method, path, params or {}, signed, api_key, weight, orders, level)
            except ExchangeError as exc:
                if exc.code == -1021 and signed and not resynced:
                    log.warning("timestamp rejected, resyncing server time", path=path)
                    resynced = True
                    await self.sync_time()
                    continue
                if (
                    isinstance(exc, RateLimited)
                    and exc.http_status == 429
                    and retry_after_429(
                        level,
                        rate_limited,
                        self._clock.monotonic() - started,
                        normal_retries=self._rate_limit_retries,
                        patience_s=self._protective_patience_s,
                    )
                ):
                    rate_limited += 1
                    continue  # the next acquire() waits out the back-off recorded in the budget
                if isinstance(exc, ExchangeUnavailable) and not mutating and read_failures < self._read_retries:
                    read_failures += 1
                    await self._clock.sleep(0.25 * 2**read_failures)
                    continue
                raise

    async def _send(
        self,
        method: str,
        path: str,
        params: Params,
        signed: bool,
        api_key: bool,
        weight: int,
        orders: int,
        priority: Priority,
    ) -> Any:
        mutating = method != "GET"
        await self._budget.acquire(weight, orders, priority)
        if signed:
            query = signed_query(
                params, timestamp_ms=self.server_now_ms(), recv_window_ms=self._recv_window_ms, signer=self._signer
            )
        else:
            query = encode_params(params)
        headers = {"X-MBX-APIKEY": self._api_key.get_secret_value()} if signed or api_key else None
        if mutating and self._write_guard is not None:
            self._write_guard(method, path)
        started = self._clock.monotonic()
        try:
            response = await self._http.request(method, f"{path}?{query}" if query else path, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ExchangeUnavailable(f"{method} {path}: could not connect ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            detail = redact(str(exc))[:200]
            if mutating:
                raise UnknownOutcome(
                    f"{method} {path}: no answer ({type(exc).__name__}: {detail}); it may have been executed"
                ) from None
            raise ExchangeUnavailable(f"{method} {path}: no answer ({type(exc).__name__}: {detail})") from None
        log.debug(
            "binance request",
            method=method,
            path=path,
            status=response.status_code,
            ms=round((self._clock.monotonic() - started) * 1000, 1),
            weight=response.headers.get("X-MBX-USED-WEIGHT-1M"),
        )
        await self._budget.record(
            used_weight=_header_int(response, "X-MBX-USED-WEIGHT-1M"),
            orders_10s=_header_int(response, "X-MBX-ORDER-COUNT-10S"),
            orders_1m=_header_int(response, "X-MBX-ORDER-COUNT-1M"),
        )
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                raise self._malformed(method, path, "the answer is not JSON") from None
            if isinstance(body, dict) and isinstance(body.get("code"), int) and body["code"] < 0:
                msg = body.get("msg") if isinstance(body.get("msg"), str) else "error"
                raise error_for(response.status_code, body["code"], str(msg), mutating=mutating)
            return body
        code, msg = _error_body(response)
        if response.status_code == 429:
            retry_after = _retry_after_s(response)
            log.warning(
                "rate limited by binance",
                path=path,
                retry_after_s=retry_after,
                code=code,
                priority=priority.name.lower(),
            )
            await self._budget.rate_limited(retry_after)
            raise RateLimited(msg, retry_after_s=retry_after, code=code, http_status=429)
        if response.status_code == 418 or (code == -1003 and banned_until_ms(msg) is not None):
            retry_after = _retry_after_s(response)
            until = banned_until_ms(msg) or (
                self._budget.now_ms() + (int(retry_after * 1000) if retry_after else DEFAULT_BAN_MS)
            )
            log.error("ip banned by binance: all requests stop until the ban ends", until_ms=until, path=path)
            await self._budget.banned(until)
            raise IpBanned(msg, until_ms=until, code=code, http_status=response.status_code)
        raise error_for(response.status_code, code, msg, mutating=mutating)

    @staticmethod
    def _malformed(method: str, path: str, why: str) -> ExchangeError:
        if method != "GET":
            return UnknownOutcome(f"{method} {path}: {why}; the request may have been executed")
        return MalformedResponse(f"{method} {path}: {why}")

    def _parsed(self, method: str, path: str, parser: Callable[[Any], R], body: Any) -> R:
        try:
            return parser(body)
        except parse.MalformedPayload as exc:
            raise self._malformed(method, path, str(exc)) from None

    def _parsed_list(
        self, method: str, path: str, parser: Callable[[Any], R], body: Any, *, skip_bad: bool = False
    ) -> list[R]:
        """Parse a list answer. Market data may skip a bad entry; account data must not hide one."""
        if not isinstance(body, list):
            raise self._malformed(method, path, "the answer is not a JSON array")
        items: list[R] = []
        for raw in body:
            try:
                items.append(parser(raw))
            except parse.MalformedPayload as exc:
                if not skip_bad:
                    raise self._malformed(method, path, str(exc)) from None
                log.warning("skipping a malformed entry", path=path, error=str(exc))
        return items

    # ------------------------------------------------------------------------------------------ time

    def server_now_ms(self) -> int:
        """The exchange's clock as best known: local time plus the measured offset."""
        return self._clock.now_ms() + self._offset_ms

    @property
    def time_offset_ms(self) -> int:
        return self._offset_ms

    async def server_time(self) -> int:
        body = await self._request("GET", "/fapi/v1/time")
        return self._parsed("GET", "/fapi/v1/time", parse.server_time, body)

    async def sync_time(self, samples: int = 3) -> TimeOffset:
        """Measure the server-time offset: several round trips, keep the one with the shortest round trip."""
        collected = []
        for _ in range(max(samples, 1)):
            sent = self._clock.now_ms()
            server = await self.server_time()
            collected.append(TimeSample(sent_ms=sent, server_ms=server, received_ms=self._clock.now_ms()))
        best = best_offset(collected)
        self._offset_ms = best.offset_ms
        self._synced_at = self._clock.monotonic()
        self._budget.set_clock_offset(best.offset_ms)
        log.info("server time synced", offset_ms=best.offset_ms, round_trip_ms=best.round_trip_ms)
        return best

    async def _ensure_time_synced(self) -> None:
        if self._synced_at is not None and self._clock.monotonic() - self._synced_at < self._time_resync_s:
            return
        async with self._time_lock:
            if self._synced_at is None or self._clock.monotonic() - self._synced_at >= self._time_resync_s:
                await self.sync_time()

    # ------------------------------------------------------------------------------------------ market data

    async def exchange_info(self) -> dict[str, SymbolRules]:
        body = await self._request("GET", "/fapi/v1/exchangeInfo")
        if not isinstance(body, dict) or not isinstance(body.get("symbols"), list):
            raise MalformedResponse("GET /fapi/v1/exchangeInfo: no symbols array")
        rules: dict[str, SymbolRules] = {}
        for entry in body["symbols"]:
            try:
                rule = SymbolRules.from_exchange_info(entry)
            except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                log.warning("skipping a malformed exchangeInfo symbol", error=type(exc).__name__)
                continue
            rules[rule.symbol] = rule
        return rules

    async def tickers_24h(self) -> list[Ticker24h]:
        body = await self._request("GET", "/fapi/v1/ticker/24hr", weight=40)
        return self._parsed_list("GET", "/fapi/v1/ticker/24hr", parse.ticker_24h, body, skip_bad=True)

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> Bars:
        """Closed bars only, oldest first, at most `limit` of them.

        With `start_ms`: the first `limit` closed bars opening at or after it (up to `end_ms`).
        Without: the last `limit` closed bars up to `end_ms` (or now). Pages through the 1500-row cap.
        """
        return await self._klines("/fapi/v1/klines", symbol, interval, start_ms, end_ms, limit)

    async def mark_price_klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> Bars:
        """Closed mark-price klines, paged as `klines`; Binance sends no volume, so every volume column is NaN."""
        bars = await self._klines("/fapi/v1/markPriceKlines", symbol, interval, start_ms, end_ms, limit)
        return bars.prices_only()

    async def _klines(
        self, path: str, symbol: str, interval: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> Bars:
        step = interval_ms(interval)
        if limit <= 0:
            return Bars.empty(symbol, interval)
        await self._ensure_time_synced()
        now = self.server_now_ms()
        upper = now if end_ms is None else min(end_ms, now)
        closed: dict[int, list[Any]] = {}

        async def page(count: int, **window: int) -> list[list[Any]]:
            params: dict[str, Any] = {"symbol": symbol, "interval": interval}
            params.update({"startTime": window.get("start"), "endTime": window.get("end"), "limit": count})
            body = await self._request("GET", path, params, weight=kline_weight(count))
            rows = self._parsed("GET", path, parse.kline_rows, body)
            for row in rows:
                if int(row[0]) + step <= now:  # the forming bar closes in the future: never returned
                    closed[int(row[0])] = row
            return rows

        if start_ms is not None:
            cursor = start_ms
            while len(closed) < limit and cursor <= upper:
                count = min(limit - len(closed), MAX_KLINES_PER_REQUEST)
                rows = await page(count, start=cursor, end=upper)
                if len(rows) < count:
                    break
                cursor = int(rows[-1][0]) + step
            ordered = sorted(closed)[:limit]
        else:
            end = end_ms
            while len(closed) < limit:
                count = min(limit - len(closed) + 1, MAX_KLINES_PER_REQUEST)  # +1: the forming bar
                rows = await page(count, **({} if end is None else {"end": end}))
                if len(rows) < count or not rows:
                    break
                end = int(rows[0][0]) - 1
            ordered = sorted(closed)[-limit:]
        return Bars.from_rows(symbol, interval, [closed[t] for t in ordered])

    async def premium_index(self, symbol: str | None = None) -> list[PremiumIndex]:
        path = "/fapi/v1/premiumIndex"
        body = await self._request("GET", path, {"symbol": symbol}, weight=1 if symbol else 10)
        if isinstance(body, dict):
            return [self._parsed("GET", path, parse.premium_index, body)]
        return self._parsed_list("GET", path, parse.premium_index, body, skip_bad=True)

    async def open_interest(self, symbol: str) -> OpenInterest:
        body = await self._request("GET", "/fapi/v1/openInterest", {"symbol": symbol})
        return self._parsed("GET", "/fapi/v1/openInterest", parse.open_interest, body)

    async def funding_rates(self, symbol: str, *, start_ms: int, end_ms: int) -> list[FundingRate]:
        """Every funding settlement from start_ms to end_ms, oldest first (pages of 1000)."""
        path = "/fapi/v1/fundingRate"
        found: list[FundingRate] = []
        cursor = start_ms
        while cursor <= end_ms:
            params: Params = {
                "symbol": symbol,
                "startTime": cursor,
                "endTime": end_ms,
                "limit": MAX_FUNDING_PER_REQUEST,
            }
            body = await self._request("GET", path, params)
            page = self._parsed_list("GET", path, parse.funding_rate, body)
            found.extend(page)
            if len(page) < MAX_FUNDING_PER_REQUEST:
                break
            cursor = max(f.funding_time_ms for f in page) + 1
        return found

    async def open_interest_hist(self, symbol: str, period: str, limit: int = 30) -> list[OpenInterestPoint]:
        path = "/futures/data/openInterestHist"
        body = await self._request("GET", path, {"symbol": symbol, "period": period, "limit": limit})
        return self._parsed_list("GET", path, parse.open_interest_point, body, skip_bad=True)

    async def depth(self, symbol: str, limit: int = 20) -> OrderBook:
        params: dict[str, Any] = {"symbol": symbol, "limit": limit}
        body = await self._request("GET", "/fapi/v1/depth", params, weight=depth_weight(limit))
        return self._parsed("GET", "/fapi/v1/depth", lambda b: parse.order_book(b, symbol), body)

    # ------------------------------------------------------------------------------------------ account

    async def account(self) -> AccountInfo:
        body = await self._request("GET", "/fapi/v3/account", signed=True, weight=5)
        return self._parsed("GET", "/fapi/v3/account", parse.account_info, body)

    async def positions(self, symbol: str | None = None) -> list[PositionInfo]:
        path = "/fapi/v3/positionRisk"
        body = await self._request("GET", path, {"symbol": symbol}, signed=True, weight=5)
        return [p for p in self._parsed_list("GET", path, parse.position_info, body) if p.amount != 0]

    async def symbol_config(self, symbol: str) -> SymbolConfig:
        path = "/fapi/v1/symbolConfig"
        body = await self._request("GET", path, {"symbol": symbol}, signed=True, weight=5)
        configs = self._parsed_list("GET", path, parse.symbol_config, body)
        for config in configs:
            if config.symbol == symbol:
                return config
        raise MalformedResponse(f"GET {path}: no configuration for {symbol}")

    async def commission_rate(self, symbol: str) -> CommissionRate:
        path = "/fapi/v1/commissionRate"
        body = await self._request("GET", path, {"symbol": symbol}, signed=True, weight=20)

        maker, taker = self._parsed("GET", path, parse.commission_rates, body)
        return CommissionRate(symbol=symbol, maker=maker, taker=taker)

    async def is_hedge_mode(self) -> bool:
        path = "/fapi/v1/positionSide/dual"
        body = await self._request("GET", path, signed=True, weight=30)
        if not isinstance(body, dict) or not isinstance(body.get("dualSidePosition"), bool):
            raise MalformedResponse(f"GET {path}: no dualSidePosition flag")
        return bool(body["dualSidePosition"])

    async def ensure_one_way_mode(self) -> None:
        """This system trades in one-way mode only: switch to it, or refuse if hedge-mode positions exist."""
        if not await self.is_hedge_mode():
            return
        if await self.positions():
            raise PositionModeError(
                "the account is in hedge mode and has open positions; close them (or switch the account to "
                "one-way mode in Binance) before starting: this system trades in one-way mode only"
            )
        try:
            await self._request("POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": False}, signed=True)
        except ExchangeError as exc:
            if exc.code not in NO_CHANGE_CODES:
                raise
        log.info("switched the account to one-way position mode")

    async def set_leverage(self, symbol: str, leverage: int) -> int:
        path = "/fapi/v1/leverage"
        body = await self._request("POST", path, {"symbol": symbol, "leverage": leverage}, signed=True)
        return self._parsed("POST", path, parse.leverage, body)

    async def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        try:
            await self._request(
                "POST", "/fapi/v1/marginType", {"symbol": symbol, "marginType": margin_type}, signed=True
            )
        except ExchangeError as exc:
            if exc.code not in NO_CHANGE_CODES:
                raise

    # ------------------------------------------------------------------------------------------ orders

    async def new_order(self, request: OrderRequest) -> Order:
        path = "/fapi/v1/order"
        body = await self._request("POST", path, order_params(request), signed=True, weight=0, orders=1)
        return self._parsed("POST", path, parse.order, body)

    async def get_order(
        self, symbol: str, *, client_order_id: str | None = None, order_id: int | None = None
    ) -> Order | None:
        """The order as the exchange knows it, or None if it does not (-2013)."""
        ids = _one_of(orderId=order_id, origClientOrderId=client_order_id)
        try:
            body = await self._request("GET", "/fapi/v1/order", {"symbol": symbol, **ids}, signed=True)
        except OrderNotFound:
            return None
        return self._parsed("GET", "/fapi/v1/order", parse.order, body)

    async def cancel_order(
        self, symbol: str, *, client_order_id: str | None = None, order_id: int | None = None
    ) -> Order | None:
        """The canceled order, or None if the exchange does not know it as open (-2011): already gone."""
        ids = _one_of(orderId=order_id, origClientOrderId=client_order_id)
        try:
            body = await self._request("DELETE", "/fapi/v1/order", {"symbol": symbol, **ids}, signed=True)
        except OrderNotFound:
            return None
        return self._parsed("DELETE", "/fapi/v1/order", parse.order, body)

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        path = "/fapi/v1/openOrders"
        body = await self._request("GET", path, {"symbol": symbol}, signed=True, weight=1 if symbol else 40)
        return self._parsed_list("GET", path, parse.order, body)

    async def new_algo_order(self, request: AlgoOrderRequest) -> AlgoOrder:
        path = "/fapi/v1/algoOrder"
        body = await self._request("POST", path, algo_order_params(request), signed=True, weight=0, orders=1)
        return self._parsed("POST", path, parse.algo_order, body)

    async def get_algo_order(
        self, *, client_algo_id: str | None = None, algo_id: int | None = None
    ) -> AlgoOrder | None:
        """The algo order as the exchange knows it, or None if it does not."""
        ids = _one_of(algoId=algo_id, clientAlgoId=client_algo_id)
        try:
            body = await self._request("GET", "/fapi/v1/algoOrder", ids, signed=True)
        except OrderNotFound:
            return None
        return self._parsed("GET", "/fapi/v1/algoOrder", parse.algo_order, body)

    async def cancel_algo_order(
        self, *, client_algo_id: str | None = None, algo_id: int | None = None
    ) -> AlgoOrder | None:
        """The canceled algo order, or None when it is unknown or no longer open."""
        ids = _one_of(algoId=algo_id, clientAlgoId=client_algo_id)
        try:
            body = await self._request("DELETE", "/fapi/v1/algoOrder", ids, signed=True)
        except OrderNotFound:
            return None
        if isinstance(body, dict) and body.get("algoStatus") is not None:
            return self._parsed("DELETE", "/fapi/v1/algoOrder", parse.algo_order, body)
        # Binance answers a cancel with ids only; read the order back for its final state.
        canceled_id = body.get("algoId") if isinstance(body, dict) else None
        if isinstance(canceled_id, int):
            return await self.get_algo_order(algo_id=canceled_id)
        return await self.get_algo_order(client_algo_id=client_algo_id, algo_id=algo_id)

    async def open_algo_orders(self, symbol: str | None = None) -> list[AlgoOrder]:
        path = "/fapi/v1/openAlgoOrders"
        body = await self._request("GET", path, {"symbol": symbol}, signed=True, weight=1 if symbol else 40)
        if isinstance(body, dict) and isinstance(body.get("orders"), list):
            body = body["orders"]
        return self._parsed_list("GET", path, parse.algo_order, body)

    async def cancel_all_orders(self, symbol: str) -> None:
        """Cancel every normal and every algo order of a symbol (two endpoints since the Algo migration)."""
        failure: ExchangeError | None = None
        for path in ("/fapi/v1/algoOpenOrders", "/fapi/v1/allOpenOrders"):
            try:
                await self._request("DELETE", path, {"symbol": symbol}, signed=True)
            except ExchangeError as exc:
                log.warning("cancel-all failed", path=path, symbol=symbol, error=str(exc))
                failure = failure or exc
        if failure is not None:
            raise failure

    # ------------------------------------------------------------------------------------------ history

    async def user_trades(
        self, symbol: str, *, start_ms: int | None = None, end_ms: int | None = None, limit: int = 500
    ) -> list[Trade]:
        """Fills of one symbol, oldest first.

        Without a time range: the most recent `limit` fills (of the last 7 days). With one: every fill in
        it, fetched in 7-day windows of pages of `limit` (max 1000).
        """
        path = "/fapi/v1/userTrades"
        page_size = max(1, min(limit, 1000))
        if start_ms is None and end_ms is None:
            body = await self._request("GET", path, {"symbol": symbol, "limit": page_size}, signed=True, weight=5)
            return sorted(self._parsed_list("GET", path, parse.trade, body), key=lambda t: (t.time_ms, t.trade_id))
        await self._ensure_time_synced()  # "now" is the exchange's: a local clock behind it would cut off fills
        end = self.server_now_ms() if end_ms is None else end_ms
        start = end - MAX_TRADE_WINDOW_MS if start_ms is None else start_ms
        found: dict[int, Trade] = {}
        window_start = start
        while window_start <= end:
            window_end = min(window_start + MAX_TRADE_WINDOW_MS, end)
            cursor = window_start
            while True:
                params: dict[str, Any] = {
                    "symbol": symbol,
                    "startTime": cursor,
                    "endTime": window_end,
                    "limit": page_size,
                }
                body = await self._request("GET", path, params, signed=True, weight=5)
                trades = self._parsed_list("GET", path, parse.trade, body)
                found.update((t.trade_id, t) for t in trades)
                if len(trades) < page_size:
                    break
                last = max(t.time_ms for t in trades)
                cursor = last if last > cursor else cursor + 1  # same-millisecond fills are deduplicated
            window_start = window_end + 1
        return sorted(found.values(), key=lambda t: (t.time_ms, t.trade_id))

    async def income(
        self,
        *,
        symbol: str | None = None,
        income_type: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[Income]:
        path = "/fapi/v1/income"
        params = {
            "symbol": symbol,
            "incomeType": income_type,
            "startTime": start_ms,
            "endTime": end_ms,
            "limit": max(1, min(limit, 1000)),
        }
        body = await self._request("GET", path, params, signed=True, weight=30)
        return self._parsed_list("GET", path, parse.income, body)

    # ------------------------------------------------------------------------------------------ listenKey

    # The user stream is how fills are seen: its key is protective work.

    async def create_listen_key(self) -> str:
        """POST /fapi/v1/listenKey: a new key, or the active one extended (it is per API key)."""
        with request_priority(Priority.PROTECTIVE):
            body = await self._request("POST", "/fapi/v1/listenKey", api_key=True)
        key = body.get("listenKey") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise UnknownOutcome("POST /fapi/v1/listenKey: the answer carries no listenKey")
        self._listen_key = key
        return key

    async def keepalive_listen_key(self) -> None:
        """Extend the listenKey by 60 minutes; if the exchange no longer knows it (-1125), create a new one.

        Whoever holds a stream on the old key must reconnect when `listen_key` changed.
        """
        try:
            with request_priority(Priority.PROTECTIVE):
                await self._request("PUT", "/fapi/v1/listenKey", api_key=True)
        except ListenKeyNotFound:
            log.warning("listenKey expired on the exchange, creating a new one")
            await self.create_listen_key()

    async def close_listen_key(self) -> None:
        with contextlib.suppress(ListenKeyNotFound):
            await self._request("DELETE", "/fapi/v1/listenKey", api_key=True)
        self._listen_key = None


def budget_scope(rest_url: str) -> str:
    """The budget is per exchange host (its IP limit); the same host shares one budget row."""
    parts = urlsplit(rest_url)
    return f"rest:{parts.hostname or rest_url}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
