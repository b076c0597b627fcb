"""Running state of the factor engine: recursive indicators plus short windows of recent values.

Everything a factor needs is either recursive (ATR, EMAs, the ZigZag: O(1) per bar) or a window of at most a
few hundred recent values. `advance` feeds new closed bars (a chunk of the panel) through the recursion, one
bar at a time but vectorised across symbols, then shifts the chunk into the windows. A cold start is the
same call on an empty state with the whole history, so cold and incremental scoring run the same code.

Arrays are keyed by name with the symbol axis first, so the engine can gather and scatter rows generically.
A bar that is missing (NaN) leaves the recursion untouched and enters the windows as NaN (masked). So does an
unknown volume of a bar that is there (history holding only OHLCV): each EMA starts at the first bar whose input
it knows and skips the bars whose input is unknown, so the price factors run on and the volume ones stay unknown.
"""

from __future__ import annotations

import numpy as np

from ats.domain import FloatArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import BoolArray, safe_div, span_alpha
from ats.factors.inputs import Panel
from ats.factors.structure import zigzag_state, zigzag_step

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


def initial_state(symbols: int) -> State:
    """Nothing seen yet: the first valid bar seeds every recursion."""
    state: State = {
        "count": np.zeros(symbols),
        "last_close": np.full(symbols, np.nan),
        "last_price": np.full(symbols, np.nan),
        "atr": np.zeros(symbols),
        "ema": np.full((symbols, 7), np.nan),  # NaN until the first bar whose input is known
    }
    state.update(zigzag_state(symbols))
    return state


def initial_windows(symbols: int, config: FactorConfig) -> Windows:
    return {name: np.full((symbols, length), np.nan) for name, length in window_lengths(config).items()}


def advance(state: State, windows: Windows, chunk: Panel, config: FactorConfig) -> tuple[State, Windows]:
    """Feed a chunk of closed bars (rows = the state's symbols, in order) and return the new state and windows."""
    log_close = chunk.log_close
    symbols, bars = log_close.shape
    if bars == 0:
        return state, windows
    state = {name: value.copy() for name, value in state.items()}
    valid = np.isfinite(log_close)
    quote = np.where(valid, chunk.quote_volume, np.nan)  # NaN where unknown
    delta = 2.0 * np.where(valid, chunk.taker_buy_quote, np.nan) - quote
    traded = np.where(np.isfinite(delta), quote, np.nan)  # the flow's denominator: bars whose delta is known
    true_range = _true_range(chunk, valid, state["last_close"])

    alphas = ema_alphas(config)
    wilder = 1.0 / config.atr_period
    threshold_atr = config.zigzag_atr
    inputs = np.stack([log_close, log_close, log_close, delta, traded, quote, quote], axis=-1)
    ema_path = np.full((symbols, bars, 7), np.nan)
    count, atr, ema = state["count"], state["atr"], state["ema"]
    for j in range(bars):
        ok = valid[:, j]
        if not ok.any():
            continue
        first = ok & (count == 0)
        tr = true_range[:, j]
        atr = np.where(ok, np.where(first, tr, atr + (tr - atr) * wilder), atr)
        x = inputs[:, j]
        known = np.isfinite(x)  # a missing bar has no input at all; a bar of unknown volume only prices
        ema = np.where(known, np.where(np.isnan(ema), x, ema + alphas * (x - ema)), ema)
        zigzag_step(state, ok, log_close[:, j], threshold_atr * atr, count)
        count = count + ok
        ema_path[:, j] = np.where(known, ema, np.nan)
    state["count"], state["atr"], state["ema"] = count, atr, ema
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
    return state, {name: shift_in(windows[name], series[name]) for name in windows}


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
    bars = log_close.shape[1]
    position = np.where(valid, np.arange(bars), -1)
    latest = np.maximum.accumulate(position, axis=1)
    before = np.concatenate([np.full((log_close.shape[0], 1), -1), latest[:, :-1]], axis=1)
    previous = np.where(before >= 0, np.take_along_axis(log_close, np.maximum(before, 0), axis=1), last_close[:, None])
    high, low = chunk.log_high, chunk.log_low
    previous = np.where(np.isfinite(previous), previous, low)
    return np.maximum(high - low, np.maximum(np.abs(high - previous), np.abs(low - previous)))


def _last_valid(values: FloatArray, valid: BoolArray, fallback: FloatArray) -> FloatArray:
    bars = values.shape[1]
    last = np.where(valid, np.arange(bars), -1).max(axis=1)
    picked = values[np.arange(values.shape[0]), np.maximum(last, 0)]
    return np.where(last >= 0, picked, fallback)
