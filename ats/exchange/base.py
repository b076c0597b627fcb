"""The exchange contract: what flows and the monitor talk to, whatever the venue.

`BinanceFutures` (binance.py) implements `Exchange` over HTTP; pointed at the simulated exchange it is
paper trading, at testnet or mainnet it is live. All money values are Decimal; quantities are
unsigned except `PositionInfo.amount`, which is signed (positive long, negative short) as on Binance.
Stream events are parsed into the dataclasses below; parsers ignore unknown fields.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from ats.domain import Bars, Direction, Side, SymbolRules


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_MARKET = "STOP_MARKET"
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"
    STOP = "STOP"
    TAKE_PROFIT = "TAKE_PROFIT"
    TRAILING_STOP_MARKET = "TRAILING_STOP_MARKET"
    LIQUIDATION = "LIQUIDATION"


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"

    @property
    def is_final(self) -> bool:
        return self not in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class AlgoStatus(StrEnum):
    NEW = "NEW"
    CANCELED = "CANCELED"
    TRIGGERING = "TRIGGERING"
    TRIGGERED = "TRIGGERED"
    FINISHED = "FINISHED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_open(self) -> bool:
        return self is AlgoStatus.NEW


class WorkingType(StrEnum):
    MARK_PRICE = "MARK_PRICE"
    CONTRACT_PRICE = "CONTRACT_PRICE"


class MarginType(StrEnum):
    ISOLATED = "ISOLATED"
    CROSSED = "CROSSED"


# ---------------------------------------------------------------------------------------------- market data


@dataclass(frozen=True, slots=True)
class Ticker24h:
    symbol: str
    last_price: Decimal
    price_change_percent: Decimal  # percent, e.g. Decimal("2.5") for +2.5 %
    high: Decimal
    low: Decimal
    volume: Decimal  # base asset
    quote_volume: Decimal  # USDT
    trade_count: int | None  # None: unknown (a ticker rebuilt from history that holds only OHLCV)
    open_time_ms: int
    close_time_ms: int


@dataclass(frozen=True, slots=True)
class PremiumIndex:
    symbol: str
    mark_price: Decimal
    index_price: Decimal
    last_funding_rate: Decimal
    next_funding_time_ms: int
    time_ms: int


@dataclass(frozen=True, slots=True)
class OpenInterest:
    symbol: str
    open_interest: Decimal  # base asset
    time_ms: int


@dataclass(frozen=True, slots=True)
class OpenInterestPoint:
    symbol: str
    sum_open_interest: Decimal
    sum_open_interest_value: Decimal
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class FundingRate:
    """One funding settlement (GET /fapi/v1/fundingRate)."""

    symbol: str
    funding_time_ms: int
    funding_rate: Decimal
    mark_price: Decimal | None  # Binance leaves it empty for older settlements


@dataclass(frozen=True, slots=True)
class OrderBook:
    symbol: str
    bids: list[tuple[Decimal, Decimal]]  # (price, qty), best first
    asks: list[tuple[Decimal, Decimal]]
    last_update_id: int
    time_ms: int


# ---------------------------------------------------------------------------------------------- account


@dataclass(frozen=True, slots=True)
class AccountInfo:
    total_wallet_balance: Decimal
    total_unrealized_pnl: Decimal
    total_margin_balance: Decimal
    available_balance: Decimal
    max_withdraw_amount: Decimal


@dataclass(frozen=True, slots=True)
class PositionInfo:
    symbol: str
    amount: Decimal  # signed: > 0 long, < 0 short
    entry_price: Decimal
    break_even_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    liquidation_price: Decimal
    isolated_margin: Decimal
    notional: Decimal
    margin_type: MarginType
    update_time_ms: int
    position_side: str = "BOTH"

    @property
    def direction(self) -> Direction:
        """LONG for a positive amount, SHORT for a negative one (one-way mode)."""
        return Direction.LONG if self.amount > 0 else Direction.SHORT


@dataclass(frozen=True, slots=True)
class SymbolConfig:
    symbol: str
    margin_type: MarginType
    leverage: int


# ---------------------------------------------------------------------------------------------- orders


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A normal order (MARKET or LIMIT only since the Algo migration)."""

    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    client_order_id: str
    price: Decimal | None = None
    time_in_force: str | None = None  # never sent for MARKET
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class Order:
    symbol: str
    order_id: int
    client_order_id: str
    side: Side
    type: OrderType
    status: OrderStatus
    orig_qty: Decimal
    executed_qty: Decimal
    avg_price: Decimal
    price: Decimal
    cum_quote: Decimal
    reduce_only: bool
    close_position: bool
    update_time_ms: int


