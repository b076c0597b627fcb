"""The score of every symbol at every bar of a history, in one vectorised pass: what a backtest replays.

`score_series(bars, as_of_ms=...)` gives, for each symbol and each bar, exactly the row a cold `scan` of the
history up to that bar (as of its close) gives: the recursions run once over the whole history (their values
do not depend on how the history is split, see state.run), each bar's windows are cut from the per-bar series,
and the factors and the composite run on (symbol, bar) rows instead of symbol rows, through the same code.

Only what exists at every bar historically is used: bars, open interest and the BTC/ETH context. Premium,
order book and trades are snapshots of the present; a series has none of them (B, Q and L are unavailable,
as in a scan without those extras).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ats.domain import Band, Bars, Direction, FloatArray, IntArray
from ats.factors.config import FACTOR_NAMES, FactorConfig
from ats.factors.engine import CONTEXT_SYMBOLS, factor_readings, missing_factors
from ats.factors.independence import aligned_log_close, independence_of
from ats.factors.indicators import BoolArray
from ats.factors.inputs import NO_EXTRAS, MarketContext, OpenInterestSeries, SymbolExtras, build_panel
from ats.factors.score import NEUTRAL, FactorRow, composite
from ats.factors.state import initial_state, run, window_lengths
from ats.factors.structure import PIVOTS, ZigzagEvents

NOT_SCORED = "insufficient data: not scored at this bar (no bar, too little history or a non-finite value)"
ROWS_PER_PASS = 1024  # (symbol, bar) rows scored at once: their windows (~600 floats each) stay in cache


@dataclass(frozen=True, slots=True)
class ScoreSeries:
    """Per-bar scores, arrays (symbols, bars) on one time grid. Where `scored` is False (no bar at that time,
    too little history, or a non-finite value) direction and strength are 0 and the factors neutral, as in
    the scan's row, which then has a reason in `insufficient`."""

    symbols: tuple[str, ...]
    interval: str
    open_time: IntArray  # (bars,)
    scored: BoolArray
    direction: FloatArray  # +1 long, -1 short, 0 none
    strength: FloatArray  # 0..100
    factors: dict[str, FloatArray]  # factor letter -> values (neutral where unavailable)
    atr_pct: FloatArray  # ATR as a fraction of price at each bar (0 where there is no bar)
    coverage: FloatArray
    close: FloatArray  # the bar's close (NaN where there is no bar)
    missing: IntArray  # bit i set: FACTOR_NAMES[i] had no data (reported at its neutral value)

    def row(self, symbol: str, bar: int) -> FactorRow:
        """The symbol's row at a bar (an index into open_time): for a scored entry exactly the row a cold scan as
        of that bar's close gives (a Signal is made from it the same way); an unscored one is neutral."""
        i = self.symbols.index(symbol)
        # .item reads a Python scalar without making a NumPy one (this runs for every signal of a backtest)
        scored = bool(self.scored.item(i, bar))
        side, strength = float(self.direction.item(i, bar)), float(self.strength.item(i, bar))
        f = [float(self.factors[name].item(i, bar)) for name in FACTOR_NAMES]
        close = float(self.close.item(i, bar))
        return FactorRow(
            symbol=symbol,
            bar_open_time_ms=int(self.open_time.item(bar)),
            close=close if math.isfinite(close) else float(np.nan_to_num(close)),
            direction=None if side == 0 else (Direction.LONG if side > 0 else Direction.SHORT),
            strength=strength,
            band=Band.of(strength) if side != 0 else Band.NONE,
            trend=f[0],
            momentum=f[1],
            flow=f[2],
            open_interest=f[3],
            basis=f[4],
            liquidations=f[5],
            structure=f[6],
            volume=f[7],
            liquidity=f[8],
            independence=f[9],
            fund_leading=f[10],
            atr_pct=float(self.atr_pct.item(i, bar)),
            coverage=float(self.coverage.item(i, bar)),
            missing=missing_factors(int(self.missing.item(i, bar))),
            insufficient=None if scored else NOT_SCORED,
        )


