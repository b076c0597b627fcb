"""A small seeded market generator for the factor tests (no dependency on the simulated exchange)."""

from __future__ import annotations

import numpy as np

from ats.domain import Bars, interval_ms
from ats.factors.inputs import (
    BookSnapshot,
    MarketContext,
    OpenInterestSeries,
    PremiumSnapshot,
    SymbolExtras,
    TradeFlow,
)

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def make_bars(
    symbol: str = "AAAUSDT",
    n: int = 300,
    *,
    seed: int = 0,
    interval: str = "1h",
    start_ms: int = START_MS,
    price: float = 100.0,
    drift: float = 0.0,
    volatility: float = 0.01,
    quote_volume: float = 1e6,
    buy_bias: float = 0.0,
) -> Bars:
    """A random walk with drift: OHLC consistent, quote volume lognormal, taker-buy share 0.5 + bias + noise."""
    rng = np.random.default_rng(seed)
    step = interval_ms(interval)
    returns = rng.normal(drift, volatility, n)
    close = price * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[price], close[:-1]])
    wick_up = np.exp(np.abs(rng.normal(0, volatility / 2, n)))
    wick_down = np.exp(-np.abs(rng.normal(0, volatility / 2, n)))
    high = np.maximum(open_, close) * wick_up
    low = np.minimum(open_, close) * wick_down
    quote = quote_volume * np.exp(rng.normal(0, 0.3, n))
    share = np.clip(0.5 + buy_bias + rng.normal(0, 0.05, n), 0.02, 0.98)
    vwap = (high + low + close) / 3
    return Bars(
        symbol=symbol,
        interval=interval,
        open_time=start_ms + step * np.arange(n, dtype=np.int64),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=quote / vwap,
        quote_volume=quote,
        trades=np.maximum(np.round(quote / 5_000), 1.0),
        taker_buy_volume=share * quote / vwap,
        taker_buy_quote_volume=share * quote,
    )


def make_open_interest(bars: Bars, *, seed: int = 0, trend: float = 0.0) -> OpenInterestSeries:
    """OI snapshots at each bar close, a noisy random walk in contracts."""
    rng = np.random.default_rng(seed + 1000)
    n = len(bars)
    contracts = 1e6 * np.exp(np.cumsum(rng.normal(trend, 0.005, n)))
    step = interval_ms(bars.interval)
    return OpenInterestSeries(bars.open_time + step, contracts, period_ms=step)


def make_book(mid: float = 100.0, *, spread: float = 0.0002, levels: int = 20, qty: float = 500.0) -> BookSnapshot:
    half = mid * spread / 2
    offsets = mid * 0.0005 * np.arange(levels, dtype=np.float64)
    return BookSnapshot(
        bid_price=mid - half - offsets,
        bid_qty=np.full(levels, qty),
        ask_price=mid + half + offsets,
        ask_qty=np.full(levels, qty),
        time_ms=START_MS,
    )


def make_trades(end_ms: int, *, seed: int = 0, n: int = 200, buy_share: float = 0.5) -> TradeFlow:
    rng = np.random.default_rng(seed + 2000)
    return TradeFlow(
        time_ms=end_ms - rng.integers(0, 3_600_000, n).astype(np.int64),
        quote_value=np.exp(rng.normal(8, 1.5, n)),
        is_buy=rng.random(n) < buy_share,
        forced=rng.random(n) < 0.05,
    )


def as_of_after(bars: Bars) -> int:
    """The moment the last bar closes."""
    return int(bars.open_time[-1]) + interval_ms(bars.interval)


