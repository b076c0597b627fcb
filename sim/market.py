"""Market data for the simulated exchange: a seeded synthetic market or a replay of stored klines.

A *source* decides how prices move (`SyntheticSource`: BTC factor + beta + idiosyncratic noise with
volatility and trend regimes; `ReplaySource`: stored 12-column kline rows walked through open-low-high-close).
`Market` owns everything derived from the path: bars (closed and forming), mark/index prices and basis,
funding, open interest, the order book, aggregate trades and liquidations. It advances in ticks (one per
second of market time in normal operation) and calls back after each tick so the engine can run triggers
and the server can push stream events.

Volatility is per bar of the configured interval: with a 1m interval every bar moves like an hourly bar (a
compressed market). Its clock is compressed alike (`market_hour_ms`): a day of 24h statistics, the funding period
and the listing age of old contracts are counted in market hours, so a 1m market's onboard dates, 24h tickers and
funding times read as an hourly market's do, one bar per hour (what `UniverseConfig.for_interval` expects).
Prices are float64 internally; everything handed out is Decimal on the grid.
"""

from __future__ import annotations

import csv
import json
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ats.domain import BINANCE_INTERVALS, FloatArray, IntArray, interval_ms
from sim.specs import CATALOGUE, SymbolSpec

OPEN, HIGH, LOW, CLOSE, VOLUME, QUOTE_VOLUME, TRADES, TAKER_BUY, TAKER_BUY_QUOTE = range(9)

HOUR_MS = 3_600_000
FUNDING_PERIOD_HOURS = 8
OI_SAMPLE_MS = 300_000  # open-interest history is kept on a 5-minute grid (Binance's finest period)
OI_HISTORY_MS = 30 * 86_400_000  # Binance serves the last month only
KLINE_INTERVALS = (*BINANCE_INTERVALS, "1M")
OI_PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")
MARKET_FACTOR_VOL = 0.006  # BTC's volatility per bar
VOL_LEVELS = np.array([0.55, 1.0, 2.1])  # calm, normal, volatile
MOVER_BARS = 30  # strong movers trend over their last 30 bars of history
FORCE_ORDERS_KEPT = 1000
TAPE_KEPT = 1000  # aggregate trades kept per symbol for /fapi/v1/aggTrades and /fapi/v1/trades
ONBOARD_AGE_HOURS = 365 * 24  # contracts listed before the history began
BOOK_LEVELS = 100  # levels per side: the whole simulated book (REST depth and the diff stream cover all of it)
BOOK_REFRESH = 8  # a resting level's quantity is redrawn every 8 book updates, levels staggered
BOOK_ID_START = 1_000_000_000


@dataclass(frozen=True, slots=True)
class BarHistory:
    """Closed bars from a source: arrays shaped (fields, symbols, bars); NaN before a symbol is listed."""

    bars: FloatArray
    open_interest: FloatArray  # (symbols, bars), base units at each bar's close
    basis: FloatArray  # (symbols, bars), (mark - index) / index at each bar's close


@dataclass(frozen=True, slots=True)
class TickDraw:
    """What a source says happened during one tick, per symbol."""

    price: FloatArray
    quote_volume: FloatArray
    taker_buy_ratio: FloatArray
    trades: FloatArray


class PriceSource(Protocol):
    """Where prices come from. Stateful: `history` once, then `begin_bar`/`tick` in time order."""

    specs: tuple[SymbolSpec, ...]

    def history(self, n_bars: int) -> BarHistory: ...

    def begin_bar(self) -> None: ...

    def tick(self, frac_from: float, frac_to: float) -> TickDraw:
        """The tick covering [frac_from, frac_to] of the current bar (fractions of the interval)."""
        ...

    def set_price(self, index: int, price: float) -> None:
        """An operator moved the price: continue the path from here."""
        ...


# ------------------------------------------------------------------------------------------ synthetic


