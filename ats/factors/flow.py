"""C flow (directional, -100..100): cumulative volume delta in quote units.

The CVD's recent slope relative to traded value is the EMA of taker delta (taker buys minus taker sells, USDT)
over the EMA of quote volume: the net share of value bought aggressively. It is discounted when the CVD is
noisy (low R² of its regression over recent bars) and when crowded (|flow| at an extreme percentile of its
own recent history).
"""

from __future__ import annotations

import numpy as np

from ats.domain import FloatArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import Reading, masked_linreg, rank_of_last, safe_div, squash


def flow(flow_history: FloatArray, delta: FloatArray, quote_volume: FloatArray, config: FactorConfig) -> Reading:
    """`flow_history`: window of EMA(delta) / EMA(quote volume); `delta`, `quote_volume`: recent bars (USDT)."""
    current = flow_history[:, -1]
    if not np.isfinite(current).any():  # no taker flow at any row's newest bar (OHLCV-only history): unavailable
        return Reading(np.zeros(current.shape), np.zeros(current.shape, dtype=bool))
    known = np.isfinite(flow_history)
    crowding = rank_of_last(np.abs(np.where(known, flow_history, 0.0)), known)
    start = config.flow_crowd_start
    crowd = 1.0 - config.flow_crowd_penalty * np.clip((crowding - start) / (1.0 - start), 0.0, 1.0)

    bars = np.isfinite(delta) & np.isfinite(quote_volume)
    traded = np.where(bars, quote_volume, 0.0).sum(axis=1)
    mean_traded = safe_div(traded, bars.sum(axis=1).astype(np.float64))
    cvd = np.cumsum(np.where(bars, delta, 0.0), axis=1) / np.where(mean_traded > 0, mean_traded, 1.0)[:, None]
    _, r2 = masked_linreg(cvd, bars)
    floor = config.flow_noise_floor
    noise = floor + (1.0 - floor) * r2

    value = 100.0 * squash(np.where(np.isfinite(current), current, 0.0), config.flow_ref) * noise * crowd
    return Reading(value, np.isfinite(current) & (traded > 0))
