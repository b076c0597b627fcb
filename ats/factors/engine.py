"""Scoring entry points: `scan` (cold, all symbols in one vectorised pass) and `IncrementalScorer` (keeps the
running state so each new closed bar costs O(window) per symbol instead of a replay of the history).

Both run the same code: `scan` is a fresh scorer's `warm`. Every call takes `as_of_ms`, the time at which the
caller asks: bars not closed by then are ignored, and a symbol whose newest closed bar is missing is reported
as stale rather than scored on older data.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

from ats.clock import format_utc
from ats.domain import Band, Bars, Direction, FloatArray, IntArray, interval_ms
from ats.factors.basis import basis
from ats.factors.config import FACTOR_NAMES, FactorConfig
from ats.factors.flow import flow
from ats.factors.fund_leading import fund_leading
from ats.factors.independence import independence
from ats.factors.indicators import Reading
from ats.factors.inputs import (
    NO_EXTRAS,
    MarketContext,
    Panel,
    SymbolExtras,
    build_panel,
    last_closed_open_time,
)
from ats.factors.liquidations import liquidations
from ats.factors.liquidity import liquidity
from ats.factors.memory import keep_freed_memory
from ats.factors.momentum import momentum
from ats.factors.open_interest import oi_change, open_interest
from ats.factors.score import NEUTRAL, Composite, FactorRow, ScanResult, composite
from ats.factors.state import (
    EMA_SLOW,
    VOLUME_LONG,
    VOLUME_SHORT,
    State,
    Windows,
    advance,
    initial_state,
    initial_windows,
    window_lengths,
)
from ats.factors.structure import structure
from ats.factors.trend import trend
from ats.factors.volume import participation, volume
from ats.log import get_logger

log = get_logger(__name__)
keep_freed_memory()

CONTEXT_SYMBOLS = {"BTCUSDT": "btc", "ETHUSDT": "eth"}  # bars of these feed the market context automatically


def scan(
    bars: Sequence[Bars],
    *,
    as_of_ms: int,
    extras: Mapping[str, SymbolExtras] | None = None,
    context: MarketContext | None = None,
    config: FactorConfig | None = None,
) -> ScanResult:
    """Score every symbol from its full bar history, in one vectorised pass.

    `bars`: closed bars per symbol (any that are not closed at `as_of_ms` are dropped), all of one interval.
    `extras`: optional open interest, premium, book and trades per symbol. `context`: BTC/ETH bars for the
    independence factor (taken from `bars` when BTCUSDT/ETHUSDT are among them and no context is given).
    """
    if not bars:
        return ScanResult(as_of_ms, "", ())
    scorer = IncrementalScorer(bars[0].interval, config)
    return scorer.warm(bars, as_of_ms=as_of_ms, extras=extras, context=context)


class IncrementalScorer:
    """Running factor state for a set of symbols of one interval. Not thread-safe: one owner at a time.

    warm(...)        start (or restart) symbols from their full history and score them
    update(...)      feed one symbol's newly closed bars (bars already seen are ignored) and re-score it
    update_many(...) the same for several symbols at once, vectorised
    An unknown symbol passed to update is started from the bars given, as its whole history.
    """

    def __init__(self, interval: str, config: FactorConfig | None = None) -> None:
        self.interval = interval
        self.config = config or FactorConfig()
        self._step = interval_ms(interval)
        self._windows_kept = window_lengths(self.config)
        self._symbols: list[str] = []
        self._index: dict[str, int] = {}
        self._state: State = initial_state(0)
        self._windows: Windows = initial_windows(0, self.config)
        self._last_open = np.zeros(0, dtype=np.int64)  # open time of each symbol's newest bar fed, -1 if none
        self._anchor: int | None = None
        self._context = MarketContext()

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._symbols)

    def warm(
        self,
        bars: Sequence[Bars],
        *,
        as_of_ms: int,
        extras: Mapping[str, SymbolExtras] | None = None,
        context: MarketContext | None = None,
    ) -> ScanResult:
        """(Re)start these symbols from their full history and score them."""
        self._absorb_context(bars, context, as_of_ms)
        rows = self._start(bars, as_of_ms, extras)
        return self._score(rows, as_of_ms, extras or {})

    def update(
        self,
        bars: Bars,
        *,
        as_of_ms: int,
        extras: SymbolExtras | None = None,
        context: MarketContext | None = None,
    ) -> FactorRow:
        """Feed one symbol's new closed bars and return its row at the newest bar closed by as_of_ms."""
        extras_map = {bars.symbol: extras} if extras is not None else None
        return self.update_many([bars], as_of_ms=as_of_ms, extras=extras_map, context=context).rows[0]

    def update_many(
        self,
        bars: Sequence[Bars],
        *,
        as_of_ms: int,
        extras: Mapping[str, SymbolExtras] | None = None,
        context: MarketContext | None = None,
    ) -> ScanResult:
        """Feed new closed bars of several symbols (one Bars each) and score them.

        Bars at or before a symbol's newest known bar are ignored; missing bars in between count as gaps.
        An empty Bars re-scores the symbol with fresh extras (a new premium or book) at the same bar.
        """
        names = [b.symbol for b in bars]
        if len(set(names)) != len(names):
            raise ValueError("update_many: each symbol may appear once")
        self._absorb_context(bars, context, as_of_ms)
        unknown = [b for b in bars if self._held(b.symbol) < 0]
        end = self._end(as_of_ms)
        groups: dict[int, list[Bars]] = {}
        for b in bars:
            held = self._held(b.symbol)
            if held < 0:
                continue
            if held > end:
                raise ValueError(
                    f"{b.symbol}: as_of {format_utc(as_of_ms)} is before bars already scored (up to {format_utc(held)})"
                )
            groups.setdefault(held, []).append(b)
        for held, group in groups.items():
            rows = np.array([self._index[b.symbol] for b in group], dtype=np.int64)
            self._advance(rows, self._panel(group, as_of_ms, extras, start_ms=held + self._step))
        if unknown:
            self._start(unknown, as_of_ms, extras)
        rows = np.array([self._index[name] for name in names], dtype=np.int64)
        return self._score(rows, as_of_ms, extras or {})

    def forget(self, symbol: str) -> None:
        """Drop a symbol's state (e.g. a position was closed and it left the universe)."""
        row = self._index.pop(symbol, None)
        if row is None:
            return
        keep = np.arange(len(self._symbols)) != row
        self._state = {name: value[keep] for name, value in self._state.items()}
        self._windows = {name: value[keep] for name, value in self._windows.items()}
        self._last_open = self._last_open[keep]
        self._symbols.pop(row)
        self._index = {name: i for i, name in enumerate(self._symbols)}

    # ------------------------------------------------------------------------------------------ internals

    def _held(self, symbol: str) -> int:
        """Open time of the newest bar fed for the symbol; -1 when it has none (or is unknown)."""
        row = self._index.get(symbol)
        return -1 if row is None else int(self._last_open[row])

    def _end(self, as_of_ms: int) -> int:
        return last_closed_open_time(as_of_ms, self.interval, self._anchor or 0)

    def _panel(
        self,
        bars: Sequence[Bars],
        as_of_ms: int,
        extras: Mapping[str, SymbolExtras] | None,
        start_ms: int | None = None,
    ) -> Panel:
        return build_panel(
            bars,
            as_of_ms=as_of_ms,
            interval=self.interval,
            anchor_ms=self._anchor,
            start_ms=start_ms,
            extras=extras,
            oi_max_age_bars=self.config.oi_max_age_bars,
        )

    def _start(self, bars: Sequence[Bars], as_of_ms: int, extras: Mapping[str, SymbolExtras] | None) -> IntArray:
        """Fresh state for these symbols (new rows, or existing rows reset), advanced over their history."""
        if self._anchor is None:
            self._anchor = next((int(b.open_time[0]) % self._step for b in bars if len(b)), None)
        rows = self._fresh_rows([b.symbol for b in bars])
        self._advance(rows, self._panel(bars, as_of_ms, extras))
        return rows

    def _fresh_rows(self, symbols: Sequence[str]) -> IntArray:
        added = [s for s in symbols if s not in self._index]
        if added:
            fresh_state = initial_state(len(added))
            fresh_windows = initial_windows(len(added), self.config)
            self._state = {n: np.concatenate([v, fresh_state[n]]) for n, v in self._state.items()}
            self._windows = {n: np.concatenate([v, fresh_windows[n]]) for n, v in self._windows.items()}
            self._last_open = np.concatenate([self._last_open, np.full(len(added), -1, dtype=np.int64)])
            for name in added:
                self._index[name] = len(self._symbols)
                self._symbols.append(name)
        rows = np.array([self._index[s] for s in symbols], dtype=np.int64)
        reset_state = initial_state(len(rows))
        reset_windows = initial_windows(len(rows), self.config)
        for name, value in self._state.items():
            value[rows] = reset_state[name]
        for name, value in self._windows.items():
            value[rows] = reset_windows[name]
        self._last_open[rows] = -1
        return rows

    def _advance(self, rows: IntArray, chunk: Panel) -> None:
        """Feed the chunk to these rows, each up to its own newest valid bar.

        Trailing missing bars are not consumed: a bar that arrives late is still taken in by the next call,
        and a stale symbol's windows end at its real newest bar.
        """
        if not chunk.open_time.size:
            return
        newest = np.where(chunk.valid, np.arange(chunk.open_time.size), -1).max(axis=1)
        for stop in np.unique(newest[newest >= 0]).tolist():
            members = np.flatnonzero(newest == stop)
            targets = rows[members]
            state = {name: value[targets] for name, value in self._state.items()}
            windows = {name: value[targets] for name, value in self._windows.items()}
            whole = members.size == rows.size and stop + 1 == chunk.open_time.size  # the usual case: no copy
            state, windows = advance(state, windows, chunk if whole else chunk.select(members, stop + 1), self.config)
            for name, value in state.items():
                self._state[name][targets] = value
            for name, value in windows.items():
                self._windows[name][targets] = value
            self._last_open[targets] = chunk.open_time[stop]

    def _absorb_context(self, bars: Sequence[Bars], context: MarketContext | None, as_of_ms: int) -> None:
        """Keep BTC/ETH bars (closed by as_of) for the independence factor, from `context` or from `bars`."""
        found = {CONTEXT_SYMBOLS[b.symbol]: b for b in bars if b.symbol in CONTEXT_SYMBOLS}
        given = context or MarketContext()
        btc = given.btc if given.btc is not None else found.get("btc")
        eth = given.eth if given.eth is not None else found.get("eth")
        newer = MarketContext(
            *(None if m is None or m.interval != self.interval else m.closed_by(as_of_ms) for m in (btc, eth))
        )
        self._context = self._context.merged(newer, 2 * self._windows_kept["close"])

    def _score(self, rows: IntArray, as_of_ms: int, extras: Mapping[str, SymbolExtras]) -> ScanResult:
        config = self.config
        state = {name: value[rows] for name, value in self._state.items()}
        windows = {name: value[rows] for name, value in self._windows.items()}
        symbols = [self._symbols[r] for r in rows]
        symbol_extras = [extras.get(s) or NO_EXTRAS for s in symbols]
        readings = factor_readings(
            state,
            windows,
            independence(windows["close"], self._last_open[rows], self.interval, self._context, config),
            symbol_extras,
            (as_of_ms - config.large_trade_lookback_bars * self._step, as_of_ms),
            config,
        )
        result = composite(readings, config)
        end = self._end(as_of_ms)
        newest = self._last_open[rows]
        reasons = _insufficient(state["count"], newest, end, config.min_bars)
        built = _rows(symbols, result, reasons, newest, end, state)
        return ScanResult(as_of_ms, self.interval, built)