class SyntheticSource:
    """Seeded random market: BTC is the market factor; alts = beta * BTC + idiosyncratic, with regimes.

    Regimes switch at bar boundaries: volatility (calm/normal/volatile) and trend (down/flat/up drift),
    per symbol, plus a market-wide regime carried by BTC. Strong movers drift hard over their last bars.
    """

    def __init__(self, specs: Iterable[SymbolSpec] = CATALOGUE, *, seed: int = 7) -> None:
        self.specs = tuple(specs)
        self.rng = np.random.default_rng(seed)
        self.beta = np.array([s.beta for s in self.specs])
        self.vol = np.array([s.vol for s in self.specs])
        self.quote_volume = np.array([s.quote_volume for s in self.specs])
        self.mover = np.array([s.mover for s in self.specs])
        n = len(self.specs)
        self.vol_state = np.ones(n, dtype=np.int64)
        self.trend_state = np.zeros(n, dtype=np.int64)
        self.market_vol_state = 1
        self.market_trend = 0
        self.log_price = np.log(np.array([s.price for s in self.specs]))
        self.anchor = self.log_price.copy()
        self.bars_live = 0
        self._ticks_normals: FloatArray = np.zeros((0, n + 3))
        self._tick_cursor = 0

    # regimes ------------------------------------------------------------------------------------

    def _switch(self, vol_state: IntArray, trend_state: IntArray, u: FloatArray) -> tuple[IntArray, IntArray]:
        """One bar of the regime Markov chains; u holds uniforms shaped (4, n)."""
        up = (u[0] < 0.015) & (vol_state < 2)
        down = (u[1] < 0.02) & (vol_state > 0)
        vol_state = vol_state + up.astype(np.int64) - down.astype(np.int64)
        flip = u[2] < 0.03
        new_trend = np.where(u[3] < 0.5, -1, 1)
        trend_state = np.where(flip, np.where(trend_state == 0, new_trend, 0), trend_state)
        return vol_state, trend_state

    def _market_switch(self) -> None:
        u = self.rng.random(4)
        vs, ts = self._switch(np.array([self.market_vol_state]), np.array([self.market_trend]), u.reshape(4, 1))
        self.market_vol_state, self.market_trend = int(vs[0]), int(ts[0])

    def _sigma_bar(self) -> FloatArray:
        """Total per-bar volatility of each symbol (market part plus idiosyncratic part)."""
        market = MARKET_FACTOR_VOL * VOL_LEVELS[self.market_vol_state] * self.beta
        idio = self.vol * VOL_LEVELS[self.vol_state]
        total: FloatArray = np.sqrt(market**2 + idio**2)
        return total

    # history ------------------------------------------------------------------------------------

    def history(self, n_bars: int) -> BarHistory:
        rng = self.rng
        n, k = n_bars, 16
        s = len(self.specs)
        vol_states = np.empty((n, s), dtype=np.int64)
        trends = np.empty((n, s), dtype=np.int64)
        market_vol = np.empty(n, dtype=np.int64)
        market_trend = np.empty(n, dtype=np.int64)
        for i in range(n):
            self.vol_state, self.trend_state = self._switch(self.vol_state, self.trend_state, rng.random((4, s)))
            self._market_switch()
            vol_states[i], trends[i] = self.vol_state, self.trend_state
            market_vol[i], market_trend[i] = self.market_vol_state, self.market_trend
        sigma_m = MARKET_FACTOR_VOL * VOL_LEVELS[market_vol]
        drift_m = 0.3 * sigma_m * market_trend
        market = rng.standard_normal((n, k)) * (sigma_m / math.sqrt(k))[:, None] + (drift_m / k)[:, None]
        sigma_i = self.vol[None, :] * VOL_LEVELS[vol_states]
        drift_i = 0.3 * np.maximum(sigma_i, 0.002) * trends
        mover_bars = np.arange(n) >= n - MOVER_BARS
        drift_i = drift_i + np.where(mover_bars[:, None], self.mover[None, :], 0.0)
        idio = rng.standard_normal((n, k, s)) * (sigma_i / math.sqrt(k))[:, None, :] + (drift_i / k)[:, None, :]
        returns = self.beta[None, None, :] * market[:, :, None] + idio
        path = np.cumsum(returns.reshape(n * k, s), axis=0)
        anchor = np.log(np.array([sp.price for sp in self.specs])) + 0.03 * rng.standard_normal(s)
        path = path - path[-1] + anchor
        steps = path.reshape(n, k, s)
        ends = steps[:, -1, :]
        starts = np.vstack([ends[:1] - returns[0].sum(axis=0), ends[:-1]])
        prices = np.exp(np.concatenate([starts[:, None, :], steps], axis=1))
        bars = np.full((9, s, n), np.nan)
        bars[OPEN] = np.exp(starts).T
        bars[CLOSE] = np.exp(ends).T
        bars[HIGH] = prices.max(axis=1).T
        bars[LOW] = prices.min(axis=1).T
        bar_ret = (ends - starts) / np.maximum(np.sqrt(sigma_i**2 + (sigma_m[:, None] * self.beta) ** 2), 1e-6)
        activity = (0.6 + 0.4 * np.abs(bar_ret)) * VOL_LEVELS[vol_states] ** 0.7
        activity *= np.exp(0.3 * rng.standard_normal((n, s)))
        activity *= np.where(mover_bars[:, None], 1.0 + 250.0 * np.abs(self.mover)[None, :], 1.0)
        quote_volume = (self.quote_volume[None, :] * activity).T
        mid = (bars[OPEN] + bars[CLOSE]) / 2
        buy_ratio = np.clip(0.5 + 0.2 * np.tanh(bar_ret.T) + 0.03 * rng.standard_normal((s, n)), 0.05, 0.95)
        bars[QUOTE_VOLUME] = quote_volume
        bars[VOLUME] = quote_volume / mid
        bars[TRADES] = np.maximum(1.0, np.round(quote_volume / self._avg_trade()[:, None]))
        bars[TAKER_BUY] = bars[VOLUME] * buy_ratio
        bars[TAKER_BUY_QUOTE] = quote_volume * buy_ratio
        oi = np.empty((s, n))
        basis = np.empty((s, n))
        log_oi = np.log(8.0 * self.quote_volume / np.array([sp.price for sp in self.specs]))
        base_log_oi = log_oi.copy()
        b = np.zeros(s)
        oi_noise = rng.standard_normal((n, s))
        basis_noise = rng.standard_normal((n, s))
        for i in range(n):
            bar_return = ends[i] - starts[i]
            log_oi = log_oi + 0.5 * bar_return * np.sign(trends[i] + 0.5) + 0.01 * oi_noise[i]
            log_oi -= 0.02 * (log_oi - base_log_oi)
            b = 0.85 * b + 0.15 * (0.0015 * np.tanh(bar_return / 0.01)) + 0.0002 * basis_noise[i]
            oi[:, i] = np.exp(log_oi)
            basis[:, i] = b
        self.log_price = np.log(bars[CLOSE][:, -1])
        self.anchor = anchor
        for index, spec in enumerate(self.specs):
            if spec.listed_bars is not None and spec.listed_bars < n:
                bars[:, index, : n - spec.listed_bars] = np.nan
        return BarHistory(bars=bars, open_interest=oi, basis=basis)

    def _avg_trade(self) -> FloatArray:
        return 150.0 + self.quote_volume / 2e5

    # live ticks ---------------------------------------------------------------------------------

    def begin_bar(self) -> None:
        self.vol_state, self.trend_state = self._switch(
            self.vol_state, self.trend_state, self.rng.random((4, len(self.specs)))
        )
        self._market_switch()
        self.bars_live += 1

    def _normals(self) -> FloatArray:
        """Pre-drawn normals in chunks: one row per tick (market, idio per symbol, volume, flow, spare)."""
        if self._tick_cursor >= len(self._ticks_normals):
            self._ticks_normals = self.rng.standard_normal((4096, len(self.specs) + 3))
            self._tick_cursor = 0
        row: FloatArray = self._ticks_normals[self._tick_cursor]
        self._tick_cursor += 1
        return row

    def tick(self, frac_from: float, frac_to: float) -> TickDraw:
        dt = max(frac_to - frac_from, 1e-9)
        z = self._normals()
        s = len(self.specs)
        sigma_m = MARKET_FACTOR_VOL * VOL_LEVELS[self.market_vol_state]
        market = z[0] * sigma_m * math.sqrt(dt) + 0.3 * sigma_m * self.market_trend * dt
        sigma_i = self.vol * VOL_LEVELS[self.vol_state]
        mover = self.mover * 0.5 ** (self.bars_live / 48.0)
        reversion = -0.003 * (self.log_price - self.anchor)  # keeps week-long demos near realistic levels
        drift = (0.3 * np.maximum(sigma_i, 0.002) * self.trend_state + mover + reversion) * dt
        idio = z[1 : s + 1] * sigma_i * math.sqrt(dt) + drift
        returns = self.beta * market + idio
        self.log_price = self.log_price + returns
        zscore = returns / np.maximum(self._sigma_bar() * math.sqrt(dt), 1e-9)
        activity = (0.6 + 0.4 * np.abs(zscore)) * VOL_LEVELS[self.vol_state] ** 0.7 * math.exp(0.3 * z[s + 1])
        activity *= 1.0 + 250.0 * np.abs(mover)
        quote_volume = self.quote_volume * dt * activity
        ratio = np.clip(0.5 + 0.2 * np.tanh(zscore) + 0.03 * z[s + 2], 0.05, 0.95)
        trades = np.maximum(1.0, np.round(quote_volume / self._avg_trade()))
        return TickDraw(np.exp(self.log_price), quote_volume, ratio, trades)

    def set_price(self, index: int, price: float) -> None:
        self.log_price[index] = math.log(price)


# ------------------------------------------------------------------------------------------ replay


def _spec_from_rows(symbol: str, rows: list[list[str]]) -> SymbolSpec:
    """Filters guessed from the data when the symbol is not in the synthetic catalogue."""
    price_decimals = max(len(r[4].split(".")[1]) if "." in r[4] else 0 for r in rows[-200:])
    qty_decimals = max(len(r[5].split(".")[1]) if "." in r[5] else 0 for r in rows[-200:])
    closes = np.array([float(r[4]) for r in rows])
    returns = np.diff(np.log(closes)) if len(closes) > 1 else np.zeros(1)
    step = Decimal(1).scaleb(-qty_decimals)
    return SymbolSpec(
        symbol=symbol,
        base_asset=symbol.removesuffix("USDT"),
        price=float(closes[-1]),
        tick=str(Decimal(1).scaleb(-price_decimals)),
        step=str(step),
        min_qty=str(step),
        max_qty="100000000",
        market_max_qty="10000000",
        min_notional="5",
        vol=float(np.std(returns)) if len(returns) else 0.01,
        beta=1.0,
        quote_volume=float(np.mean([float(r[7]) for r in rows])),
    )


def _read_rows(path: Path) -> list[list[str]]:
    """12-column kline rows from a CSV (optionally with a header line) or a JSON array; see `_complete`."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return [_complete([str(v) for v in row]) for row in data if isinstance(row, list) and len(row) >= 6]
    rows: list[list[str]] = []
    with path.open(newline="") as handle:
        for row in csv.reader(handle):
            if len(row) >= 6 and row[0].strip().isdigit():
                rows.append(_complete([v.strip() for v in row]))
    return rows


def _complete(row: list[str]) -> list[str]:
    """Fill the columns some stored klines leave empty (only open time and OHLCV are kept): quote volume from
    the volume at the bar's mean price, a trade count from it, takers as half of each."""
    row = (row + [""] * 12)[:12]
    volume = float(row[5] or 0.0)
    if not row[7]:
        row[7] = repr(volume * sum(float(v) for v in row[1:5]) / 4.0)
    quote = float(row[7])
    if not row[8]:
        row[8] = str(max(1, round(quote / 500.0)) if volume > 0 else 0)
    if not row[9]:
        row[9] = repr(volume / 2.0)
    if not row[10]:
        row[10] = repr(quote / 2.0)
    return row