@dataclass(frozen=True, slots=True)
class AlgoOrderRequest:
    """A conditional order for the Algo service (POST /fapi/v1/algoOrder, algoType=CONDITIONAL)."""

    symbol: str
    side: Side
    type: OrderType  # STOP_MARKET or TAKE_PROFIT_MARKET
    trigger_price: Decimal
    client_algo_id: str
    quantity: Decimal | None = None  # None with close_position
    close_position: bool = False
    reduce_only: bool = False
    working_type: WorkingType = WorkingType.MARK_PRICE
    price_protect: bool = True


@dataclass(frozen=True, slots=True)
class AlgoOrder:
    symbol: str
    algo_id: int
    client_algo_id: str
    side: Side
    type: OrderType
    status: AlgoStatus
    trigger_price: Decimal
    quantity: Decimal
    close_position: bool
    reduce_only: bool
    working_type: WorkingType
    actual_order_id: int | None  # the normal order created when it triggered
    create_time_ms: int
    update_time_ms: int


@dataclass(frozen=True, slots=True)
class Trade:
    """One fill from GET /fapi/v1/userTrades."""

    symbol: str
    trade_id: int
    order_id: int
    side: Side
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    realized_pnl: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    maker: bool


@dataclass(frozen=True, slots=True)
class Income:
    symbol: str
    income_type: str  # REALIZED_PNL, FUNDING_FEE, COMMISSION, TRANSFER, ...
    income: Decimal
    asset: str
    time_ms: int
    tran_id: int
    trade_id: str


# ---------------------------------------------------------------------------------------------- stream events


@dataclass(frozen=True, slots=True)
class MarkPriceUpdate:
    symbol: str
    mark_price: Decimal
    index_price: Decimal
    funding_rate: Decimal
    next_funding_time_ms: int
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class KlineUpdate:
    symbol: str
    interval: str
    open_time_ms: int
    close_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int
    taker_buy_volume: Decimal
    taker_buy_quote_volume: Decimal
    closed: bool
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class BookTicker:
    symbol: str
    bid_price: Decimal
    bid_qty: Decimal
    ask_price: Decimal
    ask_qty: Decimal
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class AggTrade:
    symbol: str
    price: Decimal
    qty: Decimal
    buyer_is_maker: bool
    trade_time_ms: int
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class ForceOrder:
    """A liquidation on the market (forceOrder stream)."""

    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    trade_time_ms: int
    event_time_ms: int


# What a triggered algo order becomes on the order book.
CONDITIONAL_ORDER_TYPES = frozenset(
    {
        OrderType.STOP_MARKET,
        OrderType.TAKE_PROFIT_MARKET,
        OrderType.STOP,
        OrderType.TAKE_PROFIT,
        OrderType.TRAILING_STOP_MARKET,
    }
)


def is_liquidation_client_id(cid: str) -> bool:
    """Binance's own closing orders: liquidations (autoclose-...) and auto-deleveraging (adl_autoclose)."""
    return cid.startswith("autoclose-") or cid == "adl_autoclose"


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """ORDER_TRADE_UPDATE."""

    symbol: str
    client_order_id: str
    order_id: int
    side: Side
    order_type: OrderType
    original_type: OrderType
    execution_type: str  # NEW, CANCELED, CALCULATED, EXPIRED, TRADE, AMENDMENT
    status: OrderStatus
    orig_qty: Decimal
    price: Decimal
    avg_price: Decimal
    stop_price: Decimal
    last_filled_qty: Decimal
    cum_filled_qty: Decimal
    last_filled_price: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int
    realized_pnl: Decimal
    reduce_only: bool
    close_position: bool
    is_maker: bool
    transaction_time_ms: int
    event_time_ms: int

    @property
    def is_liquidation(self) -> bool:
        return is_liquidation_client_id(self.client_order_id)

    @property
    def is_triggered(self) -> bool:
        """The order a conditional (algo) order created when it triggered; its client id is the exchange's."""
        return self.original_type in CONDITIONAL_ORDER_TYPES


@dataclass(frozen=True, slots=True)
class AlgoUpdate:
    """ALGO_UPDATE."""

    symbol: str
    client_algo_id: str
    algo_id: int
    side: Side
    order_type: OrderType
    status: AlgoStatus
    quantity: Decimal
    trigger_price: Decimal
    actual_order_id: int | None
    close_position: bool
    reduce_only: bool
    reject_reason: str
    event_time_ms: int
    transaction_time_ms: int


@dataclass(frozen=True, slots=True)
class BalanceChange:
    asset: str
    wallet_balance: Decimal
    cross_wallet_balance: Decimal
    balance_change: Decimal


@dataclass(frozen=True, slots=True)
class PositionChange:
    symbol: str
    amount: Decimal  # signed
    entry_price: Decimal
    break_even_price: Decimal
    accumulated_realized: Decimal
    unrealized_pnl: Decimal
    margin_type: str
    isolated_wallet: Decimal
    position_side: str


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """ACCOUNT_UPDATE (only the changed balances and positions)."""

    reason: str  # ORDER, FUNDING_FEE, DEPOSIT, ...
    balances: list[BalanceChange] = field(default_factory=list)
    positions: list[PositionChange] = field(default_factory=list)
    event_time_ms: int = 0
    transaction_time_ms: int = 0