def factor_readings(
    state: State,
    windows: Windows,
    independence_reading: Reading,
    extras: Sequence[SymbolExtras],
    trades_between: tuple[int, int],
    config: FactorConfig,
) -> dict[str, Reading]:
    """Every factor for rows of state and windows (one row per symbol, or per symbol and bar)."""
    atr, ema, close = state["atr"], state["ema"], windows["close"]
    change = oi_change(windows["open_interest"], config)
    premium_basis, funding = _premium_arrays(extras)
    return {
        "T": trend(close, windows["ema_gap"], atr, config),
        "M": momentum(windows["ema_mid"], atr, config),
        "C": flow(windows["flow"], windows["delta"], windows["quote_volume"], config),
        "O": open_interest(change, close, atr, config),
        "B": basis(premium_basis, funding, config),
        "Q": liquidations([e.trades for e in extras], *trades_between, config),
        "S": _as_reading(structure(state, state["count"], close[:, -1], ema[:, EMA_SLOW], atr, config)),
        "V": volume(ema[:, VOLUME_SHORT], ema[:, VOLUME_LONG], windows["volume_short"], config),
        "L": liquidity([e.book for e in extras], config),
        "I": independence_reading,
        "F": fund_leading(
            windows["flow"][:, -1],
            change,
            participation(ema[:, VOLUME_SHORT], ema[:, VOLUME_LONG]),
            close,
            atr,
            config,
        ),
    }


