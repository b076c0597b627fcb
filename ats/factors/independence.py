"""I independence (quality, 0..100): 1 - the larger |correlation| of the symbol's returns with BTC's and ETH's.

Correlation is beta normalised by the two volatilities (beta * sd(market) / sd(symbol)), so a volatile coin
that merely amplifies BTC still counts as dependent. Returns are joined on bar open time, never by position
from the end, so a missing bar on either side drops that return instead of misaligning the rest; context bars
later than the symbol's own bar are never read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ats.domain import Bars, FloatArray, IntArray, interval_ms
from ats.factors.config import FactorConfig
from ats.factors.indicators import Reading, masked_correlation
from ats.factors.inputs import MarketContext


def aligned_log_close(context: Bars, times: IntArray) -> FloatArray:
    """The context's log close at each requested open time (NaN where it has no valid bar)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        usable = np.isfinite(context.close) & (context.close > 0)
    held_times = context.open_time[usable]
    held = np.log(context.close[usable])
    if held_times.size == 0:
        return np.full(times.shape, np.nan)
    order = np.argsort(held_times, kind="stable")
    held_times, held = held_times[order], held[order]
    pos = np.minimum(np.searchsorted(held_times, times), held_times.size - 1)
    return np.where(held_times[pos] == times, held[pos], np.nan)


def independence(
    close: FloatArray, last_open_ms: IntArray, interval: str, context: MarketContext, config: FactorConfig
) -> Reading:
    """`close`: log closes window; `last_open_ms`: open time of each symbol's newest window bar."""
    span = min(config.independence_window + 1, close.shape[1])
    offsets = interval_ms(interval) * np.arange(span - 1, -1, -1, dtype=np.int64)
    newest, row_of = np.unique(last_open_ms, return_inverse=True)  # symbols mostly share their newest bar
    times = newest[:, None] - offsets[None, :]
    markets = [
        np.diff(aligned_log_close(market, times), axis=1)[row_of]
        for market in (context.btc, context.eth)
        if market is not None and market.interval == interval
    ]
    return independence_of(np.diff(close[:, -span:], axis=1), markets, config)


def independence_of(returns: FloatArray, markets: Sequence[FloatArray], config: FactorConfig) -> Reading:
    """I from the symbol's recent log returns and each market's log returns over the same bars."""
    dependence = np.full(returns.shape[0], -1.0)
    for market_returns in markets:
        joined = np.isfinite(returns) & np.isfinite(market_returns)
        corr, points = masked_correlation(returns, market_returns, joined)
        dependence = np.where(
            points >= config.independence_min_points, np.maximum(dependence, np.abs(corr)), dependence
        )
    available = dependence >= 0
    return Reading(np.where(available, 100.0 * (1.0 - dependence), 0.0), available)
