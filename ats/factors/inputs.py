"""What the factor engine reads: a panel of closed bars aligned by open time, and optional extras per symbol.

Callers hold exchange values (ats.exchange.base); the adapters here turn them into these small typed inputs,
converting Decimal to float once, at this boundary. Every extra may be missing: a factor without its data is
reported as unavailable and left out of the composite, never guessed.

Time discipline: `build_panel` keeps only bars closed at `as_of_ms` (open time + interval <= as_of), so a
forming bar handed in by mistake is dropped, and its grid always ends at the last bar that *should* be closed
at `as_of_ms`: a symbol whose data stops earlier shows up as stale instead of being silently scored on old bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from ats.domain import BAR_FIELDS, Bars, FloatArray, IntArray, Side, interval_ms
from ats.exchange.base import (
    AggTrade,
    ForceOrder,
    KlineUpdate,
    MarkPriceUpdate,
    OpenInterestPoint,
    OrderBook,
    PremiumIndex,
)
from ats.factors.indicators import BoolArray
from ats.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OpenInterestSeries:
    """Open interest snapshots of one symbol, oldest first, in contracts (base asset, not USDT value:
    the USDT value moves with the price and would count price as positioning).

    `period_ms` is the snapshot period (openInterestHist's `period`); a bar may use a snapshot up to 1.5
    periods old, so 5-minute OI still serves 1-minute bars. 0 means only the bar-based age limit applies.
    """

    time_ms: IntArray
    contracts: FloatArray
    period_ms: int = 0

    def __post_init__(self) -> None:
        if self.time_ms.shape != self.contracts.shape:
            raise ValueError("OpenInterestSeries: time_ms and contracts must have the same length")
        if self.time_ms.size > 1 and bool((np.diff(self.time_ms) < 0).any()):
            raise ValueError("OpenInterestSeries: snapshots must be oldest first")


@dataclass(frozen=True, slots=True)
class PremiumSnapshot:
    """Mark and index price and the current funding rate (premiumIndex or the markPrice stream)."""

    mark_price: float
    index_price: float
    funding_rate: float
    time_ms: int


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Top order-book levels, best first (bids descending, asks ascending)."""

    bid_price: FloatArray
    bid_qty: FloatArray
    ask_price: FloatArray
    ask_qty: FloatArray
    time_ms: int


@dataclass(frozen=True, slots=True)
class TradeFlow:
    """Recent trades and liquidations: aggressor side, quote value (USDT) and time of each print."""

    time_ms: IntArray
    quote_value: FloatArray
    is_buy: BoolArray  # the aggressor (or the liquidation order) bought
    forced: BoolArray  # a liquidation: always counted as large


@dataclass(frozen=True, slots=True)
class SymbolExtras:
    """Optional data beyond bars for one symbol; any of it may be None."""

    open_interest: OpenInterestSeries | None = None
    premium: PremiumSnapshot | None = None
    book: BookSnapshot | None = None
    trades: TradeFlow | None = None


@dataclass(frozen=True, slots=True)
class MarketContext:
    """BTC and ETH bars (same interval as the panel) for the independence factor."""

    btc: Bars | None = None
    eth: Bars | None = None

    def merged(self, newer: MarketContext, keep_bars: int) -> MarketContext:
        """This context extended by newer bars, trimmed to the last `keep_bars`."""
        return MarketContext(_merge(self.btc, newer.btc, keep_bars), _merge(self.eth, newer.eth, keep_bars))


def _merge(held: Bars | None, newer: Bars | None, keep_bars: int) -> Bars | None:
    if newer is None:
        return held
    return (newer if held is None else held.concat(newer)).tail(keep_bars)


NO_EXTRAS = SymbolExtras()


# ---------------------------------------------------------------------------------------------- adapters


def open_interest_series(points: Sequence[OpenInterestPoint], period: str | None = None) -> OpenInterestSeries:
    """From GET /futures/data/openInterestHist points (any order); `period` as requested ("5m", "1h", ...),
    else the typical spacing of the points."""
    ordered = sorted(points, key=lambda p: p.timestamp_ms)
    times = np.array([p.timestamp_ms for p in ordered], dtype=np.int64)
    spacing = int(np.median(np.diff(times))) if times.size > 1 else 0
    period_ms = interval_ms(period) if period is not None else spacing
    return OpenInterestSeries(
        time_ms=times,
        contracts=np.array([float(p.sum_open_interest) for p in ordered], dtype=np.float64),
        period_ms=period_ms,
    )


def premium_snapshot(premium: PremiumIndex | MarkPriceUpdate) -> PremiumSnapshot:
    """From GET /fapi/v1/premiumIndex or a markPriceUpdate stream event."""
    if isinstance(premium, PremiumIndex):
        return PremiumSnapshot(
            float(premium.mark_price), float(premium.index_price), float(premium.last_funding_rate), premium.time_ms
        )
    return PremiumSnapshot(
        float(premium.mark_price), float(premium.index_price), float(premium.funding_rate), premium.event_time_ms
    )


def book_snapshot(book: OrderBook) -> BookSnapshot:
    """From GET /fapi/v1/depth."""

    def column(levels: Sequence[tuple[Decimal, Decimal]], i: int) -> FloatArray:
        return np.array([float(level[i]) for level in levels], dtype=np.float64)

    return BookSnapshot(
        column(book.bids, 0), column(book.bids, 1), column(book.asks, 0), column(book.asks, 1), book.time_ms
    )


def trade_flow(trades: Sequence[AggTrade] = (), liquidations: Sequence[ForceOrder] = ()) -> TradeFlow:
    """From aggTrade events (the aggressor sold when the buyer was the maker) and forceOrder events."""
    return TradeFlow(
        time_ms=np.array([t.trade_time_ms for t in trades] + [f.trade_time_ms for f in liquidations], dtype=np.int64),
        quote_value=np.array(
            [float(t.price * t.qty) for t in trades] + [float(f.price * f.qty) for f in liquidations], dtype=np.float64
        ),
        is_buy=np.array(
            [not t.buyer_is_maker for t in trades] + [f.side is Side.BUY for f in liquidations], dtype=bool
        ),
        forced=np.array([False] * len(trades) + [True] * len(liquidations), dtype=bool),
    )


def bars_from_klines(symbol: str, interval: str, updates: Sequence[KlineUpdate]) -> Bars:
    """Closed bars from kline stream events (forming ones, other symbols and intervals are left out), oldest
    first: what the monitor feeds IncrementalScorer.update on each closed bar."""
    closed = sorted(
        (u for u in updates if u.closed and u.symbol == symbol and u.interval == interval),
        key=lambda u: u.open_time_ms,
    )
    if not closed:
        return Bars.empty(symbol, interval)

    def column(name: str) -> FloatArray:
        return np.array([float(getattr(u, name)) for u in closed], dtype=np.float64)

    return Bars(
        symbol,
        interval,
        np.array([u.open_time_ms for u in closed], dtype=np.int64),
        *(column(name) for name in BAR_FIELDS),
    )


# ---------------------------------------------------------------------------------------------- the panel


@dataclass(frozen=True, slots=True)
class Panel:
    """Closed bars of several symbols on one time grid: arrays (symbols, bars), NaN where a symbol has no bar.

    Prices are natural logs (the factors work in log space); volumes are quote (USDT) values, so no factor
    ever mixes base units with prices, NaN where unknown. Open interest is in log contracts, as of each bar's close.
    A bar is there when its close is (`valid`); its volumes may still be unknown.
    """

    symbols: tuple[str, ...]
    interval: str
    open_time: IntArray  # (bars,)
    close: FloatArray  # as received, for the price a signal quotes
    log_high: FloatArray
    log_low: FloatArray
    log_close: FloatArray
    quote_volume: FloatArray
    taker_buy_quote: FloatArray
    log_open_interest: FloatArray

    @property
    def valid(self) -> BoolArray:
        return np.isfinite(self.log_close)

    def select(self, rows: IntArray, stop: int) -> Panel:
        """These symbols' rows, bars before `stop`."""
        return Panel(
            tuple(self.symbols[r] for r in rows.tolist()),
            self.interval,
            self.open_time[:stop],
            *(getattr(self, name)[rows, :stop] for name in _SERIES),
        )


_SERIES = ("close", "log_high", "log_low", "log_close", "quote_volume", "taker_buy_quote", "log_open_interest")


def last_closed_open_time(as_of_ms: int, interval: str, anchor_ms: int = 0) -> int:
    """Open time of the newest bar that is closed at as_of_ms (open time + interval <= as_of_ms).

    `anchor_ms` is any bar's open time: bars of weekly intervals do not start at multiples of the interval.
    """
    step = interval_ms(interval)
    return ((as_of_ms - anchor_ms) // step) * step + anchor_ms - step


def build_panel(
    bars: Sequence[Bars],
    *,
    as_of_ms: int,
    interval: str,
    anchor_ms: int | None = None,
    start_ms: int | None = None,
    extras: Mapping[str, SymbolExtras] | None = None,
    oi_max_age_bars: int = 2,
) -> Panel:
    """Align the symbols' closed bars on one grid ending at the last bar closed at as_of_ms.

    The grid starts at `start_ms` when given (bars before it are already known to the caller), else at the
    oldest bar. Invalid bars (non-positive or non-finite prices, negative or infinite volumes) and bars off
    the grid are skipped and logged; a NaN volume is unknown, and its bar is kept. Different intervals or a
    symbol listed twice are programming errors.
    """
    step = interval_ms(interval)
    names = [b.symbol for b in bars]
    if len(set(names)) != len(names):
        raise ValueError("build_panel: each symbol may appear once")
    for b in bars:
        if b.interval != interval:
            raise ValueError(f"build_panel: {b.symbol} has {b.interval} bars, the panel is {interval}")
    if anchor_ms is None:
        anchor_ms = next((int(b.open_time[0]) for b in bars if len(b)), 0)
    end = last_closed_open_time(as_of_ms, interval, anchor_ms)
    rows, times, fields = _concatenated(bars)
    if start_ms is None:
        closed = times[times <= end]
        start_ms = int(closed.min()) if closed.size else end + step
        start_ms += (anchor_ms - start_ms) % step
    count = max((end - start_ms) // step + 1, 0)
    grid = start_ms + step * np.arange(count, dtype=np.int64)
    arrays = _place(rows, times, fields, names, (len(bars), count), start_ms, end, step)
    oi = _open_interest_as_of(names, extras or {}, grid + step, oi_max_age_bars * step)
    with np.errstate(divide="ignore", invalid="ignore"):
        return Panel(
            symbols=tuple(names),
            interval=interval,
            open_time=grid,
            close=arrays["close"],
            log_high=np.log(arrays["high"]),
            log_low=np.log(arrays["low"]),
            log_close=np.log(arrays["close"]),
            quote_volume=arrays["quote"],
            taker_buy_quote=arrays["taker_buy_quote"],
            log_open_interest=np.log(oi),
        )


_FIELDS = ("open", "high", "low", "close", "quote_volume", "taker_buy_quote_volume")


def _concatenated(bars: Sequence[Bars]) -> tuple[IntArray, IntArray, dict[str, FloatArray]]:
    """All symbols' bars in one flat array per field, with the panel row of each bar."""
    rows = np.repeat(np.arange(len(bars), dtype=np.int64), [len(b) for b in bars])
    if not bars:
        return rows, np.zeros(0, dtype=np.int64), {name: np.zeros(0) for name in _FIELDS}
    times = np.concatenate([b.open_time for b in bars]).astype(np.int64)
    return rows, times, {name: np.concatenate([getattr(b, name) for b in bars]) for name in _FIELDS}


def _place(
    rows: IntArray,
    times: IntArray,
    fields: dict[str, FloatArray],
    names: Sequence[str],
    shape: tuple[int, int],
    start: int,
    end: int,
    step: int,
) -> dict[str, FloatArray]:
    """Scatter the valid, closed, on-grid bars into (symbols, bars) arrays, NaN elsewhere (and where a volume is
    unknown: the bar's prices still count)."""
    arrays = {name: np.full(shape, np.nan) for name in ("high", "low", "close", "quote", "taker_buy_quote")}
    in_range = (times >= start) & (times <= end)
    on_grid = (times - start) % step == 0
    o, h, lo, c = (fields[name] for name in ("open", "high", "low", "close"))
    quote, taker_buy = fields["quote_volume"], fields["taker_buy_quote_volume"]
    # elementwise over the four prices: a reduction along the short axis of (4, bars) is several times slower
    with np.errstate(invalid="ignore"):
        sane = (
            np.isfinite(o)
            & np.isfinite(h)
            & np.isfinite(lo)
            & np.isfinite(c)
            & (o > 0)
            & (h > 0)
            & (lo > 0)
            & (c > 0)
            & (np.isnan(quote) | (np.isfinite(quote) & (quote >= 0)))  # NaN: unknown, still a bar
            & (np.isnan(taker_buy) | (np.isfinite(taker_buy) & (taker_buy >= 0)))
        )
    keep = in_range & on_grid & sane
    skipped = in_range & ~keep
    if skipped.any():
        for row, count in enumerate(np.bincount(rows[skipped], minlength=shape[0])):
            if count:
                log.warning("bars skipped", symbol=names[row], count=int(count), reason="invalid or off the time grid")
    # One flat position per kept bar (a scatter through a flat index is several times faster than through a pair
    # of indices); a repeated open time keeps its last copy (the freshest fetch).
    at = rows[keep] * shape[1] + (times[keep] - start) // step
    o, h, lo, c = o[keep], h[keep], lo[keep], c[keep]
    kept_quote = quote[keep]
    arrays["high"].reshape(-1)[at] = np.maximum(np.maximum(o, h), np.maximum(lo, c))
    arrays["low"].reshape(-1)[at] = np.minimum(np.minimum(o, h), np.minimum(lo, c))
    arrays["close"].reshape(-1)[at] = c
    arrays["quote"].reshape(-1)[at] = kept_quote
    arrays["taker_buy_quote"].reshape(-1)[at] = np.minimum(taker_buy[keep], kept_quote)
    return arrays


def _open_interest_as_of(
    names: Sequence[str], extras: Mapping[str, SymbolExtras], close_ms: IntArray, max_age_bars_ms: int
) -> FloatArray:
    """Open interest at each bar close, per symbol: the newest snapshot at or before the close, provided it
    is no older than max(the given bars, 1.5 snapshot periods); NaN where there is none.

    Each series is first cut to the snapshots that can matter for these closes, then all symbols are joined
    in one sorted search (keyed by symbol, then time) instead of a search per symbol.
    """
    out = np.full((len(names), close_ms.size), np.nan)
    if not close_ms.size:
        return out
    targets: list[int] = []
    ages: list[float] = []
    time_parts: list[IntArray] = []
    value_parts: list[FloatArray] = []
    for row, name in enumerate(names):
        series = extras.get(name, NO_EXTRAS).open_interest
        if series is None:
            continue
        max_age = max(float(max_age_bars_ms), 1.5 * series.period_ms)
        low = int(np.searchsorted(series.time_ms, close_ms[0] - max_age, side="left"))
        high = int(np.searchsorted(series.time_ms, close_ms[-1], side="right"))
        if high > low:
            targets.append(row)
            ages.append(max_age)
            time_parts.append(series.time_ms[low:high])
            value_parts.append(series.contracts[low:high])
    if not targets:
        return out
    owner = np.repeat(np.arange(len(targets), dtype=np.int64), [t.size for t in time_parts])
    times = np.concatenate(time_parts).astype(np.int64)
    values = np.concatenate(value_parts).astype(np.float64)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(values) & (values > 0)
    owner, times, values = owner[usable], times[usable], values[usable]
    if not owner.size:
        return out
    base = min(int(times.min()), int(close_ms[0]))
    span = max(int(times.max()), int(close_ms[-1])) - base + 1
    keys = owner * span + (times - base)  # sorted: owners ascending, each series oldest first
    members = np.arange(len(targets), dtype=np.int64)
    pos = np.searchsorted(keys, members[:, None] * span + (close_ms[None, :] - base), side="right") - 1
    safe = np.maximum(pos, 0)
    age_limit = np.asarray(ages)[:, None]
    fresh = (pos >= 0) & (owner[safe] == members[:, None]) & (close_ms[None, :] - times[safe] <= age_limit)
    out[targets] = np.where(fresh, values[safe], np.nan)
    return out
