"""Binance JSON -> the typed values and events of ats.exchange.base.

Parsers read the fields they need and ignore every other one (payloads keep gaining fields). A payload
missing a needed field, or carrying one that cannot be read, raises `MalformedPayload`; the caller decides
whether that means "skip this frame" (streams) or "the request failed" (REST). Numbers arrive as strings,
sometimes as JSON numbers; both become Decimal without passing through binary floating point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from ats.domain import Side
from ats.exchange.base import (
    AccountInfo,
    AccountUpdate,
    AggTrade,
    AlgoOrder,
    AlgoStatus,
    AlgoUpdate,
    BalanceChange,
    BookTicker,
    ForceOrder,
    FundingRate,
    Income,
    KlineUpdate,
    ListenKeyExpired,
    MarginType,
    MarketEvent,
    MarkPriceUpdate,
    OpenInterest,
    OpenInterestPoint,
    Order,
    OrderBook,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionChange,
    PositionInfo,
    PremiumIndex,
    SymbolConfig,
    Ticker24h,
    Trade,
    UserEvent,
    WorkingType,
)

E = TypeVar("E", bound=StrEnum)
ZERO = Decimal(0)


class MalformedPayload(ValueError):
    """A payload lacks a needed field or carries one that cannot be read."""


# ---------------------------------------------------------------------------------------------- field readers


def _obj(value: Any, what: str = "payload") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedPayload(f"{what} is not a JSON object")
    return value


def _list(value: Any, what: str = "payload") -> list[Any]:
    if not isinstance(value, list):
        raise MalformedPayload(f"{what} is not a JSON array")
    return value


def _get(data: Mapping[str, Any], key: str) -> Any:
    value = data.get(key)
    if value is None:
        raise MalformedPayload(f"field {key!r} is missing")
    return value


def to_decimal(value: Any, key: str = "value") -> Decimal:
    if isinstance(value, bool) or value is None:
        raise MalformedPayload(f"field {key!r} is not a number")
    if isinstance(value, float):
        value = repr(value)  # the shortest text that round-trips, not the binary expansion
    try:
        result = Decimal(value) if isinstance(value, str | int) else None
    except (InvalidOperation, ValueError):
        result = None
    if result is None or not result.is_finite():
        raise MalformedPayload(f"field {key!r} is not a number")
    return result


def _dec(data: Mapping[str, Any], key: str) -> Decimal:
    return to_decimal(_get(data, key), key)


def _dec_or(data: Mapping[str, Any], key: str, default: Decimal = ZERO) -> Decimal:
    value = data.get(key)
    if value is None or value == "":
        return default
    return to_decimal(value, key)


def _int(data: Mapping[str, Any], key: str) -> int:
    value = _get(data, key)
    if isinstance(value, bool):
        raise MalformedPayload(f"field {key!r} is not an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MalformedPayload(f"field {key!r} is not an integer") from None


def _int_or(data: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = data.get(key)
    if value is None or value == "":
        return default
    return _int(data, key)


def _opt_id(data: Mapping[str, Any], key: str) -> int | None:
    """An id that is "" or 0 or absent until it exists (actualOrderId, ai)."""
    value = _int_or(data, key, 0)
    return value or None


def _str(data: Mapping[str, Any], key: str) -> str:
    value = _get(data, key)
    if not isinstance(value, str):
        raise MalformedPayload(f"field {key!r} is not a string")
    return value


def _str_or(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    return value if isinstance(value, str) else default


def _bool(data: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise MalformedPayload(f"field {key!r} is not a boolean")


def _enum(cls: type[E], value: Any, key: str) -> E:
    try:
        return cls(value)
    except ValueError:
        raise MalformedPayload(f"field {key!r} has an unknown value {value!r}") from None


def _side(data: Mapping[str, Any], key: str) -> Side:
    return _enum(Side, _get(data, key), key)


def _margin_type(value: Any, key: str) -> MarginType:
    text = str(value).upper()
    if text in ("ISOLATED",):
        return MarginType.ISOLATED
    if text in ("CROSS", "CROSSED"):
        return MarginType.CROSSED
    raise MalformedPayload(f"field {key!r} has an unknown margin type {value!r}")


# ---------------------------------------------------------------------------------------------- REST values


def server_time(raw: Any) -> int:
    return _int(_obj(raw, "time"), "serverTime")


def leverage(raw: Any) -> int:
    return _int(_obj(raw, "leverage"), "leverage")


def commission_rates(raw: Any) -> tuple[Decimal, Decimal]:
    """(maker, taker) as fractions from GET /fapi/v1/commissionRate."""
    data = _obj(raw, "commission rate")
    return _dec(data, "makerCommissionRate"), _dec(data, "takerCommissionRate")


def ticker_24h(raw: Any) -> Ticker24h:
    data = _obj(raw, "ticker")
    return Ticker24h(
        symbol=_str(data, "symbol"),
        last_price=_dec(data, "lastPrice"),
        price_change_percent=_dec(data, "priceChangePercent"),
        high=_dec(data, "highPrice"),
        low=_dec(data, "lowPrice"),
        volume=_dec(data, "volume"),
        quote_volume=_dec(data, "quoteVolume"),
        trade_count=_int_or(data, "count"),
        open_time_ms=_int_or(data, "openTime"),
        close_time_ms=_int_or(data, "closeTime"),
    )


def premium_index(raw: Any) -> PremiumIndex:
    data = _obj(raw, "premium index")
    return PremiumIndex(
        symbol=_str(data, "symbol"),
        mark_price=_dec(data, "markPrice"),
        index_price=_dec_or(data, "indexPrice"),
        last_funding_rate=_dec_or(data, "lastFundingRate"),
        next_funding_time_ms=_int_or(data, "nextFundingTime"),
        time_ms=_int_or(data, "time"),
    )


def open_interest(raw: Any) -> OpenInterest:
    data = _obj(raw, "open interest")
    return OpenInterest(
        symbol=_str(data, "symbol"), open_interest=_dec(data, "openInterest"), time_ms=_int(data, "time")
    )


def open_interest_point(raw: Any) -> OpenInterestPoint:
    data = _obj(raw, "open interest point")
    return OpenInterestPoint(
        symbol=_str(data, "symbol"),
        sum_open_interest=_dec(data, "sumOpenInterest"),
        sum_open_interest_value=_dec(data, "sumOpenInterestValue"),
        timestamp_ms=_int(data, "timestamp"),
    )


def funding_rate(raw: Any) -> FundingRate:
    data = _obj(raw, "funding rate")
    mark = data.get("markPrice")
    return FundingRate(
        symbol=_str(data, "symbol"),
        funding_time_ms=_int(data, "fundingTime"),
        funding_rate=_dec(data, "fundingRate"),
        mark_price=None if mark in (None, "") else to_decimal(mark, "markPrice"),
    )


def _levels(raw: Any, key: str) -> list[tuple[Decimal, Decimal]]:
    levels = []
    for level in _list(raw, key):
        pair = _list(level, key)
        if len(pair) < 2:
            raise MalformedPayload(f"a {key} level has fewer than two entries")
        levels.append((to_decimal(pair[0], key), to_decimal(pair[1], key)))
    return levels


def order_book(raw: Any, symbol: str) -> OrderBook:
    data = _obj(raw, "order book")
    return OrderBook(
        symbol=symbol,
        bids=_levels(_get(data, "bids"), "bids"),
        asks=_levels(_get(data, "asks"), "asks"),
        last_update_id=_int(data, "lastUpdateId"),
        time_ms=_int_or(data, "T", _int_or(data, "E")),
    )


def account_info(raw: Any) -> AccountInfo:
    data = _obj(raw, "account")
    return AccountInfo(
        total_wallet_balance=_dec(data, "totalWalletBalance"),
        total_unrealized_pnl=_dec(data, "totalUnrealizedProfit"),
        total_margin_balance=_dec(data, "totalMarginBalance"),
        available_balance=_dec(data, "availableBalance"),
        max_withdraw_amount=_dec_or(data, "maxWithdrawAmount"),
    )


def position_info(raw: Any) -> PositionInfo:
    """One entry of GET /fapi/v3/positionRisk (v2 entries work too)."""
    data = _obj(raw, "position")
    isolated_wallet = _dec_or(data, "isolatedWallet")
    if data.get("marginType") is not None:
        margin_type = _margin_type(data["marginType"], "marginType")
    else:  # v3 dropped marginType; an isolated position always holds an isolated wallet
        margin_type = MarginType.ISOLATED if isolated_wallet != 0 else MarginType.CROSSED
    return PositionInfo(
        symbol=_str(data, "symbol"),
        amount=_dec(data, "positionAmt"),
        entry_price=_dec(data, "entryPrice"),
        break_even_price=_dec_or(data, "breakEvenPrice"),
        mark_price=_dec_or(data, "markPrice"),
        unrealized_pnl=_dec_or(data, "unRealizedProfit"),
        liquidation_price=_dec_or(data, "liquidationPrice"),
        isolated_margin=_dec_or(data, "isolatedMargin"),
        notional=_dec_or(data, "notional"),
        margin_type=margin_type,
        update_time_ms=_int_or(data, "updateTime"),
        position_side=_str_or(data, "positionSide", "BOTH"),
    )


def symbol_config(raw: Any) -> SymbolConfig:
    data = _obj(raw, "symbol config")
    return SymbolConfig(
        symbol=_str(data, "symbol"),
        margin_type=_margin_type(_get(data, "marginType"), "marginType"),
        leverage=_int(data, "leverage"),
    )


def order(raw: Any) -> Order:
    data = _obj(raw, "order")
    return Order(
        symbol=_str(data, "symbol"),
        order_id=_int(data, "orderId"),
        client_order_id=_str(data, "clientOrderId"),
        side=_side(data, "side"),
        type=_enum(OrderType, _get(data, "type"), "type"),
        status=_enum(OrderStatus, _get(data, "status"), "status"),
        orig_qty=_dec(data, "origQty"),
        executed_qty=_dec_or(data, "executedQty"),
        avg_price=_dec_or(data, "avgPrice"),
        price=_dec_or(data, "price"),
        cum_quote=_dec_or(data, "cumQuote"),
        reduce_only=_bool(data, "reduceOnly"),
        close_position=_bool(data, "closePosition"),
        update_time_ms=_int_or(data, "updateTime", _int_or(data, "time")),
    )


def algo_order(raw: Any) -> AlgoOrder:
    """An algo order as POST/GET /fapi/v1/algoOrder and GET /fapi/v1/openAlgoOrders answer it."""
    data = _obj(raw, "algo order")
    type_key = "orderType" if data.get("orderType") is not None else "type"
    return AlgoOrder(
        symbol=_str(data, "symbol"),
        algo_id=_int(data, "algoId"),
        client_algo_id=_str(data, "clientAlgoId"),
        side=_side(data, "side"),
        type=_enum(OrderType, _get(data, type_key), type_key),
        status=_enum(AlgoStatus, _get(data, "algoStatus"), "algoStatus"),
        trigger_price=_dec(data, "triggerPrice"),
        quantity=_dec_or(data, "quantity"),
        close_position=_bool(data, "closePosition"),
        reduce_only=_bool(data, "reduceOnly"),
        working_type=_enum(WorkingType, data.get("workingType") or "CONTRACT_PRICE", "workingType"),
        actual_order_id=_opt_id(data, "actualOrderId"),
        create_time_ms=_int_or(data, "createTime"),
        update_time_ms=_int_or(data, "updateTime", _int_or(data, "createTime")),
    )


def trade(raw: Any) -> Trade:
    data = _obj(raw, "trade")
    return Trade(
        symbol=_str(data, "symbol"),
        trade_id=_int(data, "id"),
        order_id=_int(data, "orderId"),
        side=_side(data, "side"),
        price=_dec(data, "price"),
        qty=_dec(data, "qty"),
        quote_qty=_dec_or(data, "quoteQty"),
        realized_pnl=_dec_or(data, "realizedPnl"),
        commission=_dec_or(data, "commission"),
        commission_asset=_str_or(data, "commissionAsset"),
        time_ms=_int(data, "time"),
        maker=_bool(data, "maker"),
    )


def income(raw: Any) -> Income:
    data = _obj(raw, "income")
    trade_id = data.get("tradeId")
    return Income(
        symbol=_str_or(data, "symbol"),
        income_type=_str(data, "incomeType"),
        income=_dec(data, "income"),
        asset=_str_or(data, "asset"),
        time_ms=_int(data, "time"),
        tran_id=_int_or(data, "tranId"),
        trade_id="" if trade_id is None else str(trade_id),
    )


def kline_rows(raw: Any) -> list[list[Any]]:
    """Kline rows checked to have the 11 leading columns Bars.from_rows reads, each a number."""
    rows = _list(raw, "klines")
    for row in rows:
        cells = _list(row, "kline row")
        if len(cells) < 11:
            raise MalformedPayload("a kline row has fewer than 11 columns")
        for index in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10):
            to_decimal(cells[index], f"kline column {index}")
    return rows


# ---------------------------------------------------------------------------------------------- market events


def mark_price_update(data: Mapping[str, Any]) -> MarkPriceUpdate:
    return MarkPriceUpdate(
        symbol=_str(data, "s"),
        mark_price=_dec(data, "p"),
        index_price=_dec_or(data, "i"),
        funding_rate=_dec_or(data, "r"),
        next_funding_time_ms=_int_or(data, "T"),
        event_time_ms=_int(data, "E"),
    )


def kline_update(data: Mapping[str, Any]) -> KlineUpdate:
    k = _obj(_get(data, "k"), "kline")
    return KlineUpdate(
        symbol=_str(data, "s"),
        interval=_str(k, "i"),
        open_time_ms=_int(k, "t"),
        close_time_ms=_int(k, "T"),
        open=_dec(k, "o"),
        high=_dec(k, "h"),
        low=_dec(k, "l"),
        close=_dec(k, "c"),
        volume=_dec(k, "v"),
        quote_volume=_dec_or(k, "q"),
        trades=_int_or(k, "n"),
        taker_buy_volume=_dec_or(k, "V"),
        taker_buy_quote_volume=_dec_or(k, "Q"),
        closed=_bool(k, "x"),
        event_time_ms=_int(data, "E"),
    )


def book_ticker(data: Mapping[str, Any]) -> BookTicker:
    return BookTicker(
        symbol=_str(data, "s"),
        bid_price=_dec(data, "b"),
        bid_qty=_dec(data, "B"),
        ask_price=_dec(data, "a"),
        ask_qty=_dec(data, "A"),
        event_time_ms=_int_or(data, "E", _int_or(data, "T")),
    )


def agg_trade(data: Mapping[str, Any]) -> AggTrade:
    return AggTrade(
        symbol=_str(data, "s"),
        price=_dec(data, "p"),
        qty=_dec(data, "q"),
        buyer_is_maker=_bool(data, "m"),
        trade_time_ms=_int(data, "T"),
        event_time_ms=_int(data, "E"),
    )


def force_order(data: Mapping[str, Any]) -> ForceOrder:
    o = _obj(_get(data, "o"), "forceOrder.o")
    return ForceOrder(
        symbol=_str(o, "s"),
        side=_side(o, "S"),
        price=_dec(o, "ap") if o.get("ap") not in (None, "", "0") else _dec(o, "p"),
        qty=_dec_or(o, "z", _dec(o, "q")),
        trade_time_ms=_int(o, "T"),
        event_time_ms=_int(data, "E"),
    )


_MARKET_PARSERS: dict[str, Callable[[Mapping[str, Any]], MarketEvent]] = {
    "markPriceUpdate": mark_price_update,
    "kline": kline_update,
    "bookTicker": book_ticker,
    "aggTrade": agg_trade,
    "forceOrder": force_order,
}


def market_events(payload: Any) -> list[MarketEvent]:
    """The events in one market-stream payload (arrays such as !markPrice@arr give several).

    Unknown event types give no event; a known type with unreadable fields raises MalformedPayload.
    """
    items = payload if isinstance(payload, list) else [payload]
    events: list[MarketEvent] = []
    for item in items:
        data = _obj(item, "market event")
        parser = _MARKET_PARSERS.get(data.get("e", ""))
        if parser is not None:
            events.append(parser(data))
    return events


# ---------------------------------------------------------------------------------------------- user events


def order_update(data: Mapping[str, Any]) -> OrderUpdate:
    o = _obj(_get(data, "o"), "ORDER_TRADE_UPDATE.o")
    order_type = _enum(OrderType, _get(o, "o"), "o")
    return OrderUpdate(
        symbol=_str(o, "s"),
        client_order_id=_str(o, "c"),
        order_id=_int(o, "i"),
        side=_side(o, "S"),
        order_type=order_type,
        original_type=_enum(OrderType, o["ot"], "ot") if o.get("ot") else order_type,
        execution_type=_str(o, "x"),
        status=_enum(OrderStatus, _get(o, "X"), "X"),
        orig_qty=_dec(o, "q"),
        price=_dec_or(o, "p"),
        avg_price=_dec_or(o, "ap"),
        stop_price=_dec_or(o, "sp"),
        last_filled_qty=_dec_or(o, "l"),
        cum_filled_qty=_dec_or(o, "z"),
        last_filled_price=_dec_or(o, "L"),
        commission=_dec_or(o, "n"),
        commission_asset=_str_or(o, "N"),
        trade_id=_int_or(o, "t"),
        realized_pnl=_dec_or(o, "rp"),
        reduce_only=_bool(o, "R"),
        close_position=_bool(o, "cp"),
        is_maker=_bool(o, "m"),
        transaction_time_ms=_int_or(o, "T", _int_or(data, "T")),
        event_time_ms=_int(data, "E"),
    )


def algo_update(data: Mapping[str, Any]) -> AlgoUpdate:
    o = _obj(_get(data, "o"), "ALGO_UPDATE.o")
    return AlgoUpdate(
        symbol=_str(o, "s"),
        client_algo_id=_str(o, "caid"),
        algo_id=_int(o, "aid"),
        side=_side(o, "S"),
        order_type=_enum(OrderType, _get(o, "o"), "o"),
        status=_enum(AlgoStatus, _get(o, "X"), "X"),
        quantity=_dec_or(o, "q"),
        trigger_price=_dec_or(o, "tp"),
        actual_order_id=_opt_id(o, "ai"),
        close_position=_bool(o, "cp"),
        reduce_only=_bool(o, "R"),
        reject_reason=_str_or(o, "rm"),
        event_time_ms=_int(data, "E"),
        transaction_time_ms=_int_or(data, "T"),
    )


def account_update(data: Mapping[str, Any]) -> AccountUpdate:
    a = _obj(_get(data, "a"), "ACCOUNT_UPDATE.a")
    balances = [
        BalanceChange(
            asset=_str(b, "a"),
            wallet_balance=_dec(b, "wb"),
            cross_wallet_balance=_dec_or(b, "cw"),
            balance_change=_dec_or(b, "bc"),
        )
        for b in (_obj(item, "balance") for item in _list(a.get("B", []), "B"))
    ]
    positions = [
        PositionChange(
            symbol=_str(p, "s"),
            amount=_dec(p, "pa"),
            entry_price=_dec_or(p, "ep"),
            break_even_price=_dec_or(p, "bep"),
            accumulated_realized=_dec_or(p, "cr"),
            unrealized_pnl=_dec_or(p, "up"),
            margin_type=_str_or(p, "mt"),
            isolated_wallet=_dec_or(p, "iw"),
            position_side=_str_or(p, "ps", "BOTH"),
        )
        for p in (_obj(item, "position") for item in _list(a.get("P", []), "P"))
    ]
    return AccountUpdate(
        reason=_str_or(a, "m"),
        balances=balances,
        positions=positions,
        event_time_ms=_int(data, "E"),
        transaction_time_ms=_int_or(data, "T"),
    )


def listen_key_expired(data: Mapping[str, Any]) -> ListenKeyExpired:
    return ListenKeyExpired(event_time_ms=_int_or(data, "E"))


_USER_PARSERS: dict[str, Callable[[Mapping[str, Any]], UserEvent]] = {
    "ORDER_TRADE_UPDATE": order_update,
    "ALGO_UPDATE": algo_update,
    "ACCOUNT_UPDATE": account_update,
    "listenKeyExpired": listen_key_expired,
}


def user_event(payload: Any) -> UserEvent | None:
    """The event in one user-stream payload; None for event types this system does not use."""
    data = _obj(payload, "user event")
    parser = _USER_PARSERS.get(data.get("e", ""))
    return None if parser is None else parser(data)