def make_market(
    n_symbols: int = 8, n_bars: int = 300, *, seed: int = 0, interval: str = "1h"
) -> tuple[list[Bars], dict[str, SymbolExtras], MarketContext]:
    """Symbols with assorted drifts and flow biases, every extra present, and BTC/ETH context."""
    rng = np.random.default_rng(seed)
    bars = [
        make_bars(
            f"S{i}USDT",
            n_bars,
            seed=seed * 100 + i,
            interval=interval,
            price=float(np.exp(rng.uniform(-3, 8))),
            drift=float(rng.normal(0, 0.002)),
            volatility=float(rng.uniform(0.004, 0.03)),
            quote_volume=float(np.exp(rng.uniform(10, 18))),
            buy_bias=float(rng.normal(0, 0.03)),
        )
        for i in range(n_symbols)
    ]
    end = as_of_after(bars[0])
    extras = {
        b.symbol: SymbolExtras(
            open_interest=make_open_interest(b, seed=seed * 100 + i, trend=float(rng.normal(0, 0.002))),
            premium=PremiumSnapshot(
                float(b.close[-1]) * (1 + float(rng.normal(0, 0.001))),
                float(b.close[-1]),
                float(rng.normal(0, 0.0004)),
                end,
            ),
            book=make_book(float(b.close[-1]), spread=float(rng.uniform(1e-4, 1e-3)), qty=float(rng.uniform(1, 1e4))),
            trades=make_trades(end, seed=seed * 100 + i, buy_share=float(rng.uniform(0.3, 0.7))),
        )
        for i, b in enumerate(bars)
    }
    context = MarketContext(
        btc=make_bars("BTCUSDT", n_bars, seed=seed * 100 + 98, interval=interval, price=60_000.0),
        eth=make_bars("ETHUSDT", n_bars, seed=seed * 100 + 99, interval=interval, price=3_000.0),
    )
    return bars, extras, context


def mirror_bars(b: Bars, k: float) -> Bars:
    """The market seen upside down: p -> k/p (high and low swap), taker buys and sells swap."""
    close = k / b.close
    return Bars(
        b.symbol,
        b.interval,
        b.open_time.copy(),
        k / b.open,
        k / b.low,
        k / b.high,
        close,
        b.quote_volume / close,
        b.quote_volume.copy(),
        b.trades.copy(),
        (b.quote_volume - b.taker_buy_quote_volume) / close,
        b.quote_volume - b.taker_buy_quote_volume,
    )


def mirror_extras(e: SymbolExtras, k: float) -> SymbolExtras:
    """OI unchanged, basis and funding negated, trade sides swapped; the book is left as it is."""
    assert e.premium is not None
    assert e.trades is not None
    p = e.premium
    index = k / p.index_price
    basis = (p.mark_price - p.index_price) / p.index_price
    return SymbolExtras(
        open_interest=e.open_interest,
        premium=PremiumSnapshot(index * (1 - basis), index, -p.funding_rate, p.time_ms),
        book=e.book,
        trades=TradeFlow(e.trades.time_ms, e.trades.quote_value, ~e.trades.is_buy, e.trades.forced),
    )


def scale_bars(b: Bars, c: float) -> Bars:
    """Prices times c, base volumes divided by c (quote values unchanged)."""
    return Bars(
        b.symbol,
        b.interval,
        b.open_time.copy(),
        b.open * c,
        b.high * c,
        b.low * c,
        b.close * c,
        b.volume / c,
        b.quote_volume.copy(),
        b.trades.copy(),
        b.taker_buy_volume / c,
        b.taker_buy_quote_volume.copy(),
    )


def scale_extras(e: SymbolExtras, c: float) -> SymbolExtras:
    assert e.premium is not None
    assert e.book is not None
    assert e.open_interest is not None
    p, book, oi = e.premium, e.book, e.open_interest
    return SymbolExtras(
        open_interest=OpenInterestSeries(oi.time_ms, oi.contracts / c, oi.period_ms),
        premium=PremiumSnapshot(p.mark_price * c, p.index_price * c, p.funding_rate, p.time_ms),
        book=BookSnapshot(book.bid_price * c, book.bid_qty / c, book.ask_price * c, book.ask_qty / c, book.time_ms),
        trades=e.trades,
    )