def score_series(
    bars: Sequence[Bars],
    *,
    as_of_ms: int,
    open_interest: Mapping[str, OpenInterestSeries] | None = None,
    context: MarketContext | None = None,
    config: FactorConfig | None = None,
) -> ScoreSeries:
    """Score every symbol at every closed bar up to `as_of_ms` (bars of one interval, any history length).

    The value at (symbol, bar t) equals `scan(bars, as_of_ms=close of t, ...)`'s row for that symbol with the
    same open interest and context: no bar after t is read for it.
    """
    config = config or FactorConfig()
    if not bars:
        raise ValueError("score_series: no bars")
    interval = bars[0].interval
    extras = {s: SymbolExtras(open_interest=oi) for s, oi in (open_interest or {}).items()}
    panel = build_panel(
        bars, as_of_ms=as_of_ms, interval=interval, extras=extras, oi_max_age_bars=config.oi_max_age_bars
    )
    symbols, width = panel.log_close.shape
    _, paths = run(initial_state(symbols), panel, config)
    markets = _market_closes(bars, context, as_of_ms, panel.open_time)

    valid = panel.valid
    scored = valid & (paths.seen >= config.min_bars)
    si, ti = np.nonzero(scored)
    out_factors = {name: np.full((symbols, width), NEUTRAL[name]) for name in FACTOR_NAMES}
    direction, strength = np.zeros((symbols, width)), np.zeros((symbols, width))
    coverage = np.zeros((symbols, width))
    missing = np.full((symbols, width), (1 << len(FACTOR_NAMES)) - 1, dtype=np.int64)
    bits = 1 << np.arange(len(FACTOR_NAMES), dtype=np.int64)
    lengths = window_lengths(config)
    views = {name: _sliding(paths.series[name], lengths[name]) for name in lengths}
    span = min(config.independence_window + 1, lengths["close"]) - 1  # returns joined with the markets'
    returns = _sliding(_returns(panel.log_close), span)
    market_views = [_sliding(_returns(m[None, :]), span)[0] for m in markets]
    ema_now = _forward_filled(paths.ema)
    pivots = _PivotTables(paths.zigzag, symbols, width)
    no_extras = [NO_EXTRAS] * min(ROWS_PER_PASS, si.size)

    for start in range(0, si.size, ROWS_PER_PASS):
        s, t = si[start : start + ROWS_PER_PASS], ti[start : start + ROWS_PER_PASS]
        windows = {name: views[name][s, t] for name in lengths}
        state = {
            "count": paths.seen[s, t],
            "atr": paths.atr[s, t],
            "ema": ema_now[s, t],
            **pivots.at(s, t),
        }
        market_windows = [m[t] for m in market_views]
        readings = factor_readings(
            state,
            windows,
            independence_of(returns[s, t], market_windows, config),
            no_extras[: s.size],
            (0, 0),
            config,
        )
        result = composite(readings, config)
        table = np.stack(
            [result.values[n] for n in FACTOR_NAMES] + [result.strength, np.expm1(state["atr"]), result.coverage]
        )
        finite = np.isfinite(table).all(axis=0)
        scored[s[~finite], t[~finite]] = False
        keep = finite
        s, t = s[keep], t[keep]
        for i, name in enumerate(FACTOR_NAMES):
            out_factors[name][s, t] = table[i, keep]
        direction[s, t] = result.direction[keep]
        strength[s, t] = table[len(FACTOR_NAMES), keep]
        coverage[s, t] = table[len(FACTOR_NAMES) + 2, keep]
        unavailable = np.stack([~result.available[n] for n in FACTOR_NAMES], axis=1)
        missing[s, t] = (unavailable[keep] * bits).sum(axis=1)
    atr_pct = np.where(valid, np.nan_to_num(np.expm1(paths.atr)), 0.0)
    return ScoreSeries(
        panel.symbols,
        interval,
        panel.open_time,
        scored,
        direction,
        strength,
        out_factors,
        atr_pct,
        coverage,
        panel.close,
        missing,
    )


def _sliding(series: FloatArray, length: int) -> FloatArray:
    """(rows, bars, length): at [r, t] the last `length` values of row r up to bar t, NaN before its start
    (a view: nothing is copied until rows are picked from it)."""
    padded = np.concatenate([np.full((series.shape[0], length - 1), np.nan), series], axis=1)
    return np.lib.stride_tricks.sliding_window_view(padded, length, axis=1)


def _returns(log_close: FloatArray) -> FloatArray:
    """Bar-to-bar log returns, NaN at the first bar (as np.diff of a window whose first close is unknown)."""
    return np.concatenate([np.full((log_close.shape[0], 1), np.nan), np.diff(log_close, axis=1)], axis=1)


def _forward_filled(path: FloatArray) -> FloatArray:
    """(symbols, bars, k): each value carried forward over the NaN that follow it (an EMA holds on a bar whose
    input is unknown)."""
    bars = path.shape[1]
    known = np.isfinite(path)
    last = np.maximum.accumulate(np.where(known, np.arange(bars)[None, :, None], 0), axis=1)
    return np.take_along_axis(path, last, axis=1)


class _PivotTables:
    """The ZigZag's pivots, direction and pivot count as of every bar, from its reversal events."""

    def __init__(self, events: ZigzagEvents, symbols: int, bars: int) -> None:
        seen = np.zeros((symbols, bars), dtype=np.int64)
        np.add.at(seen, (events.row, events.column), 1)
        self.count = np.cumsum(seen, axis=1)  # reversals up to and including each bar
        per_row = np.bincount(events.row, minlength=symbols)
        most = int(per_row.max()) if per_row.size else 0
        rank = np.arange(events.row.size) - (np.cumsum(per_row) - per_row)[events.row]
        self.price = np.zeros((symbols, PIVOTS + most))
        self.index = np.zeros((symbols, PIVOTS + most))
        self.direction = np.zeros((symbols, 1 + most))
        self.price[events.row, PIVOTS + rank] = events.price
        self.index[events.row, PIVOTS + rank] = events.bar
        self.direction[events.row, 1 + rank] = events.direction

    def at(self, s: IntArray, t: IntArray) -> dict[str, FloatArray]:
        k = self.count[s, t]
        take = k[:, None] + np.arange(PIVOTS)
        return {
            "piv_p": self.price[s[:, None], take],
            "piv_i": self.index[s[:, None], take],
            "piv_n": np.minimum(k, PIVOTS).astype(np.float64),
            "zz_dir": self.direction[s, k],
        }


def _market_closes(
    bars: Sequence[Bars], context: MarketContext | None, as_of_ms: int, open_time: IntArray
) -> list[FloatArray]:
    """BTC's and ETH's log close at each grid bar (NaN where they have none), from `context` or from `bars`
    (as a scan takes them)."""
    found = {CONTEXT_SYMBOLS[b.symbol]: b for b in bars if b.symbol in CONTEXT_SYMBOLS}
    given = context or MarketContext()
    interval = bars[0].interval
    out = []
    for name in ("btc", "eth"):
        market = getattr(given, name) if getattr(given, name) is not None else found.get(name)
        if market is None or market.interval != interval:
            continue
        out.append(aligned_log_close(market.closed_by(as_of_ms), open_time))
    return out