def _as_reading(values: FloatArray) -> Reading:
    return Reading(values, np.isfinite(values))


def _premium_arrays(extras: Sequence[SymbolExtras]) -> tuple[FloatArray, FloatArray]:
    """Basis fraction and funding rate per symbol, NaN without a usable premium snapshot."""
    basis_fraction = np.full(len(extras), np.nan)
    funding = np.full(len(extras), np.nan)
    for i, e in enumerate(extras):
        p = e.premium
        if p is not None and p.index_price > 0 and p.mark_price > 0:
            basis_fraction[i] = (p.mark_price - p.index_price) / p.index_price
            funding[i] = p.funding_rate
    return basis_fraction, funding


def _insufficient(count: FloatArray, last_valid: IntArray, end: int, min_bars: int) -> list[str | None]:
    reasons: list[str | None] = []
    for bars_seen, newest in zip(count, last_valid, strict=True):
        if newest < 0:
            reasons.append("insufficient data: no closed bars")
        elif newest < end:
            stale = f"no closed bar at {format_utc(end)} (stale; newest {format_utc(int(newest))})"
            reasons.append(f"insufficient data: {stale}")
        elif bars_seen < min_bars:
            reasons.append(f"insufficient data: {int(bars_seen)} closed bars, {min_bars} needed")
        else:
            reasons.append(None)
    return reasons


