"""Value types shared by every layer: symbol rules and quantisation, bars, signals, levels, client ids.

Money is Decimal everywhere in this module. Bars are NumPy arrays (float64) because factor math is
vectorised; they are never used to compute an order's price or quantity.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
    localcontext,
)
from enum import StrEnum
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class Direction(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"

    @property
    def entry_side(self) -> Side:
        return Side.BUY if self is Direction.LONG else Side.SELL

    @property
    def exit_side(self) -> Side:
        return self.entry_side.opposite

    @property
    def sign(self) -> int:
        return 1 if self is Direction.LONG else -1


class Band(StrEnum):
    """Signal strength bands (factors.md): below 60 is no signal."""

    NONE = "none"
    MEDIUM = "medium"  # 60-69, watch only
    GOOD = "good"  # 70-79
    STRONG = "strong"  # 80-89
    VERY_STRONG = "very_strong"  # 90-100

    @staticmethod
    def of(strength: float) -> Band:
        if strength >= 90:
            return Band.VERY_STRONG
        if strength >= 80:
            return Band.STRONG
        if strength >= 70:
            return Band.GOOD
        if strength >= 60:
            return Band.MEDIUM
        return Band.NONE


_INTERVAL_RE = re.compile(r"^(\d+)([smhdw])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
BINANCE_INTERVALS = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
)  # fmt: skip


def interval_ms(interval: str) -> int:
    """Length of a kline interval such as '1m' or '1h' in milliseconds."""
    match = _INTERVAL_RE.match(interval)
    if match is None or interval not in BINANCE_INTERVALS:
        raise ValueError(f"unknown kline interval {interval!r}; expected one of {', '.join(BINANCE_INTERVALS)}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


class FilterViolation(ValueError):
    """An order would break one of the symbol's exchange filters; raised before anything is sent."""


def _round_ratio(ratio: Fraction, rounding: str) -> int:
    """An exact rational rounded to an integer with a decimal rounding mode."""
    floor = math.floor(ratio)
    if ratio == floor or rounding == ROUND_FLOOR:
        return floor
    positive = ratio > 0
    if rounding == ROUND_CEILING:
        return floor + 1
    if rounding == ROUND_DOWN:
        return floor if positive else floor + 1
    if rounding == ROUND_UP:
        return floor + 1 if positive else floor
    fraction = ratio - floor
    if fraction != Fraction(1, 2):
        if rounding in (ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_HALF_DOWN):
            return floor if fraction < Fraction(1, 2) else floor + 1
    elif rounding == ROUND_HALF_EVEN:
        return floor if floor % 2 == 0 else floor + 1
    elif rounding == ROUND_HALF_UP:
        return floor + 1 if positive else floor
    elif rounding == ROUND_HALF_DOWN:
        return floor if positive else floor + 1
    raise ValueError(f"unsupported rounding mode {rounding}")


