"""The simulated exchange's matching engine and account: USDⓈ-M perpetuals, one-way mode, Decimal money.

Hedge mode is refused (POST /fapi/v1/positionSide/dual with true answers -1002 UNAUTHORIZED, "You are not
authorized to execute this request."), so a client learns at the switch, not at its first order. Binance documents
no code of its own for an account refused hedge mode; -1002 is its generic refusal (USDⓈ-M error-code page).

One `Engine` is one account. Its order operations take Binance's request parameters (a mapping of strings,
as they arrive over HTTP) and return Binance's response JSON, raising `SimError(code, msg)` with Binance's
error codes, so the same validation is unit tested here and served by the HTTP layer unchanged.

Filter arithmetic is written here from the exchange rules, deliberately not shared with
`ats.domain.SymbolRules`: the simulator exists to catch the client's mistakes, not to repeat them.

User-data events (ORDER_TRADE_UPDATE, TRADE_LITE, ALGO_UPDATE, ACCOUNT_UPDATE, MARGIN_CALL) are delivered
to subscribers synchronously and in order, in Binance's JSON shapes.
"""

from __future__ import annotations

import json
import random
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Any

from ats.clock import Clock
from ats.log import get_logger
from sim.market import BookLevel, Market, Quote, TickInfo
from sim.specs import Bracket, FilterSet, SymbolSpec, decimals_of, filters_for

log = get_logger(__name__)

ZERO = Decimal(0)
EIGHT = Decimal("0.00000001")
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
NORMAL_TYPES = ("LIMIT", "MARKET")
CONDITIONAL_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX", "GTD")
OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")
MAX_ALGO_ORDERS_PER_ACCOUNT = 200
MARGIN_CALL_RATIO = Decimal("0.8")


class SimError(Exception):
    """A request the exchange refuses: Binance's error code and message (and the HTTP status to use)."""

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"[{code}] {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


# ---------------------------------------------------------------------------------------------- params


def missing(name: str) -> SimError:
    return SimError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def param(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    return value if value not in (None, "") else None


def required(params: Mapping[str, str], name: str) -> str:
    value = param(params, name)
    if value is None:
        raise missing(name)
    return value


def decimal_param(params: Mapping[str, str], name: str) -> Decimal | None:
    value = param(params, name)
    if value is None:
        return None
    if not DECIMAL_RE.fullmatch(value):
        raise SimError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.",
        )
    return Decimal(value)


def int_param(params: Mapping[str, str], name: str) -> int | None:
    value = param(params, name)
    if value is None:
        return None
    if not re.fullmatch(r"-?[0-9]{1,20}", value):
        raise SimError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^(-)?[0-9]{{1,20}}$'.")
    return int(value)


def bool_param(params: Mapping[str, str], name: str) -> bool | None:
    value = param(params, name)
    if value is None:
        return None
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise SimError(-1130, f"Data sent for parameter '{name}' is not valid.")
    return lowered == "true"


def limit_param(params: Mapping[str, str], default: int, maximum: int) -> int:
    limit = int_param(params, "limit")
    if limit is None:
        return default
    if limit < 1 or limit > maximum:
        raise SimError(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit


# ---------------------------------------------------------------------------------------------- formatting


def fmt(value: Decimal, decimals: int) -> str:
    """Fixed-point text with exactly `decimals` places, as Binance prints amounts ("0.00000000", "90000.10")."""
    return format(value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP), "f")


def money(value: Decimal) -> str:
    return fmt(value, 8)


def plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros ("0.001", "90000")."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


# ---------------------------------------------------------------------------------------------- state


@dataclass
class SimOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    orig_type: str
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    stop_price: Decimal
    reduce_only: bool
    close_position: bool
    working_type: str
    price_protect: bool
    time_ms: int
    update_time_ms: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    good_till_date: int = 0
    realized_pnl: Decimal = ZERO

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass
class SimAlgoOrder:
    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    trigger_price: Decimal
    price: Decimal
    working_type: str
    close_position: bool
    reduce_only: bool
    price_protect: bool
    time_in_force: str
    create_time_ms: int
    update_time_ms: int
    status: str = "NEW"
    trigger_time_ms: int = 0
    actual_order_id: int | None = None
    activate_price: Decimal | None = None
    callback_rate: Decimal | None = None
    extreme: Decimal | None = None  # trailing stop: best price seen since activation
    reject_reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.status == "NEW"


@dataclass
class SimPosition:
    symbol: str
    amount: Decimal = ZERO  # signed
    entry_price: Decimal = ZERO
    isolated_wallet: Decimal = ZERO
    accumulated_realized: Decimal = ZERO
    open_fees: Decimal = ZERO  # commission paid on the open part (break-even price)
    update_time_ms: int = 0
    margin_called: bool = False


@dataclass
class SymbolSettings:
    leverage: int
    margin_type: str = "CROSSED"


@dataclass(frozen=True, slots=True)
class Fill:
    price: Decimal
    qty: Decimal
    maker: bool


# ---------------------------------------------------------------------------------------------- engine

EventCallback = Callable[[dict[str, Any]], None]


@dataclass
class EngineOptions:
    maker_fee: Decimal = Decimal("0.0002")
    taker_fee: Decimal = Decimal("0.0005")
    max_history: int = 10_000  # final orders, fills and income rows kept
    seed: int = 7
    # When a position goes flat (or flips), expire its reduce-only and closePosition orders at once (True), or
    # leave them open for the client to cancel (False, the default: Binance's behaviour here is unconfirmed, and
    # leaving them is the case a bot must handle). Left open, they never open a position: they expire when they
    # would execute with nothing to reduce.
    expire_stranded: bool = False


