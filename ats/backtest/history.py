"""What a backtest replays: stored bars, funding and the symbols' rules, and the 24 h tickers rebuilt from bars.

Binance's public history holds OHLCV only: quote volume, trade count and taker-buy volume are unknown and stay so
(the universe estimates quote volume and marks it; the trade-count rule is skipped). Exchange rules of the past
are not published either: `derived_rules` gives each symbol a tick of six significant digits of its lowest close
and a quantity step worth at most 10 USDT at its highest close, which every report states.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from ats.data.series import FundingRates
from ats.domain import Bars, FloatArray, IntArray, SymbolRules, interval_ms
from ats.exchange.base import Ticker24h
from ats.factors.indicators import BoolArray
from ats.universe import quote_volume

DAY_MS = 86_400_000
RULES_NOTE = (
    "exchange rules of the past are unknown: tick = 6 significant digits of the lowest close, quantity step worth "
    "at most 10 USDT at the highest close, minimum notional 5 USDT"
)


@dataclass(frozen=True, slots=True)
class History:
    """Closed bars of the trading interval per symbol (oldest first, one interval), with what goes beside them."""

    interval: str
    bars: Mapping[str, Bars]
    funding: Mapping[str, FundingRates] = field(default_factory=dict)
    fine: Mapping[str, Bars] = field(default_factory=dict)  # 1m/5m bars where stored: the exact intra-bar order
    rules: Mapping[str, SymbolRules] = field(default_factory=dict)  # missing symbols get derived_rules

    def __post_init__(self) -> None:
        for symbol, series in self.bars.items():
            if series.interval != self.interval:
                raise ValueError(f"{symbol}: bars of {series.interval}, the backtest runs on {self.interval}")
            if len(series) > 1 and not bool(np.all(np.diff(series.open_time) > 0)):
                raise ValueError(f"{symbol}: bars must be in time order without duplicates")
        for symbol, series in self.fine.items():
            if interval_ms(series.interval) >= interval_ms(self.interval):
                raise ValueError(f"{symbol}: intra-bar bars of {series.interval} are not finer than {self.interval}")

    def rules_of(self, symbol: str) -> SymbolRules:
        known = self.rules.get(symbol)
        return known if known is not None else derived_rules(symbol, self.bars[symbol])

    def window(self, start_ms: int, end_ms: int, warmup_bars: int) -> History:
        """The bars from `warmup_bars` before start to end (exclusive), and the fine bars of [start, end)."""
        step = interval_ms(self.interval)
        bars = {s: _between(b, start_ms - warmup_bars * step, end_ms) for s, b in self.bars.items()}
        fine = {s: _between(b, start_ms, end_ms) for s, b in self.fine.items()}
        return History(
            self.interval,
            {s: b for s, b in bars.items() if len(b)},
            self.funding,
            {s: b for s, b in fine.items() if len(b)},
            self.rules,
        )


def _between(bars: Bars, start_ms: int, end_ms: int) -> Bars:
    lo, hi = np.searchsorted(bars.open_time, [start_ms, end_ms], side="left")
    return bars.slice(int(lo), int(hi))


def _power_of_ten(exponent: int) -> Decimal:
    return Decimal(1).scaleb(exponent)


def derived_rules(symbol: str, bars: Bars) -> SymbolRules:
    """Rules for a symbol whose past exchange rules are unknown (see RULES_NOTE)."""
    closes = bars.close[np.isfinite(bars.close) & (bars.close > 0)]
    if closes.size == 0:
        raise ValueError(f"{symbol}: no usable closes to derive its rules from")
    tick = _power_of_ten(math.floor(math.log10(float(closes.min()))) - 5)
    step = _power_of_ten(math.floor(math.log10(10.0 / float(closes.max()))))
    huge = Decimal(10) ** 12
    return SymbolRules(
        symbol=symbol,
        base_asset=symbol.removesuffix("USDT"),
        quote_asset="USDT",
        status="TRADING",
        contract_type="PERPETUAL",
        tick_size=tick,
        min_price=tick,
        max_price=huge,
        step_size=step,
        min_qty=step,
        max_qty=huge,
        market_step_size=step,
        market_min_qty=step,
        market_max_qty=Decimal(0),  # unknown: no market-order cap
        min_notional=Decimal(5),
        price_precision=max(-tick.as_tuple().exponent, 0),  # type: ignore[operator]
        quantity_precision=max(-step.as_tuple().exponent, 0),  # type: ignore[operator]
        onboard_date_ms=int(bars.open_time[0]) if len(bars) else 0,
    )


class TickerSeries:
    """The 24 h ticker at every bar close of a symbol, rebuilt from its bars (quote volume estimated where unknown,
    trade count unknown): the day's sums and extremes computed once for the whole history."""

    def __init__(self, bars: Bars) -> None:
        self.symbol = bars.symbol
        self.step = interval_ms(bars.interval)
        self.size = max(DAY_MS // self.step, 1)
        # Python lists: `at` runs once per symbol and hour, and reading a list beats reading a NumPy scalar
        self.open_time: list[int] = bars.open_time.tolist()
        self.close: list[float] = bars.close.tolist()
        self.open: list[float] = bars.open.tolist()
        self.quote: list[float] = []
        self.volume: list[float] = []
        self.high: list[float] = []
        self.low: list[float] = []
        if len(bars) < self.size:
            return
        quote, _ = quote_volume(bars)
        window = self.size
        view = np.lib.stride_tricks.sliding_window_view
        self.quote = np.nansum(view(quote, window), axis=1).tolist()  # row k: the day ending at bar k + size - 1
        self.volume = np.nansum(view(bars.volume, window), axis=1).tolist()
        self.high = view(bars.high, window).max(axis=1).tolist()
        self.low = view(bars.low, window).min(axis=1).tolist()

    def columns(self, ends: IntArray) -> tuple[BoolArray, FloatArray, FloatArray, FloatArray]:
        """What build_overlay reads of `at(end)` for many ends at once: whether there is a ticker, its quote
        volume, price change percent / 100 and last price (NaN where there is none), the same floats."""
        count = len(self.open_time)
        k = ends - self.size
        inside = (ends >= self.size) & (ends <= count)
        nan = np.full(ends.shape, np.nan)
        if not inside.any():
            return inside, nan, nan.copy(), nan.copy()
        last = np.asarray(self.close)[np.where(inside, ends - 1, 0)]
        first = np.asarray(self.open)[np.where(inside, k, 0)]
        with np.errstate(invalid="ignore", divide="ignore"):
            there = inside & np.isfinite(last) & np.isfinite(first) & (first > 0)
            change = (last / first - 1.0) * 100.0
        percent = nan.copy()
        percent[there] = [round(v, 6) for v in change[there].tolist()]  # as `at` rounds it
        quote = np.where(there, np.asarray(self.quote)[np.where(there, k, 0)], np.nan)
        return there, quote, percent / 100.0, np.where(there, last, np.nan)

    def at(self, end: int) -> Ticker24h | None:
        """The ticker at the close of bar `end - 1`; None without a day of bars."""
        if end < self.size or end > len(self.open_time):
            return None
        k = end - self.size
        last, first = self.close[end - 1], self.open[k]
        if not (math.isfinite(last) and math.isfinite(first) and first > 0):
            return None
        return Ticker24h(
            symbol=self.symbol,
            last_price=Decimal(repr(last)),
            price_change_percent=Decimal(repr(round((last / first - 1.0) * 100.0, 6))),
            high=Decimal(repr(self.high[k])),
            low=Decimal(repr(self.low[k])),
            volume=Decimal(repr(self.volume[k])),
            quote_volume=Decimal(repr(self.quote[k])),
            trade_count=None,
            open_time_ms=self.open_time[k],
            close_time_ms=self.open_time[end - 1] + self.step - 1,
        )