def _quantize(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    """`value` on the grid of `step`, exactly, however many digits it has.

    Decimal division first rounds to the context's 28 digits, which can carry a value with more digits
    across a grid line (a floor that rounds up); the grid index is therefore computed as an exact ratio.
    """
    if step <= 0:
        return value
    units = _round_ratio(Fraction(value) / Fraction(step), rounding)
    with localcontext() as ctx:
        ctx.prec = max(ctx.prec, len(str(abs(units))) + len(step.as_tuple().digits) + 2)
        return (Decimal(units) * step).quantize(step)


def _exact(value: Any) -> Decimal:
    """An exchangeInfo number as Decimal. Binance sends strings; a JSON number goes through its shortest text,
    never its binary expansion (Decimal(0.1) would put every price off the real 0.1 grid)."""
    return Decimal(str(value))


def _on_grid(value: Decimal, step: Decimal) -> bool:
    return step <= 0 or (Fraction(value) / Fraction(step)).denominator == 1


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """One symbol's exchange rules (from exchangeInfo filters) and the quantisation they imply."""

    symbol: str
    base_asset: str
    quote_asset: str
    status: str
    contract_type: str
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    price_precision: int = 8
    quantity_precision: int = 8
    onboard_date_ms: int = 0
    trigger_protect: Decimal = Decimal("0.05")
    max_num_algo_orders: int = 200

    @property
    def is_tradable_perpetual(self) -> bool:
        return self.status == "TRADING" and self.contract_type == "PERPETUAL" and self.quote_asset == "USDT"

    def round_price(self, price: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
        """Price on the tick grid. Use ROUND_FLOOR/ROUND_CEILING to keep a level on a chosen side."""
        return _quantize(price, self.tick_size, rounding)

    def price_down(self, price: Decimal) -> Decimal:
        return self.round_price(price, ROUND_FLOOR)

    def price_up(self, price: Decimal) -> Decimal:
        return self.round_price(price, ROUND_CEILING)

    def floor_qty(self, qty: Decimal, *, market: bool = True) -> Decimal:
        """Quantity on the step grid, never rounded up past what the caller asked for."""
        if qty < 0:
            raise FilterViolation(f"{self.symbol}: quantity must not be negative, got {qty}")
        step = self.market_step_size if market else self.step_size
        return _quantize(qty, step, ROUND_FLOOR)

    def check_order(self, qty: Decimal, price: Decimal, *, market: bool, reduce_only: bool = False) -> None:
        """Raise FilterViolation naming the filter an order would break (the exchange's -4164 etc.)."""
        step = self.market_step_size if market else self.step_size
        min_qty = self.market_min_qty if market else self.min_qty
        max_qty = self.market_max_qty if market else self.max_qty
        if qty <= 0:
            raise FilterViolation(f"{self.symbol}: quantity must be positive, got {qty}")
        if not _on_grid(qty, step):
            raise FilterViolation(f"{self.symbol}: quantity {qty} is not a multiple of step size {step}")
        if qty < min_qty:
            raise FilterViolation(f"{self.symbol}: quantity {qty} is below the minimum {min_qty}")
        if qty > max_qty:
            raise FilterViolation(f"{self.symbol}: quantity {qty} is above the maximum {max_qty}")
        if price <= 0:
            raise FilterViolation(f"{self.symbol}: price must be positive, got {price}")
        if not market and not _on_grid(price, self.tick_size):
            raise FilterViolation(f"{self.symbol}: price {price} is not a multiple of tick size {self.tick_size}")
        if not market and self.min_price > 0 and price < self.min_price:
            raise FilterViolation(f"{self.symbol}: price {price} is below the minimum {self.min_price}")
        if not market and self.max_price > 0 and price > self.max_price:
            raise FilterViolation(f"{self.symbol}: price {price} is above the maximum {self.max_price}")
        if not reduce_only and qty * price < self.min_notional:
            raise FilterViolation(
                f"{self.symbol}: notional {qty * price} is below the minimum {self.min_notional} USDT"
            )

    @staticmethod
    def from_exchange_info(entry: dict[str, Any]) -> SymbolRules:
        """Parse one element of exchangeInfo.symbols; unknown filter types are ignored."""
        filters: dict[str, dict[str, Any]] = {
            f["filterType"]: f for f in entry.get("filters", []) if isinstance(f, dict) and "filterType" in f
        }
        price_filter = filters.get("PRICE_FILTER", {})
        lot = filters.get("LOT_SIZE", {})
        market_lot = filters.get("MARKET_LOT_SIZE", lot)
        notional = filters.get("MIN_NOTIONAL", {})
        algo = filters.get("MAX_NUM_ALGO_ORDERS", {})
        return SymbolRules(
            symbol=entry["symbol"],
            base_asset=entry.get("baseAsset", ""),
            quote_asset=entry.get("quoteAsset", ""),
            status=entry.get("status", ""),
            contract_type=entry.get("contractType", ""),
            tick_size=_exact(price_filter.get("tickSize", "0")),
            min_price=_exact(price_filter.get("minPrice", "0")),
            max_price=_exact(price_filter.get("maxPrice", "0")),
            step_size=_exact(lot.get("stepSize", "0")),
            min_qty=_exact(lot.get("minQty", "0")),
            max_qty=_exact(lot.get("maxQty", "0")),
            market_step_size=_exact(market_lot.get("stepSize", lot.get("stepSize", "0"))),
            market_min_qty=_exact(market_lot.get("minQty", lot.get("minQty", "0"))),
            market_max_qty=_exact(market_lot.get("maxQty", lot.get("maxQty", "0"))),
            min_notional=_exact(notional.get("notional", "0")),
            price_precision=int(entry.get("pricePrecision", 8)),
            quantity_precision=int(entry.get("quantityPrecision", 8)),
            onboard_date_ms=int(entry.get("onboardDate", 0)),
            trigger_protect=_exact(entry.get("triggerProtect", "0.05")),
            max_num_algo_orders=int(algo.get("limit", 200)),
        )


BAR_FIELDS = (
    "open", "high", "low", "close", "volume", "quote_volume", "trades", "taker_buy_volume",
    "taker_buy_quote_volume",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Bars:
    """Closed klines of one symbol, oldest first. Arrays share the last axis (bars)."""

    symbol: str
    interval: str
    open_time: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    quote_volume: FloatArray
    trades: FloatArray
    taker_buy_volume: FloatArray
    taker_buy_quote_volume: FloatArray

    def __len__(self) -> int:
        return int(self.open_time.shape[-1])

    @property
    def close_time(self) -> IntArray:
        """Binance's close time: open time + interval - 1 ms."""
        return self.open_time + (interval_ms(self.interval) - 1)

    @staticmethod
    def empty(symbol: str, interval: str) -> Bars:
        zeros = np.zeros(0, dtype=np.float64)
        return Bars(symbol, interval, np.zeros(0, dtype=np.int64), *([zeros] * len(BAR_FIELDS)))

    @staticmethod
    def from_rows(symbol: str, interval: str, rows: list[list[Any]]) -> Bars:
        """From Binance's 12-column kline rows."""
        if not rows:
            return Bars.empty(symbol, interval)
        data = np.asarray([[r[0], r[1], r[2], r[3], r[4], r[5], r[7], r[8], r[9], r[10]] for r in rows], dtype=float)
        return Bars(
            symbol=symbol,
            interval=interval,
            open_time=data[:, 0].astype(np.int64),
            open=data[:, 1].copy(),
            high=data[:, 2].copy(),
            low=data[:, 3].copy(),
            close=data[:, 4].copy(),
            volume=data[:, 5].copy(),
            quote_volume=data[:, 6].copy(),
            trades=data[:, 7].copy(),
            taker_buy_volume=data[:, 8].copy(),
            taker_buy_quote_volume=data[:, 9].copy(),
        )

    def prices_only(self) -> Bars:
        """The same bars with every volume column unknown (NaN): what mark-price klines are (they carry none)."""
        return Bars(
            self.symbol,
            self.interval,
            self.open_time,
            self.open,
            self.high,
            self.low,
            self.close,
            *(np.full(len(self), np.nan) for _ in BAR_FIELDS[4:]),
        )

    def closed_by(self, as_of_ms: int) -> Bars:
        """The bars that had closed at `as_of_ms` (a bar closes at its open time + interval): never a forming one."""
        closed = int(np.searchsorted(self.open_time + interval_ms(self.interval), as_of_ms, side="right"))
        return self.slice(0, closed)

    def tail(self, n: int) -> Bars:
        return self.slice(max(len(self) - n, 0), len(self))

    def slice(self, start: int, stop: int) -> Bars:
        return Bars(
            self.symbol,
            self.interval,
            self.open_time[start:stop],
            *(getattr(self, name)[start:stop] for name in BAR_FIELDS),
        )

    def concat(self, newer: Bars) -> Bars:
        """Append newer bars, dropping any that overlap bars already held."""
        if len(self) == 0:
            return newer
        keep = newer.open_time > self.open_time[-1]
        return Bars(
            self.symbol,
            self.interval,
            np.concatenate([self.open_time, newer.open_time[keep]]),
            *(np.concatenate([getattr(self, n), getattr(newer, n)[keep]]) for n in BAR_FIELDS),
        )


@dataclass(frozen=True, slots=True)
class Signal:
    """A scored trading opportunity on one symbol at one closed bar."""

    symbol: str
    direction: Direction
    strength: float  # 0-100
    band: Band
    bar_open_time_ms: int  # open time of the last closed bar the score used
    price: Decimal  # that bar's close
    factors: dict[str, float] = field(default_factory=dict)
    atr_pct: float = 0.0  # ATR as a fraction of price, for level adjustment
    trend: float = 0.0  # T factor, signed
    liquidity: float = 50.0  # L factor, 0-100


@dataclass(frozen=True, slots=True)
class Levels:
    """Protective levels for one position. Prices are on the tick grid; quantities on the step grid.

    `single_target` says the position was too small to split: TP1 closes everything and TP2 is unused
    (tp2_qty is 0). `adjustments` names the factor adjustments that shaped the levels, for the user.
    """

    entry: Decimal
    stop: Decimal
    tp1: Decimal
    tp2: Decimal
    tp1_qty: Decimal
    tp2_qty: Decimal
    single_target: bool = False
    adjustments: tuple[str, ...] = ()

    @property
    def quantity(self) -> Decimal:
        return self.tp1_qty + self.tp2_qty


# Binance: newClientOrderId / clientAlgoId must match ^[\.A-Z\:/a-z0-9_-]{1,36}$
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
CLIENT_ID_PREFIX = "ats"


def intent_key(account: str, symbol: str, bar_open_time_ms: int, direction: Direction) -> str:
    """A short stable key for one trading intent: the same signal always yields the same key."""
    digest = hashlib.sha256(f"{account}|{symbol}|{bar_open_time_ms}|{direction.value}".encode()).hexdigest()
    return digest[:16]


def check_client_id(cid: str) -> str:
    """`cid` if it satisfies Binance's client id rule; ValueError before anything is sent otherwise."""
    if not CLIENT_ID_RE.fullmatch(cid):  # fullmatch: `$` alone would let a trailing newline through
        raise ValueError(f"client id {cid!r} does not match Binance's rule ^[.A-Z:/a-z0-9_-]{{1,36}}$")
    return cid


def client_id(key: str, leg: str) -> str:
    """Deterministic client order id for one leg of an intent ('E' entry, 'S1' first stop, 'T1', ...)."""
    return check_client_id(f"{CLIENT_ID_PREFIX}_{key}_{leg}")


def is_own_client_id(cid: str) -> bool:
    return cid.startswith(CLIENT_ID_PREFIX + "_")


def parse_client_id(cid: str) -> tuple[str, str] | None:
    """(intent key, leg) of one of our client ids; None for anyone else's (liquidations, manual orders)."""
    parts = cid.split("_")
    if len(parts) != 3 or parts[0] != CLIENT_ID_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]