class Engine:
    """One futures account on the simulated exchange."""

    def __init__(
        self,
        market: Market,
        clock: Clock,
        *,
        balance: Decimal = Decimal(10_000),
        options: EngineOptions | None = None,
        account: str = "main",
    ) -> None:
        self.market = market
        self.clock = clock
        self.options = options or EngineOptions()
        self.account = account
        self.wallet = Decimal(balance)
        self.dual_side = False
        self.settings: dict[str, SymbolSettings] = {}
        self.positions: dict[str, SimPosition] = {}
        self.orders: dict[int, SimOrder] = {}
        self.open_orders: dict[int, SimOrder] = {}
        self.algo_orders: dict[int, SimAlgoOrder] = {}
        self.open_algos: dict[int, SimAlgoOrder] = {}
        self.trades: deque[dict[str, Any]] = deque(maxlen=self.options.max_history)
        self.margin_history: deque[dict[str, Any]] = deque(maxlen=self.options.max_history)
        self.countdowns: dict[str, int] = {}  # symbol -> when countdownCancelAll cancels its open orders (ms)
        self.income: deque[dict[str, Any]] = deque(maxlen=self.options.max_history)
        self._final_orders: deque[int] = deque()
        self._final_algos: deque[int] = deque()
        self._subscribers: list[EventCallback] = []
        self._algo_by_order: dict[int, int] = {}  # a triggered STOP/TAKE_PROFIT's resting limit order
        self._next_order_id = 700_000_000_000
        self._next_algo_id = 1_000_000_000_000_000
        self._next_trade_id = 500_000_000
        self._next_tran_id = 9_000_000_000
        self._liquidations = 0
        self._last_event_ms = 0
        self._random = random.Random(self.options.seed)
        self.filters: dict[str, FilterSet] = {spec.symbol: filters_for(spec) for spec in market.specs}
        self.specs: dict[str, SymbolSpec] = {spec.symbol: spec for spec in market.specs}

    # ------------------------------------------------------------------------------------- events

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Receive every user-data event of this account, in order. Returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _now(self) -> int:
        """Event time: the clock, but never earlier than an event already sent (events stay ordered)."""
        self._last_event_ms = max(self._last_event_ms, self.clock.now_ms())
        return self._last_event_ms

    def _emit(self, event: dict[str, Any]) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("user event subscriber failed", event_type=str(event.get("e")))

    # ------------------------------------------------------------------------------------- helpers

    def spec(self, symbol: str | None) -> SymbolSpec:
        if symbol is None:
            raise missing("symbol")
        spec = self.specs.get(symbol)
        if spec is None or not self.market.is_listed(symbol):
            raise SimError(-1121, "Invalid symbol.")
        return spec

    def setting(self, symbol: str) -> SymbolSettings:
        if symbol not in self.settings:
            self.settings[symbol] = SymbolSettings(leverage=self.specs[symbol].default_leverage)
        return self.settings[symbol]

    def position(self, symbol: str) -> SimPosition:
        if symbol not in self.positions:
            self.positions[symbol] = SimPosition(symbol)
        return self.positions[symbol]

    def quote(self, symbol: str) -> Quote:
        return self.market.quote(symbol)

    def _new_order_id(self) -> int:
        self._next_order_id += 1
        return self._next_order_id

    def _new_algo_id(self) -> int:
        self._next_algo_id += 1
        return self._next_algo_id

    def _new_client_id(self) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(self._random.choice(alphabet) for _ in range(22))

    def _tran_id(self) -> int:
        self._next_tran_id += 1
        return self._next_tran_id

    @staticmethod
    def _check_client_id(client_id: str | None) -> str | None:
        if client_id is None:
            return None
        if len(client_id) > 36:
            raise SimError(-4015, "Client order id length should be less than 36 chars")
        if not CLIENT_ID_RE.fullmatch(client_id):
            raise SimError(-4015, "Client order id is not valid.")
        return client_id

    def _check_position_side(self, params: Mapping[str, str]) -> None:
        position_side = param(params, "positionSide") or "BOTH"
        if position_side not in ("BOTH", "LONG", "SHORT"):
            raise SimError(-4006, "Invalid position side.")
        if self.dual_side or position_side != "BOTH":
            raise SimError(-4061, "Order's position side does not match user's setting.")

    @staticmethod
    def _side(params: Mapping[str, str]) -> str:
        side = required(params, "side")
        if side not in ("BUY", "SELL"):
            raise SimError(-1117, "Invalid side.")
        return side

    def _check_price(self, symbol: str, price: Decimal, name: str = "price") -> None:
        f = self.filters[symbol]
        if decimals_of(price) > f.price_precision:
            raise SimError(-1111, "Precision is over the maximum defined for this asset.")
        if price <= 0:
            raise SimError(-4001, "Price less than 0.")
        if price < f.min_price:
            raise SimError(-4013, "Price less than min price.")
        if price > f.max_price:
            raise SimError(-4002, "Price greater than max price.")
        if name == "price" and price % f.tick_size != 0:
            raise SimError(-4014, "Price not increased by tick size.")

    def _check_quantity(self, symbol: str, qty: Decimal, *, market: bool) -> None:
        f = self.filters[symbol]
        step = f.market_step_size if market else f.step_size
        if decimals_of(qty) > f.quantity_precision:
            raise SimError(-1111, "Precision is over the maximum defined for this asset.")
        if qty <= 0:
            raise SimError(-4003, "Quantity less than or equal to zero.")
        if qty % step != 0:
            raise SimError(-4023, "Quantity not increased by step size.")
        if qty < (f.market_min_qty if market else f.min_qty):
            raise SimError(-4004, "Quantity less than min quantity.")
        if qty > (f.market_max_qty if market else f.max_qty):
            raise SimError(-4005, "Quantity greater than max quantity.")

    def _check_notional(self, symbol: str, qty: Decimal, price: Decimal, reduce_only: bool) -> None:
        minimum = self.filters[symbol].min_notional
        if not reduce_only and qty * price < minimum:
            raise SimError(
                -4164, f"Order's notional must be no smaller than {plain(minimum)} (unless you choose reduce only)."
            )

    def bracket_for(self, symbol: str, notional: Decimal) -> Bracket:
        brackets = self.specs[symbol].brackets
        for bracket in brackets:
            if notional <= bracket.notional_cap:
                return bracket
        return brackets[-1]

    def max_notional(self, symbol: str, leverage: int) -> Decimal:
        allowed = [b.notional_cap for b in self.specs[symbol].brackets if b.initial_leverage >= leverage]
        return allowed[-1] if allowed else ZERO

    def maint_margin(self, symbol: str, notional: Decimal) -> Decimal:
        bracket = self.bracket_for(symbol, notional)
        return max(ZERO, notional * bracket.maint_margin_ratio - bracket.cum)

    # ------------------------------------------------------------------------------------- accounting

    def unrealized(self, symbol: str, mark: Decimal | None = None) -> Decimal:
        pos = self.positions.get(symbol)
        if pos is None or pos.amount == 0:
            return ZERO
        mark = self.quote(symbol).mark if mark is None else mark
        return pos.amount * (mark - pos.entry_price)

    def _isolated_total(self) -> Decimal:
        return sum((p.isolated_wallet for s, p in self.positions.items() if p.amount and self._isolated(s)), ZERO)

    def _isolated(self, symbol: str) -> bool:
        return self.setting(symbol).margin_type == "ISOLATED"

    @property
    def cross_wallet(self) -> Decimal:
        return self.wallet - self._isolated_total()

    def position_initial_margin(self, symbol: str, mark: Decimal | None = None) -> Decimal:
        pos = self.positions.get(symbol)
        if pos is None or pos.amount == 0:
            return ZERO
        mark = self.quote(symbol).mark if mark is None else mark
        return abs(pos.amount) * mark / self.setting(symbol).leverage

    def open_order_margin(self, symbol: str | None = None) -> Decimal:
        """Initial margin held by open orders that would open or increase a position."""
        total = ZERO
        by_symbol: dict[str, list[SimOrder]] = {}
        for order in self.open_orders.values():
            if not order.reduce_only and (symbol is None or order.symbol == symbol):
                by_symbol.setdefault(order.symbol, []).append(order)
        for sym, orders in by_symbol.items():
            amount = self.positions[sym].amount if sym in self.positions else ZERO
            leverage = self.setting(sym).leverage
            for order in orders:
                opposing = (order.side == "SELL" and amount > 0) or (order.side == "BUY" and amount < 0)
                opening = max(ZERO, order.remaining - abs(amount)) if opposing else order.remaining
                total += opening * order.price / leverage
        return total

    def cross_unrealized(self) -> Decimal:
        return sum((self.unrealized(s) for s, p in self.positions.items() if p.amount and not self._isolated(s)), ZERO)

    def available_balance(self) -> Decimal:
        cross_margin = sum(
            (self.position_initial_margin(s) for s, p in self.positions.items() if p.amount and not self._isolated(s)),
            ZERO,
        )
        return self.cross_wallet + self.cross_unrealized() - cross_margin - self.open_order_margin()

    def total_unrealized(self) -> Decimal:
        return sum((self.unrealized(s) for s, p in self.positions.items() if p.amount), ZERO)

    def liquidation_price(self, symbol: str) -> Decimal:
        pos = self.positions.get(symbol)
        if pos is None or pos.amount == 0:
            return ZERO
        mark = self.quote(symbol).mark
        bracket = self.bracket_for(symbol, abs(pos.amount) * mark)
        if self._isolated(symbol):
            wallet = pos.isolated_wallet
        else:
            others = sum(
                (
                    self.unrealized(s) - self.maint_margin(s, abs(p.amount) * self.quote(s).mark)
                    for s, p in self.positions.items()
                    if p.amount and s != symbol and not self._isolated(s)
                ),
                ZERO,
            )
            wallet = self.cross_wallet + others
        a = pos.amount
        denominator = a - abs(a) * bracket.maint_margin_ratio
        if denominator == 0:
            return ZERO
        price = (a * pos.entry_price - wallet - bracket.cum) / denominator
        return max(ZERO, price).quantize(EIGHT)

    def break_even_price(self, pos: SimPosition) -> Decimal:
        if pos.amount == 0:
            return ZERO
        per_unit = pos.open_fees / abs(pos.amount) + pos.entry_price * self.options.taker_fee
        sign = 1 if pos.amount > 0 else -1
        return (pos.entry_price + sign * per_unit).quantize(EIGHT)

    # ------------------------------------------------------------------------------------- settings

    def change_leverage(self, params: Mapping[str, str]) -> dict[str, Any]:
        symbol = self.spec(required(params, "symbol")).symbol
        leverage = int_param(params, "leverage")
        if leverage is None:
            raise missing("leverage")
        spec = self.specs[symbol]
        if leverage < 1 or leverage > spec.max_leverage:
            raise SimError(-4028, f"Leverage {leverage} is not valid")
        pos = self.position(symbol)
        max_notional = self.max_notional(symbol, leverage)
        if pos.amount and abs(pos.amount) * self.quote(symbol).mark > max_notional:
            raise SimError(-2027, "Exceeded the maximum allowable position at current leverage.")
        self.setting(symbol).leverage = leverage
        return {"leverage": leverage, "maxNotionalValue": plain(max_notional), "symbol": symbol}

    def change_margin_type(self, params: Mapping[str, str]) -> dict[str, Any]:
        symbol = self.spec(required(params, "symbol")).symbol
        margin_type = required(params, "marginType").upper()
        if margin_type == "CROSS":
            margin_type = "CROSSED"
        if margin_type not in ("ISOLATED", "CROSSED"):
            raise SimError(-1130, "Data sent for parameter 'marginType' is not valid.")
        setting = self.setting(symbol)
        if setting.margin_type == margin_type:
            raise SimError(-4046, "No need to change margin type.")
        if any(o.symbol == symbol for o in self.open_orders.values()) or any(
            a.symbol == symbol for a in self.open_algos.values()
        ):
            raise SimError(-4047, "Margin type cannot be changed if there exists open orders.")
        if self.position(symbol).amount:
            raise SimError(-4048, "Margin type cannot be changed if there exists position.")
        setting.margin_type = margin_type
        return {"code": 200, "msg": "success"}

    def change_position_mode(self, params: Mapping[str, str]) -> dict[str, Any]:
        dual = bool_param(params, "dualSidePosition")
        if dual is None:
            raise missing("dualSidePosition")
        if dual == self.dual_side:
            raise SimError(-4059, "No need to change position side.")
        if self.open_orders or self.open_algos:
            raise SimError(-4067, "Position side cannot be changed if there exists open orders.")
        if any(p.amount for p in self.positions.values()):
            raise SimError(-4068, "Position side cannot be changed if there exists position.")
        if dual:  # the sim keeps one position per symbol: refused as for an account not allowed hedge mode
            raise SimError(-1002, "You are not authorized to execute this request.", 401)
        self.dual_side = dual
        return {"code": 200, "msg": "success"}

    def set_balance(self, balance: Decimal) -> None:
        """Operator action (admin API): set the USDT wallet balance; pushed as a DEPOSIT/WITHDRAW."""
        change = balance - self.wallet
        self.wallet = balance
        now = self._now()
        self._record_income("", "TRANSFER", change, now, "")
        self._account_update("DEPOSIT" if change >= 0 else "WITHDRAW", [], now, balance_change=change)

    # ------------------------------------------------------------------------------------- new order

    def new_order(self, params: Mapping[str, str], *, test: bool = False) -> dict[str, Any]:
        """POST /fapi/v1/order: MARKET and LIMIT only (conditional types go to the Algo service).

        With `test` (POST /fapi/v1/order/test) every check runs and nothing is placed: the answer is the order
        as it would have been acknowledged, with orderId 0.
        """
        spec = self.spec(param(params, "symbol"))
        symbol = spec.symbol
        side = self._side(params)
        order_type = required(params, "type")
        if order_type in CONDITIONAL_TYPES:
            raise SimError(
                -4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."
            )
        if order_type not in NORMAL_TYPES:
            raise SimError(-1116, "Invalid orderType.")
        self._check_position_side(params)
        client_id = self._check_client_id(param(params, "newClientOrderId"))
        reduce_only = bool_param(params, "reduceOnly") or False
        if bool_param(params, "closePosition"):
            raise SimError(-4136, f"Target strategy invalid for orderType {order_type},closePosition true")
        resp_type = param(params, "newOrderRespType") or "ACK"
        if resp_type not in ("ACK", "RESULT"):
            raise SimError(-1130, "Data sent for parameter 'newOrderRespType' is not valid.")
        qty = decimal_param(params, "quantity")
        if qty is None:
            raise missing("quantity")
        quote = self.quote(symbol)
        f = self.filters[symbol]
        if order_type == "MARKET":
            for extra in ("price", "timeInForce"):
                if param(params, extra) is not None:
                    raise SimError(-1106, f"Parameter '{extra}' sent when not required.")
            self._check_quantity(symbol, qty, market=True)
            price = ZERO
            tif = "GTC"
            best = quote.ask if side == "BUY" else quote.bid
            if (side == "BUY" and best > quote.mark * f.multiplier_up) or (
                side == "SELL" and best < quote.mark * f.multiplier_down
            ):
                raise SimError(-4131, "The counterparty's best price does not meet the PERCENT_PRICE filter limit.")
            self._check_notional(symbol, qty, quote.mark, reduce_only)
        else:
            tif = required(params, "timeInForce")
            if tif not in TIME_IN_FORCE:
                raise SimError(-1115, "Invalid timeInForce.")
            limit_price = decimal_param(params, "price")
            if limit_price is None:
                raise missing("price")
            price = limit_price
            self._check_price(symbol, price)
            self._check_quantity(symbol, qty, market=False)
            cap = (quote.mark * f.multiplier_up).quantize(f.tick_size, ROUND_DOWN)
            floor = (quote.mark * f.multiplier_down).quantize(f.tick_size, ROUND_UP)
            if price > cap:
                raise SimError(-4016, f"Limit price can't be higher than {plain(cap)}.")
            if price < floor:
                raise SimError(-4024, f"Limit price can't be lower than {plain(floor)}.")
            self._check_notional(symbol, qty, price, reduce_only)
        good_till = 0
        if tif == "GTD":
            gtd = int_param(params, "goodTillDate")
            if gtd is None:
                raise missing("goodTillDate")
            if gtd < self.clock.now_ms() + 600_000:
                raise SimError(-4129, "The goodTillDate must be greater than current time plus 600 seconds.")
            good_till = gtd
        if client_id is not None and any(o.client_order_id == client_id for o in self.open_orders.values()):
            raise SimError(-4116, "ClientOrderId is duplicated.")
        if sum(1 for o in self.open_orders.values() if o.symbol == symbol) >= f.max_num_orders:
            raise SimError(-2025, "Reach max open order limit.")
        pos = self.position(symbol)
        if reduce_only and not self._reduces(pos.amount, side):
            raise SimError(-2022, "ReduceOnly Order is rejected.")
        reference = price if order_type == "LIMIT" else (quote.ask if side == "BUY" else quote.bid)
        if not reduce_only:
            self._check_margin(symbol, side, qty, reference)
        if order_type == "LIMIT":
            crosses = (side == "BUY" and price >= quote.ask) or (side == "SELL" and price <= quote.bid)
            if tif == "GTX" and crosses:
                raise SimError(
                    -5022,
                    "Due to the order could not be executed as maker, the Post Only order will be rejected. "
                    "The order will not be recorded in the order history",
                )
            if tif == "FOK" and self._fillable(symbol, side, price) < qty:
                raise SimError(
                    -5021,
                    "Due to the order could not be filled immediately, the FOK order has been rejected. "
                    "The order will not be recorded in the order history",
                )
        now = self.clock.now_ms() if test else self._now()
        order = SimOrder(
            order_id=0 if test else self._new_order_id(),
            client_order_id=client_id or self._new_client_id(),
            symbol=symbol,
            side=side,
            type=order_type,
            orig_type=order_type,
            time_in_force=tif,
            orig_qty=qty,
            price=price,
            stop_price=ZERO,
            reduce_only=reduce_only,
            close_position=False,
            working_type="CONTRACT_PRICE",
            price_protect=False,
            time_ms=now,
            update_time_ms=now,
            good_till_date=good_till,
        )
        if test:
            return self.order_json(order)
        self._register(order)
        ack = self.order_json(order)
        self._order_update(order, "NEW")
        self._execute(order, quote)
        return ack if resp_type == "ACK" else self.order_json(order)

    @staticmethod
    def _reduces(amount: Decimal, side: str) -> bool:
        return (amount > 0 and side == "SELL") or (amount < 0 and side == "BUY")

    def _check_margin(self, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        pos = self.position(symbol)
        opening = max(ZERO, qty - abs(pos.amount)) if self._reduces(pos.amount, side) else qty
        if opening == 0:
            return
        notional_after = (abs(pos.amount) + opening if not self._reduces(pos.amount, side) else opening) * price
        if notional_after > self.max_notional(symbol, self.setting(symbol).leverage):
            raise SimError(-2027, "Exceeded the maximum allowable position at current leverage.")
        required_margin = opening * price / self.setting(symbol).leverage + opening * price * self.options.taker_fee
        if required_margin > self.available_balance():
            raise SimError(-2019, "Margin is insufficient.")

    def _fillable(self, symbol: str, side: str, limit: Decimal) -> Decimal:
        bids, asks = self.market.book(symbol)
        levels = asks if side == "BUY" else bids
        return sum((lv.qty for lv in levels if (lv.price <= limit if side == "BUY" else lv.price >= limit)), ZERO)

    def _register(self, order: SimOrder) -> None:
        self.orders[order.order_id] = order
        if order.is_open:
            self.open_orders[order.order_id] = order

    def _finalise(self, order: SimOrder) -> None:
        self.open_orders.pop(order.order_id, None)
        algo_id = self._algo_by_order.pop(order.order_id, None)
        if algo_id is not None and algo_id in self.algo_orders:
            self._algo_final(self.algo_orders[algo_id], "FINISHED")
        self._final_orders.append(order.order_id)
        while len(self._final_orders) > self.options.max_history:
            self.orders.pop(self._final_orders.popleft(), None)

    # ------------------------------------------------------------------------------------- matching

    def _execute(self, order: SimOrder, quote: Quote) -> None:
        """Match an incoming order against the book: MARKET walks it, a crossing LIMIT takes up to its price."""
        if order.type == "MARKET":
            limit = None
        elif (order.side == "BUY" and order.price >= quote.ask) or (order.side == "SELL" and order.price <= quote.bid):
            limit = order.price
        else:
            if order.time_in_force == "IOC":
                self._expire(order)
            return
        qty = self._reducible(order)
        if qty <= 0:
            self._expire(order)
            return
        for fill in self._walk(order.symbol, order.side, qty, limit):
            self._fill(order, fill)
        if order.remaining > 0 and order.is_open and (order.type == "MARKET" or order.time_in_force == "IOC"):
            self._expire(order)

    def _reducible(self, order: SimOrder) -> Decimal:
        """How much of the order may execute: all of it, or for reduce-only orders up to the position."""
        if not (order.reduce_only or order.close_position):
            return order.remaining
        pos = self.position(order.symbol)
        if not self._reduces(pos.amount, order.side):
            return ZERO
        return min(order.remaining, abs(pos.amount))

    def _walk(self, symbol: str, side: str, qty: Decimal, limit: Decimal | None) -> list[Fill]:
        """Taker fills level by level (the slippage of size); past the shown depth, at the last level."""
        bids, asks = self.market.book(symbol)
        levels: list[BookLevel] = asks if side == "BUY" else bids
        fills: list[Fill] = []
        left = qty
        for level in levels:
            if limit is not None and (level.price > limit if side == "BUY" else level.price < limit):
                break
            take = min(left, level.qty)
            fills.append(Fill(level.price, take, maker=False))
            left -= take
            if left <= 0:
                break
        if left > 0 and limit is None and levels:
            fills.append(Fill(levels[-1].price, left, maker=False))
        return fills

    def _fill(self, order: SimOrder, fill: Fill, *, liquidation: bool = False) -> None:
        symbol = order.symbol
        pos = self.position(symbol)
        now = self._now()
        fee_rate = self.options.maker_fee if fill.maker else self.options.taker_fee
        notional = fill.price * fill.qty
        commission = ZERO if liquidation else (notional * fee_rate).quantize(EIGHT, ROUND_HALF_UP)
        realized = self._apply_to_position(pos, order.side, fill.qty, fill.price, commission, now)
        order.executed_qty += fill.qty
        order.cum_quote += notional
        order.realized_pnl += realized
        order.update_time_ms = now
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        self.wallet += realized - commission
        self._next_trade_id += 1
        trade_id = self._next_trade_id
        self.trades.append(
            {
                "buyer": order.side == "BUY",
                "commission": money(commission),
                "commissionAsset": "USDT",
                "id": trade_id,
                "maker": fill.maker,
                "orderId": order.order_id,
                "price": fmt(fill.price, self.filters[symbol].price_precision),
                "qty": fmt(fill.qty, self.filters[symbol].quantity_precision),
                "quoteQty": money(notional),
                "realizedPnl": money(realized),
                "side": order.side,
                "positionSide": "BOTH",
                "symbol": symbol,
                "time": now,
            }
        )
        if realized:
            self._record_income(symbol, "REALIZED_PNL", realized, now, str(trade_id))
        if commission:
            self._record_income(symbol, "COMMISSION", -commission, now, str(trade_id))
        if not liquidation:
            self._emit(
                {
                    "e": "TRADE_LITE",
                    "E": now,
                    "T": now,
                    "s": symbol,
                    "q": fmt(order.orig_qty, self.filters[symbol].quantity_precision),
                    "p": fmt(order.price, self.filters[symbol].price_precision),
                    "m": fill.maker,
                    "c": order.client_order_id,
                    "S": order.side,
                    "L": fmt(fill.price, self.filters[symbol].price_precision),
                    "l": fmt(fill.qty, self.filters[symbol].quantity_precision),
                    "t": trade_id,
                    "i": order.order_id,
                }
            )
        self._order_update(
            order,
            "CALCULATED" if liquidation else "TRADE",
            last_qty=fill.qty,
            last_price=fill.price,
            commission=commission,
            trade_id=trade_id,
            maker=fill.maker,
            realized=realized,
        )
        if not order.is_open:
            self._finalise(order)
        self._account_update("ORDER", [symbol], now)
        self._after_position_change(symbol)

    def _apply_to_position(
        self, pos: SimPosition, side: str, qty: Decimal, price: Decimal, commission: Decimal, now: int
    ) -> Decimal:
        """Update the position with one fill; returns the realised PnL (before commission)."""
        signed = qty if side == "BUY" else -qty
        leverage = self.setting(pos.symbol).leverage
        isolated = self._isolated(pos.symbol)
        realized = ZERO
        pos.update_time_ms = now
        if pos.amount == 0 or (pos.amount > 0) == (signed > 0):
            new_amount = pos.amount + signed
            pos.entry_price = ((abs(pos.amount) * pos.entry_price + qty * price) / abs(new_amount)).quantize(EIGHT)
            pos.amount = new_amount
            pos.open_fees += commission
            if isolated:
                pos.isolated_wallet += qty * price / leverage
            return realized
        closing = min(qty, abs(pos.amount))
        direction = 1 if pos.amount > 0 else -1
        realized = (closing * (price - pos.entry_price) * direction).quantize(EIGHT)
        fraction = closing / abs(pos.amount)
        released_fees = (pos.open_fees * fraction).quantize(EIGHT)
        pos.open_fees -= released_fees
        if isolated:
            released = (pos.isolated_wallet * fraction).quantize(EIGHT)
            pos.isolated_wallet -= released
        pos.accumulated_realized += realized
        pos.amount += signed if qty <= abs(pos.amount) else -pos.amount
        opening = qty - closing
        if pos.amount == 0:
            pos.entry_price = ZERO
            pos.isolated_wallet = ZERO
            pos.open_fees = ZERO
        if opening > 0:  # the fill flipped the position
            pos.amount = opening if signed > 0 else -opening
            pos.entry_price = price
            pos.open_fees = commission * opening / qty
            if isolated:
                pos.isolated_wallet = opening * price / leverage
        return realized

    def _after_position_change(self, symbol: str) -> None:
        """With `expire_stranded`, reduce-only and close-position orders left with nothing to reduce expire now."""
        if not self.options.expire_stranded:
            return
        amount = self.position(symbol).amount
        for order in [o for o in self.open_orders.values() if o.symbol == symbol and o.reduce_only]:
            if not self._reduces(amount, order.side):
                self._expire(order)
        for algo in [a for a in self.open_algos.values() if a.symbol == symbol]:
            if (algo.close_position or algo.reduce_only) and not self._reduces(amount, algo.side):
                self._algo_final(algo, "EXPIRED")

    def _expire(self, order: SimOrder) -> None:
        order.status = "EXPIRED"
        order.update_time_ms = self._now()
        self._order_update(order, "EXPIRED")
        self._finalise(order)

    def _record_income(self, symbol: str, kind: str, amount: Decimal, now: int, trade_id: str) -> None:
        self.income.append(
            {
                "symbol": symbol,
                "incomeType": kind,
                "income": money(amount),
                "asset": "USDT",
                "info": kind,
                "time": now,
                "tranId": self._tran_id(),
                "tradeId": trade_id,
            }
        )

    # ------------------------------------------------------------------------------------- queries

    def _find_order(self, params: Mapping[str, str], code: int, msg: str) -> SimOrder:
        symbol = self.spec(param(params, "symbol")).symbol
        order_id = int_param(params, "orderId")
        client_id = param(params, "origClientOrderId")
        if order_id is None and client_id is None:
            raise SimError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        found: SimOrder | None = None
        if order_id is not None:
            found = self.orders.get(order_id)
        else:
            matches = [o for o in self.orders.values() if o.client_order_id == client_id and o.symbol == symbol]
            open_matches = [o for o in matches if o.is_open]
            candidates = open_matches or matches
            found = candidates[-1] if candidates else None
        if found is None or found.symbol != symbol or (client_id is not None and found.client_order_id != client_id):
            raise SimError(code, msg)
        return found

    def query_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        return self.order_json(self._find_order(params, -2013, "Order does not exist."))

    def query_open_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        order = self._find_order(params, -2013, "Order does not exist.")
        if not order.is_open:
            raise SimError(-2013, "Order does not exist.")
        return self.order_json(order)

    def cancel_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        order = self._find_order(params, -2011, "Unknown order sent.")
        if not order.is_open:
            raise SimError(-2011, "Unknown order sent.")
        self._cancel(order)
        return self.order_json(order)

    def _cancel(self, order: SimOrder) -> None:
        order.status = "CANCELED"
        order.update_time_ms = self._now()
        self._order_update(order, "CANCELED")
        self._finalise(order)

    def cancel_all(self, params: Mapping[str, str]) -> dict[str, Any]:
        symbol = self.spec(required(params, "symbol")).symbol
        for order in [o for o in self.open_orders.values() if o.symbol == symbol]:
            self._cancel(order)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def open_orders_json(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        symbol = param(params, "symbol")
        if symbol is not None:
            self.spec(symbol)
        return [self.order_json(o) for o in self.open_orders.values() if symbol is None or o.symbol == symbol]

    def all_orders(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        symbol = self.spec(required(params, "symbol")).symbol
        order_id = int_param(params, "orderId")
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        limit = limit_param(params, 500, 1000)
        rows = [
            o
            for o in sorted(self.orders.values(), key=lambda o: o.order_id)
            if o.symbol == symbol
            and (order_id is None or o.order_id >= order_id)
            and (start is None or o.time_ms >= start)
            and (end is None or o.time_ms <= end)
        ]
        rows = rows[:limit] if order_id is not None or start is not None else rows[-limit:]
        return [self.order_json(o) for o in rows]

    def user_trades(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        symbol = self.spec(required(params, "symbol")).symbol
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        from_id = int_param(params, "fromId")
        order_id = int_param(params, "orderId")
        limit = limit_param(params, 500, 1000)
        if start is not None and end is not None and end - start > 7 * 86_400_000:
            raise SimError(-4166, "Search window is restricted to recent 7 days only.")
        rows = [
            t
            for t in self.trades
            if t["symbol"] == symbol
            and (start is None or t["time"] >= start)
            and (end is None or t["time"] <= end)
            and (from_id is None or t["id"] >= from_id)
            and (order_id is None or t["orderId"] == order_id)
        ]
        return rows[:limit] if (start is not None or from_id is not None) else rows[-limit:]

    def income_history(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        symbol = param(params, "symbol")
        kind = param(params, "incomeType")
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        limit = limit_param(params, 100, 1000)
        rows = [
            r
            for r in self.income
            if (symbol is None or r["symbol"] == symbol)
            and (kind is None or r["incomeType"] == kind)
            and (start is None or r["time"] >= start)
            and (end is None or r["time"] <= end)
        ]
        return rows[:limit] if start is not None else rows[-limit:]

    def order_json(self, order: SimOrder) -> dict[str, Any]:
        f = self.filters[order.symbol]
        return {
            "orderId": order.order_id,
            "symbol": order.symbol,
            "status": order.status,
            "clientOrderId": order.client_order_id,
            "price": fmt(order.price, f.price_precision) if order.price else "0",
            "avgPrice": fmt(order.avg_price, max(f.price_precision, 5)) if order.executed_qty else "0.00",
            "origQty": fmt(order.orig_qty, f.quantity_precision),
            "executedQty": fmt(order.executed_qty, f.quantity_precision),
            "cumQty": fmt(order.executed_qty, f.quantity_precision),
            "cumQuote": fmt(order.cum_quote, max(f.price_precision, 5)),
            "timeInForce": order.time_in_force,
            "type": order.type,
            "reduceOnly": order.reduce_only,
            "closePosition": order.close_position,
            "side": order.side,
            "positionSide": "BOTH",
            "stopPrice": fmt(order.stop_price, f.price_precision) if order.stop_price else "0",
            "workingType": order.working_type,
            "priceProtect": order.price_protect,
            "origType": order.orig_type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": order.good_till_date,
            "time": order.time_ms,
            "updateTime": order.update_time_ms,
        }

    def _order_update(
        self,
        order: SimOrder,
        execution: str,
        *,
        last_qty: Decimal = ZERO,
        last_price: Decimal = ZERO,
        commission: Decimal = ZERO,
        trade_id: int = 0,
        maker: bool = False,
        realized: Decimal = ZERO,
    ) -> None:
        f = self.filters[order.symbol]
        now = self._now()
        self._emit(
            {
                "e": "ORDER_TRADE_UPDATE",
                "E": now,
                "T": order.update_time_ms,
                "o": {
                    "s": order.symbol,
                    "c": order.client_order_id,
                    "S": order.side,
                    "o": order.type,
                    "f": order.time_in_force,
                    "q": fmt(order.orig_qty, f.quantity_precision),
                    "p": fmt(order.price, f.price_precision) if order.price else "0",
                    "ap": fmt(order.avg_price, max(f.price_precision, 5)) if order.executed_qty else "0",
                    "sp": fmt(order.stop_price, f.price_precision) if order.stop_price else "0",
                    "x": execution,
                    "X": order.status,
                    "i": order.order_id,
                    "l": fmt(last_qty, f.quantity_precision),
                    "z": fmt(order.executed_qty, f.quantity_precision),
                    "L": fmt(last_price, f.price_precision) if last_price else "0",
                    "N": "USDT",
                    "n": money(commission),
                    "T": order.update_time_ms,
                    "t": trade_id,
                    "b": "0",
                    "a": "0",
                    "m": maker,
                    "R": order.reduce_only,
                    "wt": order.working_type,
                    "ot": order.orig_type,
                    "ps": "BOTH",
                    "cp": order.close_position,
                    "rp": money(realized),
                    "pP": order.price_protect,
                    "si": 0,
                    "ss": 0,
                    "V": "EXPIRE_MAKER",
                    "pm": "NONE",
                    "gtd": order.good_till_date,
                },
            }
        )

    def _position_json(self, symbol: str, mark: Decimal | None = None) -> dict[str, Any]:
        pos = self.position(symbol)
        f = self.filters[symbol]
        return {
            "s": symbol,
            "pa": fmt(pos.amount, f.quantity_precision),
            "ep": plain(pos.entry_price),
            "bep": plain(self.break_even_price(pos)),
            "cr": money(pos.accumulated_realized),
            "up": money(self.unrealized(symbol, mark)),
            "mt": "isolated" if self._isolated(symbol) else "cross",
            "iw": money(pos.isolated_wallet),
            "ps": "BOTH",
            "ma": "USDT",
        }

    def _account_update(self, reason: str, symbols: Iterable[str], now: int, *, balance_change: Decimal = ZERO) -> None:
        self._emit(
            {
                "e": "ACCOUNT_UPDATE",
                "E": self._now(),
                "T": now,
                "a": {
                    "m": reason,
                    "B": [
                        {
                            "a": "USDT",
                            "wb": money(self.wallet),
                            "cw": money(self.cross_wallet),
                            "bc": money(balance_change),
                        }
                    ],
                    "P": [self._position_json(s) for s in symbols],
                },
            }
        )

    # ------------------------------------------------------------------------------------- algo orders

    def new_algo_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        """POST /fapi/v1/algoOrder (algoType=CONDITIONAL)."""
        algo_type = required(params, "algoType")
        if algo_type != "CONDITIONAL":
            raise SimError(-1130, "Data sent for parameter 'algoType' is not valid.")
        spec = self.spec(param(params, "symbol"))
        symbol = spec.symbol
        side = self._side(params)
        order_type = required(params, "type")
        if order_type not in CONDITIONAL_TYPES:
            raise SimError(-1116, "Invalid orderType.")
        self._check_position_side(params)
        client_id = self._check_client_id(param(params, "clientAlgoId"))
        close_position = bool_param(params, "closePosition") or False
        reduce_only = bool_param(params, "reduceOnly")
        working_type = param(params, "workingType") or "CONTRACT_PRICE"
        if working_type not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise SimError(-1130, "Data sent for parameter 'workingType' is not valid.")
        price_protect = bool_param(params, "priceProtect") or False
        qty = decimal_param(params, "quantity")
        f = self.filters[symbol]
        quote = self.quote(symbol)
        activate: Decimal | None = None
        callback: Decimal | None = None
        trigger: Decimal | None
        if order_type == "TRAILING_STOP_MARKET":
            callback = decimal_param(params, "callbackRate")
            if callback is None:
                raise missing("callbackRate")
            if not Decimal("0.1") <= callback <= Decimal(10):
                raise SimError(-2007, "Invalid callBack rate.")
            activate = decimal_param(params, "activatePrice")
            if activate is not None:
                self._check_price(symbol, activate, "activatePrice")
            trigger = activate or ZERO
        else:
            trigger = decimal_param(params, "triggerPrice")
            if trigger is None:
                raise missing("triggerPrice")
            self._check_price(symbol, trigger, "triggerPrice")
        limit_price = ZERO
        if order_type in ("STOP", "TAKE_PROFIT"):
            given = decimal_param(params, "price")
            if given is None:
                raise missing("price")
            self._check_price(symbol, given)
            limit_price = given
        if close_position:
            if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
                raise SimError(-4136, f"Target strategy invalid for orderType {order_type},closePosition true")
            if qty is not None:
                raise SimError(-4137, "quantity must be zero with closePosition equals true")
            if reduce_only:
                raise SimError(-1106, "Parameter 'reduceOnly' sent when not required.")
            qty = ZERO
        else:
            if qty is None:
                raise missing("quantity")
            self._check_quantity(symbol, qty, market=order_type.endswith("MARKET"))
            self._check_notional(symbol, qty, trigger or quote.mark, bool(reduce_only))
        reference = quote.mark if working_type == "MARK_PRICE" else quote.last
        if order_type != "TRAILING_STOP_MARKET" and self._triggered(order_type, side, trigger, reference):
            raise SimError(-2021, "Order would immediately trigger.")
        if activate is not None and (activate <= reference if side == "SELL" else activate >= reference):
            raise SimError(-2021, "Order would immediately trigger.")  # a SELL trail activates above the market
        if client_id is not None and any(a.client_algo_id == client_id for a in self.open_algos.values()):
            raise SimError(-4116, "ClientOrderId is duplicated.")
        if close_position and any(
            a.close_position and a.side == side and a.order_type == order_type and a.symbol == symbol
            for a in self.open_algos.values()
        ):
            raise SimError(
                -4130, "An open stop or take profit order with GTE and closePosition in the direction is existing."
            )
        if (
            len(self.open_algos) >= MAX_ALGO_ORDERS_PER_ACCOUNT
            or sum(1 for a in self.open_algos.values() if a.symbol == symbol) >= f.max_num_algo_orders
        ):
            raise SimError(-4045, "Reach max stop order limit.")
        now = self._now()
        tif = param(params, "timeInForce") or "GTC"
        algo = SimAlgoOrder(
            algo_id=self._new_algo_id(),
            client_algo_id=client_id or self._new_client_id(),
            symbol=symbol,
            side=side,
            order_type=order_type,
            quantity=qty,
            trigger_price=trigger,
            price=limit_price,
            working_type=working_type,
            close_position=close_position,
            reduce_only=bool(reduce_only) or close_position,
            price_protect=price_protect,
            time_in_force="GTE_GTC" if close_position else tif,
            create_time_ms=now,
            update_time_ms=now,
            activate_price=activate,
            callback_rate=callback,
        )
        self.algo_orders[algo.algo_id] = algo
        self.open_algos[algo.algo_id] = algo
        self._algo_update(algo)
        return self.algo_json(algo)

    @staticmethod
    def _triggered(order_type: str, side: str, trigger: Decimal, price: Decimal) -> bool:
        if order_type in ("STOP_MARKET", "STOP"):
            return price >= trigger if side == "BUY" else price <= trigger
        return price <= trigger if side == "BUY" else price >= trigger

    def _find_algo(self, params: Mapping[str, str], code: int, msg: str) -> SimAlgoOrder:
        algo_id = int_param(params, "algoId")
        client_id = param(params, "clientAlgoId")
        if algo_id is None and client_id is None:
            raise SimError(-1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!")
        found: SimAlgoOrder | None
        if algo_id is not None:
            found = self.algo_orders.get(algo_id)
        else:
            matches = [a for a in self.algo_orders.values() if a.client_algo_id == client_id]
            candidates = [a for a in matches if a.is_open] or matches
            found = candidates[-1] if candidates else None
        if found is None:
            raise SimError(code, msg)
        return found

    def query_algo(self, params: Mapping[str, str]) -> dict[str, Any]:
        return self.algo_json(self._find_algo(params, -2013, "Order does not exist."), detail=True)

    def cancel_algo(self, params: Mapping[str, str]) -> dict[str, Any]:
        algo = self._find_algo(params, -2011, "Unknown order sent.")
        if not algo.is_open:
            raise SimError(-2011, "Unknown order sent.")
        self._algo_final(algo, "CANCELED")
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200", "msg": "success"}

    def cancel_all_algos(self, params: Mapping[str, str]) -> dict[str, Any]:
        symbol = self.spec(required(params, "symbol")).symbol
        for algo in [a for a in self.open_algos.values() if a.symbol == symbol]:
            self._algo_final(algo, "CANCELED")
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def open_algos_json(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        symbol = param(params, "symbol")
        if symbol is not None:
            self.spec(symbol)
        return [self.algo_json(a) for a in self.open_algos.values() if symbol is None or a.symbol == symbol]

    def all_algos(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        symbol = self.spec(required(params, "symbol")).symbol
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        algo_id = int_param(params, "algoId")
        limit = limit_param(params, 500, 1000)
        rows = [
            a
            for a in sorted(self.algo_orders.values(), key=lambda a: a.algo_id)
            if a.symbol == symbol
            and (algo_id is None or a.algo_id >= algo_id)
            and (start is None or a.create_time_ms >= start)
            and (end is None or a.create_time_ms <= end)
        ]
        rows = rows[:limit] if algo_id is not None or start is not None else rows[-limit:]
        return [self.algo_json(a, detail=True) for a in rows]

    def _algo_final(self, algo: SimAlgoOrder, status: str, reason: str = "") -> None:
        algo.status = status
        algo.reject_reason = reason
        algo.update_time_ms = self._now()
        self.open_algos.pop(algo.algo_id, None)
        self._final_algos.append(algo.algo_id)
        while len(self._final_algos) > self.options.max_history:
            self.algo_orders.pop(self._final_algos.popleft(), None)
        self._algo_update(algo)

    def algo_json(self, algo: SimAlgoOrder, *, detail: bool = False) -> dict[str, Any]:
        f = self.filters[algo.symbol]
        out: dict[str, Any] = {
            "algoId": algo.algo_id,
            "clientAlgoId": algo.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": algo.order_type,
            "symbol": algo.symbol,
            "side": algo.side,
            "positionSide": "BOTH",
            "timeInForce": algo.time_in_force,
            "quantity": fmt(algo.quantity, f.quantity_precision) if algo.quantity else "0",
            "algoStatus": algo.status,
            "triggerPrice": plain(algo.trigger_price),
            "price": plain(algo.price) if algo.price else "0",
            "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": algo.working_type,
            "priceMatch": "NONE",
            "closePosition": algo.close_position,
            "priceProtect": algo.price_protect,
            "reduceOnly": algo.reduce_only,
            "activatePrice": plain(algo.activate_price) if algo.activate_price is not None else "",
            "callbackRate": plain(algo.callback_rate) if algo.callback_rate is not None else "",
            "createTime": algo.create_time_ms,
            "updateTime": algo.update_time_ms,
            "triggerTime": algo.trigger_time_ms,
            "goodTillDate": 0,
        }
        if detail:
            actual = self.orders.get(algo.actual_order_id) if algo.actual_order_id else None
            out["actualOrderId"] = str(algo.actual_order_id) if algo.actual_order_id else ""
            out["actualPrice"] = plain(actual.avg_price) if actual and actual.executed_qty else ""
            out["executedQty"] = fmt(actual.executed_qty, f.quantity_precision) if actual else "0"
        return out

    def _algo_update(self, algo: SimAlgoOrder) -> None:
        f = self.filters[algo.symbol]
        actual = self.orders.get(algo.actual_order_id) if algo.actual_order_id else None
        now = self._now()
        order: dict[str, Any] = {
            "caid": algo.client_algo_id,
            "aid": algo.algo_id,
            "at": "CONDITIONAL",
            "o": algo.order_type,
            "s": algo.symbol,
            "S": algo.side,
            "ps": "BOTH",
            "f": algo.time_in_force,
            "q": fmt(algo.quantity, f.quantity_precision) if algo.quantity else "0",
            "X": algo.status,
            "ai": str(algo.actual_order_id) if algo.actual_order_id else "",
            "tp": plain(algo.trigger_price),
            "p": plain(algo.price) if algo.price else "0",
            "V": "EXPIRE_MAKER",
            "wt": algo.working_type,
            "pm": "NONE",
            "cp": algo.close_position,
            "pP": algo.price_protect,
            "R": algo.reduce_only,
            "tt": algo.trigger_time_ms,
            "gtd": 0,
        }
        if actual is not None:
            order["ap"] = fmt(actual.avg_price, max(f.price_precision, 5))
            order["aq"] = fmt(actual.executed_qty, f.quantity_precision)
            order["act"] = actual.type
        if algo.reject_reason:
            order["rm"] = algo.reject_reason
        self._emit({"e": "ALGO_UPDATE", "T": algo.update_time_ms, "E": now, "o": order})

    # ------------------------------------------------------------------------------------- market ticks

    def interested_symbols(self) -> set[str]:
        """Symbols whose ticks matter to this account (orders, algo orders or a position)."""
        symbols = {o.symbol for o in self.open_orders.values()}
        symbols.update(a.symbol for a in self.open_algos.values())
        symbols.update(s for s, p in self.positions.items() if p.amount)
        return symbols

    def on_tick(self, info: TickInfo) -> None:
        """Run resting orders, triggers, funding and liquidation checks after the market moved."""
        if info.funding_time_ms is not None:
            self._settle_funding(info.funding_time_ms)
        if self.countdowns:
            self._run_countdowns()
        interested = self.interested_symbols()
        if info.symbols is not None:
            interested &= {self.market.symbols[i] for i in info.symbols}
        for symbol in sorted(interested):
            quote = self.quote(symbol)
            self._match_resting(symbol, quote)
            self._run_triggers(symbol, quote)
            self._expire_gtd(symbol)
        if interested:
            self._check_liquidations()

    def _match_resting(self, symbol: str, quote: Quote) -> None:
        for order in sorted(
            (o for o in self.open_orders.values() if o.symbol == symbol and o.type == "LIMIT"), key=lambda o: o.order_id
        ):
            if not order.is_open:
                continue
            if (order.side == "BUY" and quote.last <= order.price) or (
                order.side == "SELL" and quote.last >= order.price
            ):
                qty = self._reducible(order)
                if qty <= 0:
                    self._expire(order)
                    continue
                self._fill(order, Fill(order.price, qty, maker=True))
                if order.is_open and order.reduce_only:
                    self._expire(order)

    def _expire_gtd(self, symbol: str) -> None:
        now = self.clock.now_ms()
        for order in [o for o in self.open_orders.values() if o.symbol == symbol and o.good_till_date]:
            if now >= order.good_till_date:
                self._expire(order)

    def _run_triggers(self, symbol: str, quote: Quote) -> None:
        for algo in sorted((a for a in self.open_algos.values() if a.symbol == symbol), key=lambda a: a.algo_id):
            if not algo.is_open:
                continue
            price = quote.mark if algo.working_type == "MARK_PRICE" else quote.last
            if algo.order_type == "TRAILING_STOP_MARKET":
                if not self._trailing_fires(algo, price):
                    continue
            elif not self._triggered(algo.order_type, algo.side, algo.trigger_price, price):
                continue
            if algo.price_protect and quote.mark and abs(quote.last - quote.mark) / quote.mark > Decimal("0.05"):
                continue
            self._trigger(algo, quote)

    def _trailing_fires(self, algo: SimAlgoOrder, price: Decimal) -> bool:
        assert algo.callback_rate is not None
        if algo.extreme is None:
            activated = algo.activate_price is None or (
                price >= algo.activate_price if algo.side == "SELL" else price <= algo.activate_price
            )
            if not activated:
                return False
            algo.extreme = price
        if algo.side == "SELL":
            algo.extreme = max(algo.extreme, price)
            return price <= algo.extreme * (1 - algo.callback_rate / 100)
        algo.extreme = min(algo.extreme, price)
        return price >= algo.extreme * (1 + algo.callback_rate / 100)

    def _trigger(self, algo: SimAlgoOrder, quote: Quote) -> None:
        """The trigger condition held: hand a MARKET (or LIMIT) order to the matching engine."""
        pos = self.position(algo.symbol)
        now = self._now()
        algo.trigger_time_ms = now
        if (algo.close_position or algo.reduce_only) and not self._reduces(pos.amount, algo.side):
            self._algo_final(algo, "EXPIRED")
            return
        qty = abs(pos.amount) if algo.close_position else algo.quantity
        if not algo.reduce_only:
            try:
                self._check_margin(algo.symbol, algo.side, qty, quote.ask if algo.side == "BUY" else quote.bid)
            except SimError as exc:
                self._algo_final(algo, "REJECTED", exc.msg)
                return
        algo.status = "TRIGGERING"
        algo.update_time_ms = now
        self._algo_update(algo)
        is_limit = algo.order_type in ("STOP", "TAKE_PROFIT")
        order = SimOrder(
            order_id=self._new_order_id(),
            client_order_id=algo.client_algo_id,
            symbol=algo.symbol,
            side=algo.side,
            type="LIMIT" if is_limit else "MARKET",
            orig_type=algo.order_type,
            time_in_force="GTC",
            orig_qty=qty,
            price=algo.price if is_limit else ZERO,
            stop_price=algo.trigger_price,
            reduce_only=algo.reduce_only,
            close_position=algo.close_position,
            working_type=algo.working_type,
            price_protect=algo.price_protect,
            time_ms=now,
            update_time_ms=now,
        )
        algo.actual_order_id = order.order_id
        algo.status = "TRIGGERED"
        self.open_algos.pop(algo.algo_id, None)
        self._register(order)
        self._algo_update(algo)
        self._order_update(order, "NEW")
        self._execute(order, quote)
        if order.is_open:
            self._algo_by_order[order.order_id] = algo.algo_id
        else:
            self._algo_final(algo, "FINISHED")

    # ------------------------------------------------------------------------------------- funding

    def _settle_funding(self, funding_time_ms: int) -> None:
        """Positions held at the funding time pay (or receive) mark x size x rate; longs pay a positive rate."""
        now = self._now()
        for symbol, pos in list(self.positions.items()):
            if pos.amount == 0:
                continue
            settled = self.market.funding_history[self.market.index[symbol]]
            if not settled or settled[-1][0] != funding_time_ms:
                continue
            mark = self.quote(symbol).mark
            rate = Decimal(f"{settled[-1][1]:.8f}")
            payment = (-pos.amount * mark * rate).quantize(EIGHT, ROUND_HALF_UP)
            if payment == 0:
                continue
            self.wallet += payment
            isolated = self._isolated(symbol)
            if isolated:
                pos.isolated_wallet += payment
            self._record_income(symbol, "FUNDING_FEE", payment, now, "")
            self._account_update("FUNDING_FEE", [symbol] if isolated else [], now, balance_change=payment)

    # ------------------------------------------------------------------------------------- liquidation

    def _check_liquidations(self) -> None:
        open_positions = [(s, p) for s, p in self.positions.items() if p.amount]
        cross_symbols: list[str] = []
        for symbol, pos in open_positions:
            mark = self.quote(symbol).mark
            maint = self.maint_margin(symbol, abs(pos.amount) * mark)
            if self._isolated(symbol):
                equity = pos.isolated_wallet + self.unrealized(symbol, mark)
                if equity <= maint:
                    self._liquidate_isolated(symbol, pos)
                else:
                    self._margin_call_check([symbol], equity, maint)
            else:
                cross_symbols.append(symbol)
        if cross_symbols:
            maint = sum(
                (self.maint_margin(s, abs(self.positions[s].amount) * self.quote(s).mark) for s in cross_symbols), ZERO
            )
            equity = self.cross_wallet + self.cross_unrealized()
            if equity <= maint:
                self._liquidate_cross(cross_symbols)
            else:
                self._margin_call_check(cross_symbols, equity, maint)

    def _margin_call_check(self, symbols: list[str], equity: Decimal, maint: Decimal) -> None:
        """Push MARGIN_CALL once when the margin ratio reaches 80 %; re-arm when it falls below 70 %."""
        ratio = maint / equity if equity > 0 else Decimal(1)
        fresh: list[str] = []
        for s in symbols:
            pos = self.positions[s]
            if ratio >= MARGIN_CALL_RATIO:
                if not pos.margin_called:
                    fresh.append(s)
                pos.margin_called = True
            elif ratio < MARGIN_CALL_RATIO - Decimal("0.1"):
                pos.margin_called = False
        if not fresh:
            return
        entries = []
        for s in fresh:
            pos = self.positions[s]
            mark = self.quote(s).mark
            entries.append(
                {
                    "s": s,
                    "ps": "BOTH",
                    "pa": fmt(pos.amount, self.filters[s].quantity_precision),
                    "mt": "ISOLATED" if self._isolated(s) else "CROSSED",
                    "iw": money(pos.isolated_wallet),
                    "mp": plain(mark),
                    "up": money(self.unrealized(s, mark)),
                    "mm": money(self.maint_margin(s, abs(pos.amount) * mark)),
                }
            )
        self._emit({"e": "MARGIN_CALL", "E": self._now(), "cw": money(self.cross_wallet), "p": entries})

    def _liquidation_order(self, symbol: str, pos: SimPosition) -> SimOrder:
        self._liquidations += 1
        now = self._now()
        for order in [o for o in self.open_orders.values() if o.symbol == symbol]:
            self._cancel(order)
        order = SimOrder(
            order_id=self._new_order_id(),
            client_order_id=f"autoclose-{now}{self._liquidations:03d}",
            symbol=symbol,
            side="SELL" if pos.amount > 0 else "BUY",
            type="LIQUIDATION",
            orig_type="LIQUIDATION",
            time_in_force="IOC",
            orig_qty=abs(pos.amount),
            price=ZERO,
            stop_price=ZERO,
            reduce_only=True,
            close_position=False,
            working_type="CONTRACT_PRICE",
            price_protect=False,
            time_ms=now,
            update_time_ms=now,
        )
        self._register(order)
        return order

    def _liquidate_isolated(self, symbol: str, pos: SimPosition) -> None:
        """Close at the bankruptcy price: the whole isolated margin is lost (the rest to the insurance fund)."""
        tick = self.filters[symbol].tick_size
        lost = pos.isolated_wallet
        bankruptcy = pos.entry_price - pos.isolated_wallet / pos.amount
        price = max(tick, (bankruptcy / tick).to_integral_value() * tick)
        order = self._liquidation_order(symbol, pos)
        order.price = price
        wallet_before = self.wallet
        self._fill(order, Fill(price, abs(pos.amount), maker=False), liquidation=True)
        clearance = (wallet_before - lost) - self.wallet
        if clearance:
            self.wallet += clearance
            now = self._now()
            self._record_income(symbol, "INSURANCE_CLEAR", clearance, now, "")
            self._account_update("ORDER", [symbol], now)
        self._force_order_event(order)
        log.info("sim liquidation", account=self.account, symbol=symbol, price=str(price))

    def _liquidate_cross(self, symbols: list[str]) -> None:
        for symbol in symbols:
            pos = self.positions[symbol]
            if pos.amount == 0:
                continue
            quote = self.quote(symbol)
            tick = self.filters[symbol].tick_size
            price = (quote.mark / tick).to_integral_value() * tick
            order = self._liquidation_order(symbol, pos)
            order.price = price
            self._fill(order, Fill(price, abs(pos.amount), maker=False), liquidation=True)
            self._force_order_event(order)
        if self.wallet < 0:
            now = self._now()
            self._record_income("", "INSURANCE_CLEAR", -self.wallet, now, "")
            self.wallet = ZERO
            self._account_update("ORDER", [], now)

    def _force_order_event(self, order: SimOrder) -> None:
        f = self.filters[order.symbol]
        self.market.add_force_order(
            {
                "e": "forceOrder",
                "E": order.update_time_ms,
                "o": {
                    "s": order.symbol,
                    "S": order.side,
                    "o": "LIMIT",
                    "f": "IOC",
                    "q": fmt(order.orig_qty, f.quantity_precision),
                    "p": fmt(order.price, f.price_precision),
                    "ap": fmt(order.avg_price, f.price_precision),
                    "X": "FILLED",
                    "l": fmt(order.executed_qty, f.quantity_precision),
                    "z": fmt(order.executed_qty, f.quantity_precision),
                    "T": order.update_time_ms,
                },
            }
        )

    # ------------------------------------------------------------------------------------- batches, modify, margin

    def batch_orders(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """POST /fapi/v1/batchOrders: up to 5 orders, each answered by its order or its own error."""
        orders = _json_list(params, "batchOrders", 5)
        out: list[dict[str, Any]] = []
        for raw in orders:
            if not isinstance(raw, dict):
                raise SimError(-1130, "Data sent for parameter 'batchOrders' is not valid.")
            try:
                out.append(self.new_order(as_params(**raw)))
            except SimError as exc:
                out.append({"code": exc.code, "msg": exc.msg})
        return out

    def cancel_batch(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """DELETE /fapi/v1/batchOrders: up to 10 orders by orderIdList or origClientOrderIdList."""
        symbol = self.spec(required(params, "symbol")).symbol
        if param(params, "orderIdList") is not None:
            keys = [{"orderId": str(i)} for i in _json_list(params, "orderIdList", 10)]
        elif param(params, "origClientOrderIdList") is not None:
            keys = [{"origClientOrderId": str(c)} for c in _json_list(params, "origClientOrderIdList", 10)]
        else:
            raise SimError(
                -1102, "Param 'origClientOrderIdList' or 'orderIdList' must be sent, but both were empty/null!"
            )
        out: list[dict[str, Any]] = []
        for key in keys:
            try:
                out.append(self.cancel_order({"symbol": symbol, **key}))
            except SimError as exc:
                out.append({"code": exc.code, "msg": exc.msg})
        return out

    def modify_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        """PUT /fapi/v1/order: a resting LIMIT order's price and quantity (it keeps its id; x = AMENDMENT)."""
        order = self._find_order(params, -2013, "Order does not exist.")
        if not order.is_open:
            raise SimError(-2013, "Order does not exist.")
        if self._side(params) != order.side:
            raise SimError(-1130, "Data sent for parameter 'side' is not valid.")
        qty = decimal_param(params, "quantity")
        price = decimal_param(params, "price")
        if qty is None:
            raise missing("quantity")
        if price is None:
            raise missing("price")
        symbol = order.symbol
        self._check_price(symbol, price)
        self._check_quantity(symbol, qty, market=False)
        if qty <= order.executed_qty:
            raise SimError(-1130, "Data sent for parameter 'quantity' is not valid.")
        if qty == order.orig_qty and price == order.price:
            raise SimError(-5027, "No need to modify the order.")
        quote = self.quote(symbol)
        f = self.filters[symbol]
        if price > (quote.mark * f.multiplier_up).quantize(f.tick_size, ROUND_DOWN):
            raise SimError(-4016, "Limit price can't be higher than the PERCENT_PRICE cap.")
        if price < (quote.mark * f.multiplier_down).quantize(f.tick_size, ROUND_UP):
            raise SimError(-4024, "Limit price can't be lower than the PERCENT_PRICE floor.")
        crosses = (order.side == "BUY" and price >= quote.ask) or (order.side == "SELL" and price <= quote.bid)
        if order.time_in_force == "GTX" and crosses:
            raise SimError(
                -5022, "Due to the order could not be executed as maker, the Post Only order will be rejected."
            )
        order.price, order.orig_qty = price, qty
        order.update_time_ms = self._now()
        self._order_update(order, "AMENDMENT")
        if crosses:
            self._execute(order, quote)
        return self.order_json(order)

    def position_margin(self, params: Mapping[str, str]) -> dict[str, Any]:
        """POST /fapi/v1/positionMargin: add (type 1) or remove (type 2) an isolated position's margin."""
        symbol = self.spec(required(params, "symbol")).symbol
        amount = decimal_param(params, "amount")
        if amount is None:
            raise missing("amount")
        kind = int_param(params, "type")
        if kind not in (1, 2):
            raise SimError(-1130, "Data sent for parameter 'type' is not valid.")
        if amount <= 0:
            raise SimError(-4055, "Amount must be positive.")
        pos = self.position(symbol)
        if not self._isolated(symbol):
            raise SimError(-4049, "Add margin only support for isolated position.")
        if pos.amount == 0:
            raise SimError(-4054, "Cannot add position margin: position is 0.")
        if kind == 1 and amount > self.available_balance():
            raise SimError(-4050, "Cross balance insufficient.")
        if kind == 2:
            mark = self.quote(symbol).mark
            keep = self.position_initial_margin(symbol, mark) - min(ZERO, self.unrealized(symbol, mark))
            if pos.isolated_wallet - amount < keep:
                raise SimError(-4051, "Isolated balance insufficient.")
        pos.isolated_wallet += amount if kind == 1 else -amount
        now = self._now()
        self.margin_history.append(
            {
                "symbol": symbol,
                "type": kind,
                "deltaType": "USER_ADJUST",
                "amount": money(amount),
                "asset": "USDT",
                "time": now,
                "positionSide": "BOTH",
            }
        )
        self._account_update("MARGIN_TRANSFER", [symbol], now)
        return {"amount": float(amount), "code": 200, "msg": "Successfully modify position margin.", "type": kind}

    def position_margin_history(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        symbol = self.spec(required(params, "symbol")).symbol
        kind = int_param(params, "type")
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        limit = limit_param(params, 500, 500)
        rows = [
            r
            for r in self.margin_history
            if r["symbol"] == symbol
            and (kind is None or r["type"] == kind)
            and (start is None or r["time"] >= start)
            and (end is None or r["time"] <= end)
        ]
        return rows[:limit] if start is not None else rows[-limit:]

    def countdown_cancel_all(self, params: Mapping[str, str]) -> dict[str, Any]:
        """POST /fapi/v1/countdownCancelAll: cancel the symbol's open orders unless called again in time (0 stops)."""
        symbol = self.spec(required(params, "symbol")).symbol
        countdown = int_param(params, "countdownTime")
        if countdown is None:
            raise missing("countdownTime")
        if countdown < 0:
            raise SimError(-1130, "Data sent for parameter 'countdownTime' is not valid.")
        if countdown == 0:
            self.countdowns.pop(symbol, None)
        else:
            self.countdowns[symbol] = self.clock.now_ms() + countdown
        return {"symbol": symbol, "countdownTime": str(countdown)}

    def _run_countdowns(self) -> None:
        now = self.clock.now_ms()
        for symbol, deadline in list(self.countdowns.items()):
            if now >= deadline:
                del self.countdowns[symbol]
                log.info("sim countdown cancel-all fired", account=self.account, symbol=symbol)
                for order in [o for o in self.open_orders.values() if o.symbol == symbol]:
                    self._cancel(order)

    def force_orders(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """GET /fapi/v1/forceOrders: this account's liquidation orders (the sim never auto-deleverages)."""
        symbol = param(params, "symbol")
        if symbol is not None:
            self.spec(symbol)
        close_type = param(params, "autoCloseType")
        if close_type not in (None, "LIQUIDATION", "ADL"):
            raise SimError(-1130, "Data sent for parameter 'autoCloseType' is not valid.")
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        limit = limit_param(params, 50, 100)
        rows = [
            o
            for o in sorted(self.orders.values(), key=lambda o: o.order_id)
            if o.orig_type == "LIQUIDATION"
            and close_type != "ADL"
            and (symbol is None or o.symbol == symbol)
            and (start is None or o.time_ms >= start)
            and (end is None or o.time_ms <= end)
        ]
        return [self.order_json(o) for o in rows[-limit:]]

    def adl_quantile(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """GET /fapi/v1/adlQuantile: 1..4 by the position's profit x leverage (0 without a position)."""
        symbol = param(params, "symbol")
        if symbol is not None:
            self.spec(symbol)
        out = []
        for s, pos in self.positions.items():
            if not pos.amount or (symbol is not None and s != symbol):
                continue
            margin = self.position_initial_margin(s)
            score = self.unrealized(s) / margin * self.setting(s).leverage if margin else ZERO
            quantile = 1 if score <= 0 else 2 if score < 5 else 3 if score < 20 else 4
            long_q, short_q = (quantile, 0) if pos.amount > 0 else (0, quantile)
            out.append({"symbol": s, "adlQuantile": {"LONG": long_q, "SHORT": short_q, "BOTH": quantile}})
        return out

    # ------------------------------------------------------------------------------------- snapshots

    def snapshot(self) -> dict[str, Any]:
        """The account as plain JSON-able data (for --state persistence)."""

        def encode(obj: Any) -> Any:
            data = asdict(obj)
            return {k: str(v) if isinstance(v, Decimal) else v for k, v in data.items()}

        return {
            "wallet": str(self.wallet),
            "dual_side": self.dual_side,
            "settings": {s: asdict(v) for s, v in self.settings.items()},
            "positions": [encode(p) for p in self.positions.values() if p.amount],
            "open_orders": [encode(o) for o in self.open_orders.values()],
            "open_algos": [encode(a) for a in self.open_algos.values()],
            "trades": list(self.trades),
            "income": list(self.income),
            "ids": [self._next_order_id, self._next_algo_id, self._next_trade_id, self._next_tran_id],
            "countdowns": dict(self.countdowns),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load a snapshot taken by `snapshot` (symbols no longer listed are dropped with a warning)."""

        def decode(cls: type[Any], raw: Mapping[str, Any]) -> Any:
            kwargs = {}
            for name, f in cls.__dataclass_fields__.items():
                if name not in raw:
                    continue
                value = raw[name]
                kind = str(f.type)
                if "Decimal" in kind and value is not None:
                    value = Decimal(value)
                kwargs[name] = value
            return cls(**kwargs)

        self.wallet = Decimal(data["wallet"])
        self.dual_side = bool(data.get("dual_side", False))
        known = set(self.specs)
        for symbol, raw in data.get("settings", {}).items():
            if symbol in known:
                self.settings[symbol] = SymbolSettings(**raw)
        for raw in data.get("positions", []):
            if raw["symbol"] in known:
                self.positions[raw["symbol"]] = decode(SimPosition, raw)
            else:
                log.warning("snapshot position dropped: symbol unknown", symbol=raw["symbol"])
        for raw in data.get("open_orders", []):
            if raw["symbol"] in known:
                order = decode(SimOrder, raw)
                self.orders[order.order_id] = order
                self.open_orders[order.order_id] = order
        for raw in data.get("open_algos", []):
            if raw["symbol"] in known:
                algo = decode(SimAlgoOrder, raw)
                self.algo_orders[algo.algo_id] = algo
                self.open_algos[algo.algo_id] = algo
        # A countdown keeps its deadline: one that passed while the sim was down fires on the first tick, as Binance's
        # would have fired meanwhile.
        self.countdowns.update({s: int(t) for s, t in data.get("countdowns", {}).items() if s in known})
        self.trades.extend(data.get("trades", []))
        self.income.extend(data.get("income", []))
        ids = data.get("ids")
        if ids:
            self._next_order_id, self._next_algo_id, self._next_trade_id, self._next_tran_id = (int(i) for i in ids)

    # ------------------------------------------------------------------------------------- account views

    def account_json(self, version: int) -> dict[str, Any]:
        unrealized = self.total_unrealized()
        position_margin = sum((self.position_initial_margin(s) for s, p in self.positions.items() if p.amount), ZERO)
        order_margin = self.open_order_margin()
        maint = sum(
            (self.maint_margin(s, abs(p.amount) * self.quote(s).mark) for s, p in self.positions.items() if p.amount),
            ZERO,
        )
        available = self.available_balance()
        max_withdraw = max(ZERO, min(available, available - max(ZERO, self.cross_unrealized())))
        now = self.clock.now_ms()
        totals = {
            "totalInitialMargin": money(position_margin + order_margin),
            "totalMaintMargin": money(maint),
            "totalWalletBalance": money(self.wallet),
            "totalUnrealizedProfit": money(unrealized),
            "totalMarginBalance": money(self.wallet + unrealized),
            "totalPositionInitialMargin": money(position_margin),
            "totalOpenOrderInitialMargin": money(order_margin),
            "totalCrossWalletBalance": money(self.cross_wallet),
            "totalCrossUnPnl": money(self.cross_unrealized()),
            "availableBalance": money(available),
            "maxWithdrawAmount": money(max_withdraw),
        }
        asset = {
            "asset": "USDT",
            "walletBalance": money(self.wallet),
            "unrealizedProfit": money(unrealized),
            "marginBalance": money(self.wallet + unrealized),
            "maintMargin": money(maint),
            "initialMargin": money(position_margin + order_margin),
            "positionInitialMargin": money(position_margin),
            "openOrderInitialMargin": money(order_margin),
            "crossWalletBalance": money(self.cross_wallet),
            "crossUnPnl": money(self.cross_unrealized()),
            "availableBalance": money(available),
            "maxWithdrawAmount": money(max_withdraw),
            "updateTime": now,
        }
        if version == 2:
            asset["marginAvailable"] = True
            out: dict[str, Any] = {
                "feeTier": 0,
                "feeBurn": False,
                "canTrade": True,
                "canDeposit": True,
                "canWithdraw": True,
                "updateTime": 0,
                "multiAssetsMargin": False,
                "tradeGroupId": -1,
                **totals,
                "assets": [asset],
                "positions": [self._account_position(s, version) for s in self.specs],
            }
            return out
        return {
            **totals,
            "assets": [asset],
            "positions": [self._account_position(s, version) for s, p in self.positions.items() if p.amount],
        }

    def _account_position(self, symbol: str, version: int) -> dict[str, Any]:
        pos = self.position(symbol)
        f = self.filters[symbol]
        mark = self.quote(symbol).mark if pos.amount else ZERO
        notional = pos.amount * mark
        out: dict[str, Any] = {
            "symbol": symbol,
            "positionSide": "BOTH",
            "positionAmt": fmt(pos.amount, f.quantity_precision),
            "unrealizedProfit": money(self.unrealized(symbol, mark) if pos.amount else ZERO),
            "isolatedMargin": money(pos.isolated_wallet + (self.unrealized(symbol, mark) if pos.amount else ZERO))
            if self._isolated(symbol)
            else "0",
            "notional": money(notional),
            "isolatedWallet": money(pos.isolated_wallet),
            "initialMargin": money(self.position_initial_margin(symbol, mark) if pos.amount else ZERO),
            "maintMargin": money(self.maint_margin(symbol, abs(notional)) if pos.amount else ZERO),
            "updateTime": pos.update_time_ms,
        }
        if version == 2:
            setting = self.setting(symbol)
            out.update(
                {
                    "positionInitialMargin": out["initialMargin"],
                    "openOrderInitialMargin": money(self.open_order_margin(symbol)),
                    "leverage": str(setting.leverage),
                    "isolated": setting.margin_type == "ISOLATED",
                    "entryPrice": plain(pos.entry_price),
                    "breakEvenPrice": plain(self.break_even_price(pos)),
                    "maxNotional": plain(self.max_notional(symbol, setting.leverage)),
                    "bidNotional": "0",
                    "askNotional": "0",
                }
            )
        return out

    def position_risk(self, params: Mapping[str, str], version: int) -> list[dict[str, Any]]:
        symbol = param(params, "symbol")
        if symbol is not None:
            self.spec(symbol)
        if version == 2:
            symbols = [symbol] if symbol else list(self.specs)
        else:
            with_orders = {o.symbol for o in self.open_orders.values()}
            symbols = [s for s, p in self.positions.items() if (p.amount or s in with_orders) and (symbol in (None, s))]
        out = []
        for s in symbols:
            pos = self.position(s)
            f = self.filters[s]
            setting = self.setting(s)
            mark = self.quote(s).mark
            unrealized = self.unrealized(s, mark)
            notional = pos.amount * mark
            row: dict[str, Any] = {
                "symbol": s,
                "positionSide": "BOTH",
                "positionAmt": fmt(pos.amount, f.quantity_precision),
                "entryPrice": plain(pos.entry_price),
                "breakEvenPrice": plain(self.break_even_price(pos)),
                "markPrice": plain(mark),
                "unRealizedProfit": money(unrealized),
                "liquidationPrice": plain(self.liquidation_price(s)),
                "isolatedMargin": money(pos.isolated_wallet + unrealized) if self._isolated(s) else "0",
                "notional": money(notional),
                "isolatedWallet": money(pos.isolated_wallet),
                "updateTime": pos.update_time_ms,
            }
            if version == 2:
                row.update(
                    {
                        "marginType": "isolated" if self._isolated(s) else "cross",
                        "isAutoAddMargin": "false",
                        "leverage": str(setting.leverage),
                        "maxNotionalValue": plain(self.max_notional(s, setting.leverage)),
                    }
                )
            else:
                row.update(
                    {
                        "marginAsset": "USDT",
                        "initialMargin": money(self.position_initial_margin(s, mark)),
                        "maintMargin": money(self.maint_margin(s, abs(notional))),
                        "positionInitialMargin": money(self.position_initial_margin(s, mark)),
                        "openOrderInitialMargin": money(self.open_order_margin(s)),
                        "adl": 0,
                        "bidNotional": "0",
                        "askNotional": "0",
                    }
                )
            out.append(row)
        return out

    def balances_json(self) -> list[dict[str, Any]]:
        available = self.available_balance()
        now = self.clock.now_ms()
        usdt = {
            "accountAlias": "SimAcct",
            "asset": "USDT",
            "balance": money(self.wallet),
            "crossWalletBalance": money(self.cross_wallet),
            "crossUnPnl": money(self.cross_unrealized()),
            "availableBalance": money(available),
            "maxWithdrawAmount": money(max(ZERO, available)),
            "marginAvailable": True,
            "updateTime": now,
        }
        others = [
            {
                **usdt,
                "asset": asset,
                "balance": "0.00000000",
                "crossWalletBalance": "0.00000000",
                "crossUnPnl": "0.00000000",
                "availableBalance": "0.00000000",
                "maxWithdrawAmount": "0.00000000",
            }
            for asset in ("BNB", "USDC")
        ]
        return [usdt, *others]

    def symbol_config(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        symbol = param(params, "symbol")
        symbols = [self.spec(symbol).symbol] if symbol else list(self.specs)
        return [
            {
                "symbol": s,
                "marginType": self.setting(s).margin_type,
                "isAutoAddMargin": False,
                "leverage": self.setting(s).leverage,
                "maxNotionalValue": plain(self.max_notional(s, self.setting(s).leverage)),
            }
            for s in symbols
        ]

    def commission_rate(self, params: Mapping[str, str]) -> dict[str, Any]:
        symbol = self.spec(required(params, "symbol")).symbol
        return {
            "symbol": symbol,
            "makerCommissionRate": plain(self.options.maker_fee),
            "takerCommissionRate": plain(self.options.taker_fee),
            "rpiCommissionRate": "0",
        }

    # ------------------------------------------------------------------------------------- test views

    def state(self) -> dict[str, Any]:
        """Everything a test or an operator wants to assert on, as plain JSON."""
        return {
            "account": self.account,
            "wallet_balance": money(self.wallet),
            "available_balance": money(self.available_balance()),
            "unrealized_pnl": money(self.total_unrealized()),
            "positions": {
                s: {
                    "amount": plain(p.amount),
                    "entry_price": plain(p.entry_price),
                    "isolated_wallet": money(p.isolated_wallet),
                    "margin_type": self.setting(s).margin_type,
                    "leverage": self.setting(s).leverage,
                    "liquidation_price": plain(self.liquidation_price(s)),
                }
                for s, p in self.positions.items()
                if p.amount
            },
            "open_orders": [self.order_json(o) for o in self.open_orders.values()],
            "open_algo_orders": [self.algo_json(a, detail=True) for a in self.open_algos.values()],
            "fills": list(self.trades)[-200:],
        }


def _json_list(params: Mapping[str, str], name: str, maximum: int) -> list[Any]:
    """A JSON array parameter (batchOrders, orderIdList, ...) of at most `maximum` entries."""
    raw = required(params, name)
    try:
        value = json.loads(raw)
    except ValueError:
        raise SimError(-1130, f"Data sent for parameter '{name}' is not valid.") from None
    if not isinstance(value, list) or not value:
        raise SimError(-1130, f"Data sent for parameter '{name}' is not valid.")
    if len(value) > maximum:
        raise SimError(-1130, f"Data sent for parameter '{name}' is not valid (at most {maximum} items).")
    return value


def as_params(**kwargs: object) -> dict[str, str]:
    """Binance-style string parameters from Python values (tests and in-process callers)."""
    out: dict[str, str] = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out
