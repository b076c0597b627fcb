"""Running state of the factor engine: recursive indicators plus short windows of recent values.

Everything a factor needs is either recursive (ATR, EMAs, the ZigZag: O(1) per bar) or a window of at most a
few hundred recent values. `advance` feeds new closed bars (a chunk of the panel) through the recursions,
vectorised across symbols and bars (no per-bar Python loop, see `run`), then shifts the chunk into the windows.
A cold start is the same call on an empty state with the whole history, so cold and incremental scoring run the
same code, and the recursions give bit-identical values however the history is split into chunks.

Arrays are keyed by name with the symbol axis first, so the engine can gather and scatter rows generically.
A bar that is missing (NaN) leaves the recursion untouched and enters the windows as NaN (masked). So does an
unknown volume of a bar that is there (history holding only OHLCV): each EMA starts at the first bar whose input
it knows and skips the bars whose input is unknown, so the price factors run on and the volume ones stay unknown.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ats.domain import FloatArray, interval_ms
from ats.factors.config import FactorConfig
from ats.factors.indicators import (
    SMOOTH_BLOCK,
    BoolArray,
    Smoothing,
    SmoothingTables,
    initial_smoothing,
    safe_div,
    smooth,
    smoothed_value,
    smoothing_tables,
    span_alpha,
)
from ats.factors.inputs import Panel
from ats.factors.structure import ZIGZAG_FIELDS, ZigzagEvents, zigzag_advance, zigzag_state

State = dict[str, FloatArray]
Windows = dict[str, FloatArray]

# Columns of the stacked EMA state and the series each one smooths.
EMA_FAST, EMA_SLOW, EMA_MID, FLOW_DELTA, FLOW_VALUE, VOLUME_SHORT, VOLUME_LONG = range(7)


def ema_alphas(config: FactorConfig) -> FloatArray:
    return np.array(
        [
            span_alpha(config.trend_ema_fast),
            span_alpha(config.trend_ema_slow),
            span_alpha(config.momentum_ema),
            span_alpha(config.flow_ema),
            span_alpha(config.flow_ema),
            span_alpha(config.volume_short_ema),
            span_alpha(config.volume_long_ema),
        ]
    )


def window_lengths(config: FactorConfig) -> dict[str, int]:
    """How many recent bars of each series the factors read."""
    return {
        "close": max(config.trend_window, config.oi_window + 1, config.independence_window + 1, config.fund_window + 1),
        "delta": config.flow_window,
        "quote_volume": config.flow_window,
        "open_interest": config.oi_lookback + config.oi_window,
        "ema_gap": config.trend_agree_window,
        "ema_mid": 2 * config.momentum_lag + 1,
        "flow": config.flow_crowd_lookback,
        "volume_short": config.volume_roc_lag + 1,
    }


SMOOTHING_FIELDS = ("smooth_base", "smooth_partial", "smooth_n", "smooth_block")
SMOOTH_SLICE = 16 * SMOOTH_BLOCK  # bars smoothed per call: a year of 1h bars takes nine
SMOOTHED = 8  # the seven EMAs and, last, the ATR (Wilder's smoothing is an EMA with alpha 1 / period)
ATR = 7


def smoothing_alphas(config: FactorConfig) -> FloatArray:
    return np.append(ema_alphas(config), 1.0 / config.atr_period)


def initial_state(symbols: int) -> State:
    """Nothing seen yet: the first valid bar seeds every recursion."""
    state: State = {
        "count": np.zeros(symbols),
        "last_close": np.full(symbols, np.nan),
        "last_price": np.full(symbols, np.nan),
        "atr": np.zeros(symbols),
        "ema": np.full((symbols, 7), np.nan),  # NaN until the first bar whose input is known
    }
    for name, value in zip(SMOOTHING_FIELDS, initial_smoothing(symbols * SMOOTHED), strict=True):
        state[name] = value.reshape(symbols, SMOOTHED)  # the blocked recursion behind ema and atr
    state.update(zigzag_state(symbols))
    return state


def initial_windows(symbols: int, config: FactorConfig) -> Windows:
    return {name: np.full((symbols, length), np.nan) for name, length in window_lengths(config).items()}


class Paths(NamedTuple):
    """Per-bar values of a chunk (symbols, bars), NaN where a bar (or its input) is missing: what the windows
    are made of, and what a per-bar score needs beyond them."""

    series: dict[str, FloatArray]  # the windowed series, by window name
    ema: FloatArray  # (symbols, bars, 7)
    atr: FloatArray
    seen: FloatArray  # valid bars seen up to and including each bar
    zigzag: ZigzagEvents


def advance(state: State, windows: Windows, chunk: Panel, config: FactorConfig) -> tuple[State, Windows]:
    """Feed a chunk of closed bars (rows = the state's symbols, in order) and return the new state and windows."""
    if chunk.log_close.shape[1] == 0:
        return state, windows
    state, paths = run(state, chunk, config)
    return state, {name: shift_in(windows[name], paths.series[name]) for name in windows}


def run(state: State, chunk: Panel, config: FactorConfig) -> tuple[State, Paths]:
    """The state after a chunk of closed bars, and every per-bar value on the way.

    No per-bar Python loop: the EMAs and the ATR are blocked cumulative sums (indicators.smooth), the ZigZag
    a pass per swing (structure.zigzag_advance). Both give bit-identical results however the history is
    split into chunks, so a cold scan and any sequence of updates agree exactly.
    """
    log_close = chunk.log_close
    symbols, bars = log_close.shape
    state = {name: value.copy() for name, value in state.items()}
    valid = np.isfinite(log_close)
    quote = np.where(valid, chunk.quote_volume, np.nan)  # NaN where unknown
    delta = 2.0 * np.where(valid, chunk.taker_buy_quote, np.nan) - quote
    traded = np.where(np.isfinite(delta), quote, np.nan)  # the flow's denominator: bars whose delta is known
    true_range = np.where(valid, _true_range(chunk, valid, state["last_close"]), np.nan)

    inputs = np.stack([log_close, log_close, log_close, delta, traded, quote, quote, true_range], axis=1)
    tables = _tables(config)
    flat = inputs.reshape(symbols * SMOOTHED, bars)
    first_bar = int(chunk.open_time[0]) // interval_ms(chunk.interval)
    smoothing = Smoothing(*(state[name].reshape(-1) for name in SMOOTHING_FIELDS))
    parts = []
    for start in range(0, bars, SMOOTH_SLICE):  # a long history in slices: same values, bounded temporaries
        part, smoothing = smooth(flat[:, start : start + SMOOTH_SLICE], first_bar + start, smoothing, tables)
        parts.append(part)
    path = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    for name, value in zip(SMOOTHING_FIELDS, smoothing, strict=True):
        state[name] = value.reshape(symbols, SMOOTHED)
    current = smoothed_value(smoothing, tables).reshape(symbols, SMOOTHED)
    path = path.reshape(symbols, SMOOTHED, bars)
    ema_path = np.moveaxis(path[:, :ATR], 1, 2)
    atr_path = path[:, ATR]
    state["ema"] = current[:, :ATR]
    state["atr"] = np.where(np.isfinite(current[:, ATR]), current[:, ATR], 0.0)

    count_path = state["count"][:, None] + np.cumsum(valid, axis=1)
    zigzag, events = zigzag_advance(
        {name: state[name] for name in (*ZIGZAG_FIELDS, "piv_p", "piv_i")},
        valid,
        log_close,
        config.zigzag_atr * atr_path,
        count_path - 1.0,
    )
    state.update(zigzag)
    state["count"] = count_path[:, -1]
    state["last_close"] = _last_valid(log_close, valid, state["last_close"])
    state["last_price"] = _last_valid(chunk.close, valid, state["last_price"])

    flow_known = np.isfinite(ema_path[..., FLOW_DELTA]) & np.isfinite(ema_path[..., FLOW_VALUE])
    flow = np.where(flow_known, safe_div(ema_path[..., FLOW_DELTA], ema_path[..., FLOW_VALUE]), np.nan)
    series = {
        "close": log_close,
        "delta": delta,
        "quote_volume": quote,
        "open_interest": chunk.log_open_interest,
        "ema_gap": ema_path[..., EMA_FAST] - ema_path[..., EMA_SLOW],
        "ema_mid": ema_path[..., EMA_MID],
        "flow": flow,
        "volume_short": ema_path[..., VOLUME_SHORT],
    }
    return state, Paths(series, ema_path, atr_path, count_path, events)


@functools.cache
def _tables(config: FactorConfig) -> SmoothingTables:
    return smoothing_tables(smoothing_alphas(config))


def shift_in(window: FloatArray, newer: FloatArray) -> FloatArray:
    """The window moved forward by the newer columns (oldest ones fall out)."""
    width, added = window.shape[1], newer.shape[1]
    if added == 0:
        return window
    if added >= width:
        return newer[:, added - width :].copy()
    return np.concatenate([window[:, added:], newer], axis=1)


def _true_range(chunk: Panel, valid: BoolArray, last_close: FloatArray) -> FloatArray:
    """True range of log prices against the previous valid close (the bar's own range when there is none)."""
    log_close = chunk.log_close
    previous: FloatArray
    if valid.all():  # the usual case: each bar's previous valid close is the bar before it
        previous = np.concatenate([last_close[:, None], log_close[:, :-1]], axis=1)
    else:
        bars = log_close.shape[1]
        position = np.where(valid, np.arange(bars), -1)
        latest = np.maximum.accumulate(position, axis=1)
        before = np.concatenate([np.full((log_close.shape[0], 1), -1), latest[:, :-1]], axis=1)
        taken = np.take_along_axis(log_close, np.maximum(before, 0), axis=1)
        previous = np.where(before >= 0, taken, last_close[:, None])
    high, low = chunk.log_high, chunk.log_low
    previous = np.where(np.isfinite(previous), previous, low)
    return np.maximum(high - low, np.maximum(np.abs(high - previous), np.abs(low - previous)))


def _last_valid(values: FloatArray, valid: BoolArray, fallback: FloatArray) -> FloatArray:
    bars = values.shape[1]
    last = np.where(valid, np.arange(bars), -1).max(axis=1)
    picked = values[np.arange(values.shape[0]), np.maximum(last, 0)]
    return np.where(last >= 0, picked, fallback)