def _rows(
    symbols: Sequence[str],
    result: Composite,
    reasons: list[str | None],
    newest: IntArray,
    end: int,
    state: State,
) -> tuple[FactorRow, ...]:
    """Plain-Python rows from the vectorised result; unscorable symbols get neutral values and their reason."""
    atr_pct = np.expm1(state["atr"])
    table = np.stack([result.values[n] for n in FACTOR_NAMES] + [result.strength, atr_pct, result.coverage])
    finite = np.isfinite(table).all(axis=0)
    for bad in np.flatnonzero(~finite).tolist():
        if reasons[bad] is None:
            log.error("non-finite factor value", symbol=symbols[bad], values=table[:, bad].tolist())
            reasons[bad] = "insufficient data: non-finite factor value"
    columns = table.tolist()
    factor_columns, strength, atr, coverage = columns[: len(FACTOR_NAMES)], columns[-3], columns[-2], columns[-1]
    bits = 1 << np.arange(len(FACTOR_NAMES), dtype=np.int64)
    masks = (np.stack([~result.available[n] for n in FACTOR_NAMES], axis=1) * bits).sum(axis=1).tolist()
    direction = result.direction.tolist()
    close = np.nan_to_num(state["last_price"]).tolist()
    bar_time = np.where(newest >= 0, newest, end).tolist()
    neutral = tuple(NEUTRAL[n] for n in FACTOR_NAMES)
    by_symbol = list(zip(*factor_columns, strict=True))
    rows = []
    for i, symbol in enumerate(symbols):
        reason = reasons[i]
        scored = reason is None
        f = by_symbol[i] if scored else neutral
        side = direction[i] if scored else 0.0
        rows.append(
            FactorRow(
                symbol=symbol,
                bar_open_time_ms=bar_time[i],
                close=close[i],
                direction=None if side == 0 else (Direction.LONG if side > 0 else Direction.SHORT),
                strength=strength[i] if scored else 0.0,
                band=Band.of(strength[i]) if side != 0 else Band.NONE,
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
                atr_pct=atr[i] if np.isfinite(atr[i]) else 0.0,
                coverage=coverage[i] if scored else 0.0,
                missing=missing_factors(masks[i]) if scored else FACTOR_NAMES,
                insufficient=reason,
            )
        )
    return tuple(rows)


@functools.cache
def missing_factors(mask: int) -> tuple[str, ...]:
    """The factor names whose bit is set (few distinct patterns occur, so they are cached)."""
    return tuple(name for i, name in enumerate(FACTOR_NAMES) if mask >> i & 1)