class ReplaySource:
    """Replays stored kline rows (Binance's 12-column format) instead of a synthetic path.

    All symbols share one time grid (gaps are filled flat with no volume; a symbol whose data starts late
    counts as listed then). The first bars become history; the rest are walked through tick by tick
    (open -> low -> high -> close for up bars, open -> high -> low -> close for down bars). At the end the
    replay starts over, scaled so that prices continue from where they are.
    """

    def __init__(self, rows_by_symbol: dict[str, list[list[str]]], interval: str) -> None:
        if not rows_by_symbol:
            raise ValueError("a replay needs at least one symbol with kline rows")
        step = interval_ms(interval)
        catalogue = {spec.symbol: spec for spec in CATALOGUE}
        symbols = sorted(rows_by_symbol)
        starts = [int(rows_by_symbol[s][0][0]) for s in symbols]
        ends = [int(rows_by_symbol[s][-1][0]) for s in symbols]
        grid = np.arange(min(starts), max(ends) + step, step, dtype=np.int64)
        self.bars = np.full((9, len(symbols), len(grid)), np.nan)
        self._first_bar: dict[int, int] = {}
        specs: list[SymbolSpec] = []
        for index, symbol in enumerate(symbols):
            rows = rows_by_symbol[symbol]
            data = np.array([[float(r[c]) for c in (0, 1, 2, 3, 4, 5, 7, 8, 9, 10)] for r in rows])
            positions = ((data[:, 0].astype(np.int64) - grid[0]) // step).astype(np.int64)
            self.bars[:, index, positions] = data[:, 1:].T
            self._fill_gaps(index, int(positions[0]))
            known = catalogue.get(symbol)
            spec = known if known is not None else _spec_from_rows(symbol, rows)
            specs.append(replace(spec, listed_bars=None, mover=0.0, price=float(data[-1, 4])))
            self._first_bar[index] = int(positions[0])
        self.specs = tuple(specs)
        self.grid = grid
        self.cursor = 0
        self.scale = np.ones(len(symbols))
        self.override = np.full(len(symbols), np.nan)
        self.live_start = 0

    def _fill_gaps(self, index: int, first: int) -> None:
        row = self.bars[:, index, :]
        for i in range(first + 1, row.shape[1]):
            if np.isnan(row[CLOSE, i]):
                row[OPEN : CLOSE + 1, i] = row[CLOSE, i - 1]
                row[VOLUME:, i] = 0.0

    @staticmethod
    def from_directory(directory: Path, interval: str) -> ReplaySource:
        """Load the <SYMBOL>[-<interval>][-...].csv / .json files of a directory (or of its `klines/` folder,
        Binance's public-data layout) whose interval, when named, is the one served (BTCUSDT-1h-2025-01.csv).

        The replay starts where half the symbols have data (older bars of the first-listed would otherwise
        be replayed for years before the others appear); later symbols count as listed when their data starts.
        """
        if (directory / "klines").is_dir():
            directory = directory / "klines"
        rows: dict[str, dict[int, list[str]]] = {}
        for path in sorted(directory.iterdir()):
            if path.suffix not in (".csv", ".json"):
                continue
            parts = path.stem.split("-")
            if len(parts) > 1 and parts[1] in KLINE_INTERVALS and parts[1] != interval:
                continue
            symbol = parts[0].split("_")[0].upper()
            for row in _read_rows(path):
                rows.setdefault(symbol, {})[int(row[0])] = row
        ordered = {s: [r[k] for k in sorted(r)] for s, r in rows.items() if r}
        if len(ordered) > 1:
            start = int(np.median([int(r[0][0]) for r in ordered.values()]))
            ordered = {s: [row for row in r if int(row[0]) >= start] or r[-1:] for s, r in ordered.items()}
        return ReplaySource(ordered, interval)

    def history(self, n_bars: int) -> BarHistory:
        total = self.bars.shape[2]
        split = max(1, min(n_bars, total - 1))
        self.live_start = split
        self.cursor = split  # the market's first forming bar is the first replayed one
        bars = self.bars[:, :, :split].copy()
        for index, first in self._first_bar.items():
            bars[:, index, : min(first, split)] = np.nan
        closes = np.nan_to_num(bars[CLOSE], nan=0.0)
        oi = np.where(closes > 0, 8.0 * np.nan_to_num(bars[QUOTE_VOLUME]).mean(axis=1, keepdims=True), 0.0)
        oi = oi / np.where(closes > 0, closes, 1.0)
        return BarHistory(bars=bars, open_interest=oi, basis=np.zeros_like(closes))

    def begin_bar(self) -> None:
        total = self.bars.shape[2]
        self.cursor += 1
        if self.cursor >= total:
            last_close = self._row(total - 1)[CLOSE]
            self.cursor = self.live_start
            first_open = self.bars[OPEN, :, self.cursor]
            ok = np.isfinite(first_open) & (first_open > 0)
            self.scale = np.where(ok, self.scale * last_close / np.where(ok, first_open, 1.0), self.scale)
        self.override[:] = np.nan

    def _row(self, position: int) -> FloatArray:
        row = self.bars[:, :, position].copy()
        row[OPEN : CLOSE + 1] *= self.scale
        cleaned: FloatArray = np.nan_to_num(row, nan=0.0)
        return cleaned

    def tick(self, frac_from: float, frac_to: float) -> TickDraw:
        row = self._row(min(self.cursor, self.bars.shape[2] - 1))
        o, h, low, c = row[OPEN], row[HIGH], row[LOW], row[CLOSE]
        up = c >= o
        first = np.where(up, low, h)
        second = np.where(up, h, low)
        t = min(max(frac_to, 0.0), 1.0)
        if t <= 0.25:
            price = o + (first - o) * (t / 0.25)
        elif t <= 0.7:
            price = first + (second - first) * ((t - 0.25) / 0.45)
        else:  # reach the close before the bar ends, so one-second ticks reproduce O, H, L and C exactly
            price = second + (c - second) * min(1.0, (t - 0.7) / 0.25)
        price = np.where(np.isnan(self.override), price, self.override)
        dt = max(frac_to - frac_from, 0.0)
        volume = row[VOLUME]
        ratio = np.where(volume > 0, row[TAKER_BUY] / np.where(volume > 0, volume, 1.0), 0.5)
        return TickDraw(
            price=np.maximum(price, 1e-12),
            quote_volume=row[QUOTE_VOLUME] * dt,
            taker_buy_ratio=np.clip(ratio, 0.0, 1.0),
            trades=np.round(row[TRADES] * dt),
        )

    def set_price(self, index: int, price: float) -> None:
        self.override[index] = price


# ------------------------------------------------------------------------------------------ market


@dataclass(frozen=True, slots=True)
class Quote:
    """A symbol's prices at one moment, on the grid, as the engine needs them."""

    symbol: str
    last: Decimal
    mark: Decimal
    index: Decimal
    bid: Decimal
    ask: Decimal
    time_ms: int


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    qty: Decimal


@dataclass(slots=True)
class TickInfo:
    """What happened in one tick, for the callbacks (engine triggers, stream pushes)."""

    time_ms: int
    seconds: float  # length of the tick
    closed_bar_open_ms: int | None = None  # a bar closed at this tick (its open time)
    funding_time_ms: int | None = None  # a funding settlement happened at this tick
    force_orders: list[dict[str, Any]] = field(default_factory=list)
    symbols: tuple[int, ...] | None = None  # only these symbols moved (set_price); None = all
    book_only: bool = False  # only the books' resting quantities changed (sub-second update): prices did not


@dataclass(frozen=True, slots=True)
class Trade:
    """One aggregate trade on a symbol's tape."""

    agg_id: int
    first_id: int
    last_id: int
    time_ms: int
    price: float
    qty: float
    buyer_maker: bool


@dataclass(frozen=True, slots=True)
class BookArrays:
    """One symbol's whole book, best first: prices in ticks, quantities in steps (integers diff exactly)."""

    update_id: int
    bid_ticks: IntArray
    bid_steps: IntArray
    ask_ticks: IntArray
    ask_steps: IntArray


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _top(book: BookArrays, levels: int) -> BookArrays:
    """The best `levels` of a deeper book."""
    return BookArrays(
        book.update_id, book.bid_ticks[:levels], book.bid_steps[:levels], book.ask_ticks[:levels],
        book.ask_steps[:levels],
    )  # fmt: skip


UIntArray = npt.NDArray[np.uint64]


def _hash(keys: IntArray | UIntArray) -> UIntArray:
    """splitmix64 of each key (uint64 arithmetic wraps): a stateless, reproducible draw per book level."""
    z: UIntArray = keys.astype(np.uint64) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _uniform(keys: UIntArray) -> FloatArray:
    values: FloatArray = (_hash(keys) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return values


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


class Market:
    """The market state: bars, prices, funding, open interest, book; advanced tick by tick."""

    def __init__(
        self,
        source: PriceSource,
        *,
        interval: str = "1h",
        start_ms: int,
        seed: int = 7,
        history_bars: int = 1500,
        max_bars: int = 3000,
    ) -> None:
        if history_bars < 1:
            raise ValueError("history_bars must be at least 1")
        self.source = source
        self.specs = source.specs
        self.symbols = tuple(spec.symbol for spec in self.specs)
        self.index = {symbol: i for i, symbol in enumerate(self.symbols)}
        self.interval = interval
        self.interval_ms = interval_ms(interval)
        self.seed = seed
        self.max_bars = max(max_bars, history_bars + 10)
        self.ticks_per_bar = self.interval_ms / 1000.0
        self.market_hour_ms = min(self.interval_ms, HOUR_MS)  # every bar moves like an hour: a bar below it is one
        self.funding_period_ms = FUNDING_PERIOD_HOURS * self.market_hour_ms
        s = len(self.specs)
        self.tick_size = np.array([float(spec.tick_size) for spec in self.specs])
        self.step_size = np.array([float(spec.step_size) for spec in self.specs])
        self._rng = np.random.default_rng([seed, 1])
        self._vol_scale = np.array([max(spec.vol, 0.004) / 0.01 for spec in self.specs])
        self.now_ms = start_ms - start_ms % 1000
        bar_open = self.now_ms - self.now_ms % self.interval_ms
        history = source.history(history_bars)
        n = history.bars.shape[2]
        self.open_times = bar_open - self.interval_ms * np.arange(n, 0, -1, dtype=np.int64)
        self.bars = history.bars.copy()
        grid = self.tick_size[None, :, None]
        self.bars[OPEN : CLOSE + 1] = np.maximum(np.round(self.bars[OPEN : CLOSE + 1] / grid), 1.0) * grid
        self.listed_ms = np.full(s, 0, dtype=np.int64)
        for i in range(s):
            listed = np.flatnonzero(np.isfinite(history.bars[CLOSE, i]))
            self.listed_ms[i] = self.open_times[listed[0]] if len(listed) else bar_open
        # A contract whose history starts with the first bar was listed before it: its onboard date is a market year
        # back, so a 1m market (1500 bars) does not make everything "new"; a newer one was listed at its first bar.
        complete = np.isfinite(history.bars[CLOSE, :, 0])
        old = self.now_ms - ONBOARD_AGE_HOURS * self.market_hour_ms
        self.onboard_ms = np.where(complete, np.minimum(self.listed_ms, old), self.listed_ms)
        closes = self.bars[CLOSE][:, -1]
        self.price = np.where(np.isfinite(closes), closes, np.array([spec.price for spec in self.specs]))
        self.last = self._on_grid(self.price)
        self.basis = history.basis[:, -1].copy()
        self.bar_basis = np.stack([history.basis, history.basis])  # (last vs index, mark vs index) at each close
        self.basis_ema = self.basis.copy()
        self.premium_avg = self.basis.copy()
        self.open_interest = history.open_interest[:, -1].copy()
        self._oi_base = np.log(np.maximum(history.open_interest.mean(axis=1), 1e-9))
        self.taker_was_buyer = np.ones(s, dtype=bool)
        self.agg_trade_id = np.full(s, 1_000_000, dtype=np.int64)
        self.trade_id = np.full(s, 5_000_000, dtype=np.int64)
        self.last_trade_qty = np.zeros(s)
        self.book_id = np.full(s, BOOK_ID_START, dtype=np.int64)  # per symbol, like Binance's update ids
        self.book_time_ms = self.now_ms  # time of the last book update (sub-second in realtime mode)
        self._book_cache: dict[int, BookArrays] = {}  # the book changes only with its id: computed once per id
        self.forming = np.zeros((9, s))
        self.bar_open_ms = bar_open
        self._start_bar(bar_open)
        self.force_orders: deque[dict[str, Any]] = deque(maxlen=FORCE_ORDERS_KEPT)
        self.tape: list[deque[Trade]] = [deque(maxlen=TAPE_KEPT) for _ in range(s)]
        self.funding_history: list[deque[tuple[int, float, float]]] = [deque(maxlen=1000) for _ in range(s)]
        self._seed_funding_history(history)
        self._oi_times, self._oi_values = self._seed_oi_history(history)
        elapsed = (self.now_ms - bar_open) / 1000.0
        if elapsed > 0:
            self._catch_up(elapsed)

    # ---------------------------------------------------------------------------------- setup

    def _on_grid(self, prices: FloatArray) -> FloatArray:
        snapped: FloatArray = np.maximum(np.round(prices / self.tick_size), 1.0) * self.tick_size
        return snapped

    def _seed_funding_history(self, history: BarHistory) -> None:
        times = self.open_times + self.interval_ms
        for position, t in enumerate(times):
            if t % self.funding_period_ms == 0:
                rates = self._funding_rates(history.basis[:, position])
                for i in range(len(self.specs)):
                    close = history.bars[CLOSE, i, position]
                    if np.isfinite(close):
                        self.funding_history[i].append((int(t), float(rates[i]), float(close)))

    def _seed_oi_history(self, history: BarHistory) -> tuple[deque[int], list[deque[float]]]:
        close_times = self.open_times + self.interval_ms
        first = max(int(close_times[0]), self.now_ms - OI_HISTORY_MS)
        first += (-first) % OI_SAMPLE_MS
        grid = np.arange(first, self.now_ms + 1, OI_SAMPLE_MS, dtype=np.int64)
        capacity = OI_HISTORY_MS // OI_SAMPLE_MS + 1
        times: deque[int] = deque((int(t) for t in grid), maxlen=capacity)
        values: list[deque[float]] = []
        for i in range(len(self.specs)):
            series = np.interp(grid, close_times, history.open_interest[i])
            listed = grid >= self.listed_ms[i]
            values.append(
                deque((float(v) if ok else math.nan for v, ok in zip(series, listed, strict=True)), maxlen=capacity)
            )
        return times, values

    def _start_bar(self, open_ms: int) -> None:
        self.bar_open_ms = open_ms
        self.forming[OPEN : CLOSE + 1] = self.last
        self.forming[VOLUME:] = 0.0

    def _catch_up(self, seconds: float) -> None:
        """Fill the part of the forming bar that elapsed before the market started, in coarse steps."""
        steps = max(1, min(60, int(seconds)))
        start = self.now_ms - round(seconds * 1000)
        self.now_ms = start
        for k in range(steps):
            target = start + round(seconds * 1000 * (k + 1) / steps)
            self._step((target - self.now_ms) / 1000.0)

    # ---------------------------------------------------------------------------------- ticking

    def advance(
        self, seconds: float, on_tick: Callable[[TickInfo], None] | None = None, *, tick_s: float = 1.0
    ) -> None:
        """Move market time forward in ticks of `tick_s` seconds: one second is how the live market moves; a
        coarser tick moves a long way for a fraction of the work (each tick still runs the triggers and pushes
        the streams). A gap beyond six hours is caught up in ticks of at least a minute."""
        if not 1.0 <= tick_s <= self.ticks_per_bar:
            raise ValueError(f"a tick must last between 1 s and one bar ({self.ticks_per_bar:g} s)")
        whole = int(seconds)
        fine = min(whole, 6 * 3600)
        coarse_seconds = whole - fine
        if coarse_seconds > 0:
            step = max(min(60.0, self.ticks_per_bar), tick_s)
            count = math.ceil(coarse_seconds / step)
            for k in range(count):
                info = self._step(min(step, coarse_seconds - k * step))
                if on_tick is not None:
                    on_tick(info)
        count = math.ceil(fine / tick_s)
        for k in range(count):
            info = self._step(min(tick_s, fine - k * tick_s))
            if on_tick is not None:
                on_tick(info)

    def advance_to(self, time_ms: int, on_tick: Callable[[TickInfo], None] | None = None) -> None:
        if time_ms >= self.now_ms + 1000:
            self.advance((time_ms - self.now_ms) / 1000.0, on_tick)

    def _step(self, seconds: float) -> TickInfo:
        t_next = self.now_ms + round(seconds * 1000)
        info = TickInfo(time_ms=t_next, seconds=seconds)
        next_open = t_next - t_next % self.interval_ms
        frac_from = (self.now_ms - self.bar_open_ms) / self.interval_ms
        if next_open != self.bar_open_ms:
            info.closed_bar_open_ms = self.bar_open_ms
            self._close_bar()
            self.source.begin_bar()
            self._start_bar(next_open)
            frac_from = 0.0
        frac_to = (t_next - self.bar_open_ms) / self.interval_ms
        draw = self.source.tick(frac_from, frac_to)
        previous = self.price
        self.price = draw.price
        self.last = self._on_grid(self.price)
        returns = np.log(self.price / previous)
        dt = seconds / self.ticks_per_bar
        z = self._rng.standard_normal((3, len(self.specs)))
        sigma_tick = math.sqrt(dt) * 0.01
        self.basis += -self.basis * min(1.0, 0.3 * dt * 24) + 0.0002 * math.sqrt(dt) * z[0] + 0.15 * returns
        self.basis = np.clip(self.basis, -0.01, 0.01)
        ema = min(1.0, seconds / 60.0)
        self.basis_ema += ema * (self.basis - self.basis_ema)
        period_weight = min(1.0, seconds * 1000 / self.funding_period_ms)
        self.premium_avg += period_weight * (self.basis_ema - self.premium_avg)
        self.open_interest *= np.exp(
            0.5 * returns * np.sign(returns + 1e-12) * 0.5
            + 0.002 * math.sqrt(dt) * z[1]
            - 0.02 * dt * (np.log(np.maximum(self.open_interest, 1e-9)) - self._oi_base)
        )
        quote_volume = draw.quote_volume
        volume = quote_volume / self.price
        self.taker_was_buyer = self._rng.random(len(self.specs)) < draw.taker_buy_ratio
        self.last_trade_qty = volume
        f = self.forming
        f[HIGH] = np.maximum(f[HIGH], self.last)
        f[LOW] = np.minimum(f[LOW], self.last)
        f[CLOSE] = self.last
        f[VOLUME] += volume
        f[QUOTE_VOLUME] += quote_volume
        f[TRADES] += draw.trades
        f[TAKER_BUY] += volume * draw.taker_buy_ratio
        f[TAKER_BUY_QUOTE] += quote_volume * draw.taker_buy_ratio
        self.agg_trade_id += 1
        first_ids = self.trade_id + 1
        self.trade_id += draw.trades.astype(np.int64)
        self._record_trades(t_next, first_ids, range(len(self.specs)))
        self.book_id += 1
        self.book_time_ms = max(self.book_time_ms, t_next)
        if (self.now_ms // self.funding_period_ms) != (t_next // self.funding_period_ms):
            info.funding_time_ms = t_next - t_next % self.funding_period_ms
            rates = self.funding_rates()
            marks = self.mark_prices()
            for i in range(len(self.specs)):
                self.funding_history[i].append((info.funding_time_ms, float(rates[i]), float(marks[i])))
            self.premium_avg[:] = self.basis_ema
        if (self.now_ms // OI_SAMPLE_MS) != (t_next // OI_SAMPLE_MS):
            self._oi_times.append(t_next - t_next % OI_SAMPLE_MS)
            for i, series in enumerate(self._oi_values):
                series.append(float(self.open_interest[i]))
        shock = np.abs(returns) / np.maximum(sigma_tick * self._vol_scale, 1e-9)
        self._liquidations(info, t_next, seconds, shock, returns, z[2])
        self.now_ms = t_next
        return info

    def _liquidations(
        self, info: TickInfo, t_ms: int, seconds: float, shock: FloatArray, returns: FloatArray, z: FloatArray
    ) -> None:
        probability = np.minimum(1.0, 0.0004 * seconds * (1.0 + 20.0 * (shock > 2.5)))
        hits = np.flatnonzero(self._rng.random(len(self.specs)) < probability)
        for i in hits:
            if t_ms < self.listed_ms[i]:
                continue
            spec = self.specs[i]
            side = "SELL" if returns[i] < 0 else "BUY"
            notional = spec.quote_volume * 2e-4 * math.exp(0.8 * z[i])
            qty = max(round(notional / self.price[i] / self.step_size[i]), 1) * self.step_size[i]
            slip = -0.002 if side == "SELL" else 0.002
            price = max(round(self.price[i] * (1 + slip) / self.tick_size[i]), 1) * self.tick_size[i]
            spec_q, spec_p = spec.quantity_precision, spec.price_precision
            event = {
                "e": "forceOrder",
                "E": t_ms,
                "o": {
                    "s": spec.symbol,
                    "S": side,
                    "o": "LIMIT",
                    "f": "IOC",
                    "q": _fmt(qty, spec_q),
                    "p": _fmt(price, spec_p),
                    "ap": _fmt(float(self.last[i]), spec_p),
                    "X": "FILLED",
                    "l": _fmt(qty, spec_q),
                    "z": _fmt(qty, spec_q),
                    "T": t_ms,
                },
            }
            self.force_orders.append(event)
            info.force_orders.append(event)

    def _close_bar(self) -> None:
        """Append the forming bar to the closed bars (dropping the oldest beyond max_bars)."""
        bar = self.forming.copy()
        not_listed = self.bar_open_ms < self.listed_ms
        bar[:, not_listed] = np.nan
        self.bars = np.concatenate([self.bars, bar[:, :, None]], axis=2)
        self.open_times = np.append(self.open_times, self.bar_open_ms)
        basis = np.stack([self.basis, self.basis_ema])[:, :, None]
        self.bar_basis = np.concatenate([self.bar_basis, basis], axis=2)
        if self.bars.shape[2] > self.max_bars:
            drop = self.bars.shape[2] - self.max_bars
            self.bars = self.bars[:, :, drop:]
            self.open_times = self.open_times[drop:]
            self.bar_basis = self.bar_basis[:, :, drop:]

    def _record_trades(self, time_ms: int, first_ids: IntArray, symbols: Iterable[int]) -> None:
        """One aggregate trade per listed symbol on the tape (what aggTrade pushes, kept for REST)."""
        for i in symbols:
            if self.listed_ms[i] > time_ms:
                continue
            step = float(self.step_size[i])
            qty = max(round(float(self.last_trade_qty[i]) / step), 1) * step
            trade = Trade(
                agg_id=int(self.agg_trade_id[i]),
                first_id=min(int(first_ids[i]), int(self.trade_id[i])),
                last_id=int(self.trade_id[i]),
                time_ms=time_ms,
                price=float(self.last[i]),
                qty=qty,
                buyer_maker=not bool(self.taker_was_buyer[i]),
            )
            self.tape[i].append(trade)

    def agg_trades(
        self, symbol: str, *, from_id: int | None, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """GET /fapi/v1/aggTrades rows from the kept tape (the last TAPE_KEPT per symbol)."""
        i = self.index[symbol]
        rows = [
            t
            for t in self.tape[i]
            if (from_id is None or t.agg_id >= from_id)
            and (start_ms is None or t.time_ms >= start_ms)
            and (end_ms is None or t.time_ms <= end_ms)
        ]
        rows = rows[:limit] if from_id is not None or start_ms is not None else rows[-limit:]
        spec = self.specs[i]
        p, q = spec.price_precision, spec.quantity_precision
        return [
            {"a": t.agg_id, "p": _fmt(t.price, p), "q": _fmt(t.qty, q), "f": t.first_id, "l": t.last_id,
             "T": t.time_ms, "m": t.buyer_maker}
            for t in rows
        ]  # fmt: skip

    def recent_trades(self, symbol: str, limit: int) -> list[dict[str, Any]]:
        """GET /fapi/v1/trades: the most recent trades (one per aggregate trade on the sim's tape)."""
        i = self.index[symbol]
        spec = self.specs[i]
        p, q = spec.price_precision, spec.quantity_precision
        return [
            {"id": t.last_id, "price": _fmt(t.price, p), "qty": _fmt(t.qty, q), "quoteQty": _fmt(t.price * t.qty, 8),
             "time": t.time_ms, "isBuyerMaker": t.buyer_maker}
            for t in list(self.tape[i])[-limit:]
        ]  # fmt: skip

    def add_force_order(self, event: dict[str, Any]) -> None:
        """Record a liquidation produced by the engine so it shows on the forceOrder streams."""
        self.force_orders.append(event)

    def set_price(self, symbol: str, last: Decimal, mark: Decimal | None = None) -> TickInfo:
        """Put a symbol's last (and mark) price somewhere; the synthetic path continues from there."""
        i = self.index[symbol]
        tick = self.specs[i].tick_size
        last = (last / tick).to_integral_value() * tick
        if last <= 0:
            raise ValueError("price must be positive")
        value = float(last)
        self.price[i] = value
        self.last[i] = value
        self.source.set_price(i, value)
        self.basis[i] = 0.0
        self.basis_ema[i] = 0.0 if mark is None else float(mark) / value - 1.0
        f = self.forming
        f[HIGH, i] = max(f[HIGH, i], value)
        f[LOW, i] = min(f[LOW, i], value)
        f[CLOSE, i] = value
        self.agg_trade_id[i] += 1
        self.trade_id[i] += 1
        self._record_trades(self.now_ms, self.trade_id.copy(), (i,))
        self.book_id[i] += 1
        return TickInfo(time_ms=self.now_ms, seconds=0.0, symbols=(i,))

    def refresh_books(self, time_ms: int) -> TickInfo:
        """A sub-second book update (realtime mode, every 100 ms): resting quantities change, prices do not."""
        self.book_id += 1
        self.book_time_ms = max(self.book_time_ms, time_ms)
        return TickInfo(time_ms=self.book_time_ms, seconds=0.0, book_only=True)

    # ---------------------------------------------------------------------------------- prices

    def mark_prices(self) -> FloatArray:
        index = self.price / (1.0 + self.basis)
        return index * (1.0 + self.basis_ema)

    def index_prices(self) -> FloatArray:
        return self.price / (1.0 + self.basis)

    def funding_rates(self) -> FloatArray:
        return self._funding_rates(self.premium_avg)

    @staticmethod
    def _funding_rates(premium: FloatArray) -> FloatArray:
        """Binance's formula: premium + clamp(interest - premium, +-0.05 %), capped at +-0.75 %."""
        interest = 0.0001
        return np.clip(premium + np.clip(interest - premium, -0.0005, 0.0005), -0.0075, 0.0075)

    def next_funding_ms(self) -> int:
        return self.now_ms - self.now_ms % self.funding_period_ms + self.funding_period_ms

    def mark_decimals(self, i: int) -> int:
        return max(8, self.specs[i].price_precision + 2)

    def _decimal(self, value: float, decimals: int) -> Decimal:
        return Decimal(_fmt(value, decimals))

    def grid_decimal(self, i: int, value: float) -> Decimal:
        tick = self.specs[i].tick_size
        return Decimal(round(value / float(tick))) * tick

    def quote(self, symbol: str) -> Quote:
        i = self.index[symbol]
        last = self.grid_decimal(i, float(self.last[i]))
        spacing = self._spacing(i)
        if self.taker_was_buyer[i]:
            ask, bid = last, last - spacing
        else:
            bid, ask = last, last + spacing
        decimals = self.mark_decimals(i)
        return Quote(
            symbol=symbol,
            last=last,
            mark=self._decimal(float(self.mark_prices()[i]), decimals),
            index=self._decimal(float(self.index_prices()[i]), decimals),
            bid=max(bid, self.specs[i].tick_size),
            ask=ask,
            time_ms=self.now_ms,
        )

    def _spacing(self, i: int) -> Decimal:
        tick = self.specs[i].tick_size
        ticks = max(1, round(float(self.last[i]) * 0.00001 / float(tick)))
        return tick * ticks

    def book_arrays(self, symbol: str, levels: int = BOOK_LEVELS) -> BookArrays:
        """The best `levels` of the book (at most BOOK_LEVELS per side), a pure function of the market state.

        A level's quantity depends on its price, its distance from the top and a draw that is redrawn every
        BOOK_REFRESH updates (staggered by price), so an update changes some levels, not all, and the top
        `levels` of any call agree with a deeper call's.
        """
        i = self.index[symbol]
        levels = max(1, min(levels, BOOK_LEVELS))
        update_id = int(self.book_id[i])
        cached = self._book_cache.get(i)
        if cached is not None and cached.update_id == update_id and len(cached.ask_ticks) >= levels:
            return cached if len(cached.ask_ticks) == levels else _top(cached, levels)
        spec = self.specs[i]
        tick = float(spec.tick_size)
        last = float(self.last[i])
        last_ticks = round(last / tick)  # the same grid arithmetic as `quote`, without Decimals
        spacing = max(1, round(last * 0.00001 / tick))
        bid, ask = (last_ticks - spacing, last_ticks) if self.taker_was_buyer[i] else (last_ticks, last_ticks + spacing)
        k = np.arange(levels, dtype=np.int64)
        bid_ticks = max(bid, 1) - spacing * k
        bid_ticks = bid_ticks[bid_ticks > 0]
        ask_ticks = ask + spacing * k
        per_level = spec.quote_volume * 5e-4 / max(last, 1e-12) / float(spec.step_size)
        imbalance = 1.0 + 0.3 * (1.0 if self.taker_was_buyer[i] else -1.0)
        salt = (self.seed * 1_000_003 + i) * 4
        nb = len(bid_ticks)
        steps = self._level_steps(
            np.concatenate([bid_ticks, ask_ticks]),
            np.concatenate([np.full(nb, salt + 1), np.full(levels, salt + 2)]),
            np.concatenate([k[:nb], k]),
            update_id,
            np.concatenate([np.full(nb, per_level * imbalance), np.full(levels, per_level / imbalance)]),
        )
        book = BookArrays(update_id, bid_ticks, steps[:nb], ask_ticks, steps[nb:])
        self._book_cache[i] = book
        return book

    @staticmethod
    def _level_steps(
        ticks: IntArray, salts: IntArray, depth: IntArray, update_id: int, per_level: FloatArray
    ) -> IntArray:
        """Resting quantity (in steps) at each price: both sides in one pass, each side with its own salt."""
        keyed: UIntArray = ticks.astype(np.uint64) ^ salts.astype(np.uint64)
        phase = (_hash(keyed) % np.uint64(BOOK_REFRESH)).astype(np.int64)
        epoch = ((update_id + phase) // BOOK_REFRESH).astype(np.uint64)
        draw = _uniform(_hash(keyed * np.uint64(1_000_003)) ^ epoch)
        size = per_level * (1.0 + 0.08 * depth) * np.exp(1.4 * (draw - 0.5))
        steps: IntArray = np.maximum(1, np.round(size)).astype(np.int64)
        return steps

    def book(self, symbol: str, levels: int = BOOK_LEVELS) -> tuple[list[BookLevel], list[BookLevel]]:
        """Bids and asks, best first, as Decimals on the symbol's grid."""
        spec = self.specs[self.index[symbol]]
        arrays = self.book_arrays(symbol, levels)
        tick, step = spec.tick_size, spec.step_size
        pairs = zip(arrays.bid_ticks.tolist(), arrays.bid_steps.tolist(), strict=True)
        bids = [BookLevel(p * tick, q * step) for p, q in pairs]
        pairs = zip(arrays.ask_ticks.tolist(), arrays.ask_steps.tolist(), strict=True)
        asks = [BookLevel(p * tick, q * step) for p, q in pairs]
        return bids, asks

    # ---------------------------------------------------------------------------------- queries

    def listing_ms(self, symbol: str) -> int:
        return int(self.listed_ms[self.index[symbol]])

    def onboard_date_ms(self, symbol: str) -> int:
        """exchangeInfo's onboardDate: the listing time of a new contract, a year back for the others."""
        return int(self.onboard_ms[self.index[symbol]])

    def contract_info_event(self, symbol: str) -> dict[str, Any]:
        """Binance's contractInfo push (sent when a contract's status changes: here, when it gets listed)."""
        spec = self.specs[self.index[symbol]]
        return {
            "e": "contractInfo",
            "E": self.now_ms,
            "s": symbol,
            "ps": symbol,
            "ct": spec.contract_type,
            "dt": spec.delivery_date_ms,
            "ot": self.onboard_date_ms(symbol),
            "cs": "TRADING" if self.is_listed(symbol) else "PENDING_TRADING",
        }

    def is_listed(self, symbol: str) -> bool:
        return bool(self.listed_ms[self.index[symbol]] <= self.now_ms)

    def _group_opens(self, times: IntArray, interval: str) -> IntArray:
        """The open time of the `interval` bar each base bar belongs to (Binance: weeks from Monday, months
        by the calendar)."""
        if interval == "1M":
            months = times.astype("datetime64[ms]").astype("datetime64[M]")
            opens: IntArray = months.astype("datetime64[ms]").astype(np.int64)
            return opens
        step = interval_ms(interval)
        offset = 4 * 86_400_000 if interval == "1w" else 0  # 1970-01-01 was a Thursday
        grouped: IntArray = (times - offset) // step * step + offset
        return grouped

    def check_interval(self, interval: str) -> None:
        """ValueError unless bars at `interval` can be built from the simulated bars (equal or coarser, whole)."""
        if interval not in KLINE_INTERVALS:
            raise ValueError(f"unknown interval {interval!r}")
        if interval == "1M":
            if 86_400_000 % self.interval_ms:
                raise ValueError(f"months cannot be built from {self.interval} bars")
            return
        step = interval_ms(interval)
        if step < self.interval_ms or step % self.interval_ms:
            raise ValueError(f"interval {interval} cannot be built from the simulated {self.interval} bars")

    def close_ms(self, open_ms: int, interval: str) -> int:
        if interval == "1M":
            month = np.datetime64(open_ms, "ms").astype("datetime64[M]") + 1
            return int(month.astype("datetime64[ms]").astype(np.int64)) - 1
        return open_ms + interval_ms(interval) - 1

    def bars_for(
        self, symbol: str, interval: str, *, since_ms: int | None = None, price: str = "last"
    ) -> tuple[IntArray, FloatArray]:
        """Open times and bars (fields, n) of a symbol at `interval`, forming bar last, from `since_ms` on.

        Coarser intervals are aggregated from the simulated bars; finer ones raise ValueError (the caller
        answers -1120). `price` picks the series: last, mark, index or premium (the premium index).
        """
        self.check_interval(interval)
        i = self.index[symbol]
        times = np.append(self.open_times, self.bar_open_ms)
        bars = np.concatenate([self.bars[:, i, :], self.forming[:, i : i + 1]], axis=1)
        if price != "last":
            bars = self._derived(i, bars, price)
        keep = times >= self.listed_ms[i]
        if since_ms is not None:
            keep &= times >= self._group_opens(np.array([since_ms], dtype=np.int64), interval)[0]
        times, bars = times[keep], bars[:, keep]
        if len(times) == 0 or interval == self.interval:
            return times, bars
        groups = self._group_opens(times, interval)
        starts = np.concatenate([[0], np.flatnonzero(np.diff(groups)) + 1]).astype(np.int64)
        ends = np.append(starts[1:], len(times))
        out = np.empty((9, len(starts)))
        out[OPEN] = bars[OPEN, starts]
        out[HIGH] = np.fmax.reduceat(bars[HIGH], starts)
        out[LOW] = np.fmin.reduceat(bars[LOW], starts)
        out[CLOSE] = bars[CLOSE, ends - 1]
        out[VOLUME:] = np.add.reduceat(bars[VOLUME:], starts, axis=1)
        return groups[starts], out

    def _derived(self, i: int, bars: FloatArray, price: str) -> FloatArray:
        """Mark, index or premium-index bars from the traded bars and the basis recorded at each close."""
        basis = np.append(self.bar_basis[0, i], self.basis[i])
        premium = np.append(self.bar_basis[1, i], self.basis_ema[i])
        out = bars.copy()
        if price == "premium":
            opens = np.append(premium[:1], premium[:-1])
            out[OPEN], out[CLOSE] = opens, premium
            out[HIGH], out[LOW] = np.fmax(opens, premium), np.fmin(opens, premium)
        else:
            ratio = 1.0 / (1.0 + basis)
            if price == "mark":
                ratio = ratio * (1.0 + premium)
            out[OPEN : CLOSE + 1] = bars[OPEN : CLOSE + 1] * ratio
        out[VOLUME:] = np.where(np.isfinite(bars[VOLUME:]), 0.0, np.nan)
        out[TRADES] = np.where(np.isfinite(bars[TRADES]), self.interval_ms // 1000, np.nan)
        return out

    def kline_rows(
        self,
        symbol: str,
        interval: str,
        *,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        price: str = "last",
    ) -> list[list[Any]]:
        """Binance's 12-column rows with its paging rules: startTime/endTime bound open times."""
        times, bars = self.bars_for(symbol, interval, price=price)
        mask = np.ones(len(times), dtype=bool)
        if start_ms is not None:
            mask &= times >= start_ms
        if end_ms is not None:
            mask &= times <= end_ms
        picked = np.flatnonzero(mask)
        picked = picked[:limit] if start_ms is not None else picked[-limit:]
        decimals = 8 if price == "premium" else None
        return [
            self._row(symbol, int(times[j]), bars[:, j], self.close_ms(int(times[j]), interval), decimals)
            for j in picked
        ]

    def _row(self, symbol: str, open_ms: int, bar: FloatArray, close_ms: int, decimals: int | None = None) -> list[Any]:
        spec = self.specs[self.index[symbol]]
        p, q = decimals or spec.price_precision, spec.quantity_precision
        return [
            open_ms,
            _fmt(bar[OPEN], p),
            _fmt(bar[HIGH], p),
            _fmt(bar[LOW], p),
            _fmt(bar[CLOSE], p),
            _fmt(bar[VOLUME], q),
            close_ms,
            _fmt(bar[QUOTE_VOLUME], 8),
            int(bar[TRADES]),
            _fmt(bar[TAKER_BUY], q),
            _fmt(bar[TAKER_BUY_QUOTE], 8),
            "0",
        ]

    def kline_event(
        self, symbol: str, interval: str | None = None, *, closed_open_ms: int | None = None
    ) -> dict[str, Any]:
        """The kline stream payload for the forming bar at `interval`, or for a just-closed one (x = true)."""
        interval = interval or self.interval
        i = self.index[symbol]
        since = self.bar_open_ms if closed_open_ms is None else closed_open_ms
        times, bars = self.bars_for(symbol, interval, since_ms=since)
        open_ms = int(self._group_opens(np.array([since], dtype=np.int64), interval)[0])
        column = int(np.searchsorted(times, open_ms))
        bar = bars[:, column]
        closed = closed_open_ms is not None
        row = self._row(symbol, open_ms, bar, self.close_ms(open_ms, interval))
        first_trade = int(self.trade_id[i] - bar[TRADES]) if np.isfinite(bar[TRADES]) else 0
        return {
            "e": "kline",
            "E": self.now_ms,
            "s": symbol,
            "k": {
                "t": open_ms,
                "T": row[6],
                "s": symbol,
                "i": interval,
                "f": first_trade,
                "L": int(self.trade_id[i]),
                "o": row[1],
                "c": row[4],
                "h": row[2],
                "l": row[3],
                "v": row[5],
                "n": row[8],
                "x": closed,
                "q": row[7],
                "V": row[9],
                "Q": row[10],
                "B": "0",
            },
        }

    def closes_interval(self, closed_open_ms: int, interval: str) -> bool:
        """Whether the base bar that just closed was the last of its `interval` bar."""
        opens = self._group_opens(np.array([closed_open_ms, self.bar_open_ms], dtype=np.int64), interval)
        return bool(opens[0] != opens[1])

    def mark_price_event(self, symbol: str) -> dict[str, Any]:
        i = self.index[symbol]
        decimals = self.mark_decimals(i)
        return {
            "e": "markPriceUpdate",
            "E": self.now_ms,
            "s": symbol,
            "p": _fmt(float(self.mark_prices()[i]), decimals),
            "ap": _fmt(float(self.mark_prices()[i]), decimals),
            "P": _fmt(float(self.index_prices()[i]), decimals),
            "i": _fmt(float(self.index_prices()[i]), decimals),
            "r": _fmt(float(self.funding_rates()[i]), 8),
            "T": self.next_funding_ms(),
        }

    def agg_trade_event(self, symbol: str) -> dict[str, Any]:
        """The aggTrade push: the latest trade on the symbol's tape."""
        row = self.agg_trades(symbol, from_id=None, start_ms=None, end_ms=None, limit=1)
        if not row:  # nothing traded since the market started (a symbol listed a moment ago)
            i = self.index[symbol]
            spec = self.specs[i]
            row = [{"a": int(self.agg_trade_id[i]), "p": _fmt(float(self.last[i]), spec.price_precision),
                    "q": _fmt(float(spec.step_size), spec.quantity_precision), "f": int(self.trade_id[i]),
                    "l": int(self.trade_id[i]), "T": self.now_ms, "m": False}]  # fmt: skip
        return {"e": "aggTrade", "E": self.now_ms, "s": symbol, **row[0]}

    def book_ticker_event(self, symbol: str) -> dict[str, Any]:
        bids, asks = self.book(symbol, 1)
        return {
            "e": "bookTicker",
            "u": int(self.book_id[self.index[symbol]]),
            "E": self.book_time_ms,
            "T": self.book_time_ms,
            "s": symbol,
            "b": str(bids[0].price),
            "B": str(bids[0].qty),
            "a": str(asks[0].price),
            "A": str(asks[0].qty),
        }

    @property
    def day_ms(self) -> int:
        """A market day: 24 market hours, so with bars shorter than an hour a "day" is 24 bars and 24h
        statistics agree with what the bars show."""
        return 24 * self.market_hour_ms

    def ticker_24h(self, symbol: str) -> dict[str, Any]:
        i = self.index[symbol]
        spec = self.specs[i]
        since = self.now_ms - self.day_ms
        times, bars = self.bars_for(symbol, self.interval, since_ms=since - self.interval_ms + 1)
        window = times >= since - self.interval_ms + 1
        if not window.any():
            window[-1:] = True
        chunk = bars[:, window]
        open_price = float(chunk[OPEN, 0])
        last = float(self.last[i])
        p, q = spec.price_precision, spec.quantity_precision
        change = last - open_price
        volume = float(np.nansum(chunk[VOLUME]))
        quote_volume = float(np.nansum(chunk[QUOTE_VOLUME]))
        trades = int(np.nansum(chunk[TRADES]))
        return {
            "symbol": symbol,
            "priceChange": _fmt(change, p),
            "priceChangePercent": _fmt(100.0 * change / open_price if open_price else 0.0, 3),
            "weightedAvgPrice": _fmt(quote_volume / volume if volume else last, p),
            "lastPrice": _fmt(last, p),
            "lastQty": _fmt(max(self.last_trade_qty[i], float(spec.step_size)), q),
            "openPrice": _fmt(open_price, p),
            "highPrice": _fmt(max(float(np.nanmax(chunk[HIGH])), last), p),
            "lowPrice": _fmt(min(float(np.nanmin(chunk[LOW])), last), p),
            "volume": _fmt(volume, q),
            "quoteVolume": _fmt(quote_volume, 2),
            "openTime": max(int(times[window][0]), since),
            "closeTime": self.now_ms,
            "firstId": int(self.trade_id[i]) - trades + 1,
            "lastId": int(self.trade_id[i]),
            "count": trades,
        }

    def premium_index(self, symbol: str) -> dict[str, Any]:
        i = self.index[symbol]
        decimals = self.mark_decimals(i)
        return {
            "symbol": symbol,
            "markPrice": _fmt(float(self.mark_prices()[i]), decimals),
            "indexPrice": _fmt(float(self.index_prices()[i]), decimals),
            "estimatedSettlePrice": _fmt(float(self.index_prices()[i]), decimals),
            "lastFundingRate": _fmt(float(self.funding_rates()[i]), 8),
            "interestRate": "0.00010000",
            "nextFundingTime": self.next_funding_ms(),
            "time": self.now_ms,
        }

    def funding_rate_history(
        self, symbol: str, *, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[dict[str, Any]]:
        i = self.index[symbol]
        decimals = self.mark_decimals(i)
        entries = [
            e
            for e in self.funding_history[i]
            if (start_ms is None or e[0] >= start_ms) and (end_ms is None or e[0] <= end_ms)
        ]
        entries = entries[:limit] if start_ms is not None else entries[-limit:]
        return [
            {"symbol": symbol, "fundingTime": t, "fundingRate": _fmt(rate, 8), "markPrice": _fmt(mark, decimals)}
            for t, rate, mark in entries
        ]

    def open_interest_now(self, symbol: str) -> dict[str, Any]:
        i = self.index[symbol]
        return {
            "symbol": symbol,
            "openInterest": _fmt(float(self.open_interest[i]), self.specs[i].quantity_precision),
            "time": self.now_ms,
        }

    def open_interest_hist(
        self, symbol: str, period: str, *, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Samples on the period's grid from the 5-minute history (last 30 days)."""
        i = self.index[symbol]
        step = interval_ms(period)
        marks = self.mark_prices()
        out: list[dict[str, Any]] = []
        for t, value in zip(self._oi_times, self._oi_values[i], strict=True):
            if t % step or math.isnan(value):
                continue
            if (start_ms is not None and t < start_ms) or (end_ms is not None and t > end_ms):
                continue
            out.append(
                {
                    "symbol": symbol,
                    "sumOpenInterest": _fmt(value, 8),
                    "sumOpenInterestValue": _fmt(value * float(marks[i]), 8),
                    "CMCCirculatingSupply": _fmt(value * 40.0, 2),
                    "timestamp": t,
                }
            )
        return out[:limit] if start_ms is not None and end_ms is None else out[-limit:]