@dataclass(frozen=True, slots=True)
class ListenKeyExpired:
    event_time_ms: int


@dataclass(frozen=True, slots=True)
class StreamGap:
    """Emitted by a stream after it reconnected: events may have been missed, reconcile over REST."""

    stream: str  # "user" or "market"
    down_since_ms: int
    reconnected_at_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class StreamHealth:
    """What a stream reports about itself (the monitor exports it as metrics and watches its freshness)."""

    connected: bool
    last_message_ms: int | None
    reconnects: int
    connected_since_ms: int | None
    streams: int = 0
    dropped_events: int = 0


MarketEvent = MarkPriceUpdate | KlineUpdate | BookTicker | AggTrade | ForceOrder | StreamGap
UserEvent = OrderUpdate | AlgoUpdate | AccountUpdate | ListenKeyExpired | StreamGap


# ---------------------------------------------------------------------------------------------- protocols


class Exchange(Protocol):
    """REST operations of a USDⓈ-M futures account. Implementations are safe to share within one event loop."""

    async def server_time(self) -> int: ...

    async def exchange_info(self) -> dict[str, SymbolRules]: ...

    async def tickers_24h(self) -> list[Ticker24h]: ...

    async def klines(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> Bars:
        """Closed bars only, oldest first; pages through the exchange's 1500-row limit as needed."""
        ...

    async def premium_index(self, symbol: str | None = None) -> list[PremiumIndex]: ...

    async def open_interest(self, symbol: str) -> OpenInterest: ...

    async def open_interest_hist(self, symbol: str, period: str, limit: int = 30) -> list[OpenInterestPoint]: ...

    async def depth(self, symbol: str, limit: int = 20) -> OrderBook: ...

    async def account(self) -> AccountInfo: ...

    async def positions(self, symbol: str | None = None) -> list[PositionInfo]:
        """Open positions only (amount != 0)."""
        ...

    async def symbol_config(self, symbol: str) -> SymbolConfig: ...

    async def is_hedge_mode(self) -> bool: ...

    async def set_leverage(self, symbol: str, leverage: int) -> int: ...

    async def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        """Idempotent: 'no need to change' (-4046) is success."""
        ...

    async def new_order(self, request: OrderRequest) -> Order: ...

    async def get_order(
        self, symbol: str, *, client_order_id: str | None = None, order_id: int | None = None
    ) -> Order | None:
        """None when the exchange does not know the order (-2013)."""
        ...

    async def cancel_order(
        self, symbol: str, *, client_order_id: str | None = None, order_id: int | None = None
    ) -> Order | None:
        """None when the exchange does not know the order (-2011): already gone."""
        ...

    async def open_orders(self, symbol: str | None = None) -> list[Order]: ...

    async def new_algo_order(self, request: AlgoOrderRequest) -> AlgoOrder: ...

    async def get_algo_order(
        self, *, client_algo_id: str | None = None, algo_id: int | None = None
    ) -> AlgoOrder | None: ...

    async def cancel_algo_order(
        self, *, client_algo_id: str | None = None, algo_id: int | None = None
    ) -> AlgoOrder | None:
        """None when the algo order is unknown or no longer open."""
        ...

    async def open_algo_orders(self, symbol: str | None = None) -> list[AlgoOrder]: ...

    async def cancel_all_orders(self, symbol: str) -> None:
        """Cancel every normal and algo order of a symbol."""
        ...

    async def user_trades(
        self, symbol: str, *, start_ms: int | None = None, end_ms: int | None = None, limit: int = 500
    ) -> list[Trade]: ...

    async def income(
        self,
        *,
        symbol: str | None = None,
        income_type: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[Income]: ...

    async def create_listen_key(self) -> str: ...

    async def keepalive_listen_key(self) -> None: ...

    async def close_listen_key(self) -> None: ...

    async def aclose(self) -> None: ...


class MarketStream(Protocol):
    """A combined market-data subscription that survives disconnects (emitting StreamGap after each)."""

    async def subscribe(self, streams: list[str]) -> None: ...

    async def unsubscribe(self, streams: list[str]) -> None: ...

    def events(self) -> AsyncIterator[MarketEvent]: ...

    def health(self) -> StreamHealth: ...

    async def aclose(self) -> None: ...


class UserStream(Protocol):
    """The account's user-data stream: listenKey managed inside, reconnects forever, StreamGap after each."""

    def events(self) -> AsyncIterator[UserEvent]: ...

    async def wait_connected(self, timeout_s: float) -> bool:
        """True once connected (False after `timeout_s`)."""
        ...

    def reconnect(self, reason: str) -> None:
        """Replace the connection (it stopped delivering though it looks alive); a StreamGap follows."""
        ...

    def health(self) -> StreamHealth: ...

    async def aclose(self) -> None: ...
