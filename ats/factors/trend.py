"""T trend (directional, -100..100): regression slope of log closes in ATR units and the agreement of the
fast/slow EMA order over recent bars (each bar's gap in ATR, squashed, so EMAs that barely differ count
little), weighted by how well a straight line explains the closes (R²)."""

from __future__ import annotations

import numpy as np

from ats.domain import FloatArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import Reading, masked_linreg, safe_div, squash


def trend(close: FloatArray, ema_gap: FloatArray, atr: FloatArray, config: FactorConfig) -> Reading:
    """`close`: log closes window; `ema_gap`: fast EMA minus slow EMA window; `atr`: current ATR (log)."""
    recent = close[:, -config.trend_window :]
    mask = np.isfinite(recent)
    slope, r2 = masked_linreg(recent, mask)
    regression = squash(safe_div(slope, atr), config.trend_slope_ref)
    gap_known = np.isfinite(ema_gap)
    ordering = squash(safe_div(np.where(gap_known, ema_gap, 0.0), atr[:, None]), config.trend_gap_ref)
    agreement = safe_div(ordering.sum(axis=1), gap_known.sum(axis=1).astype(np.float64))
    w = config.trend_regression_weight
    value = 100.0 * r2**config.trend_r2_power * (w * regression + (1.0 - w) * agreement)
    return Reading(value, mask.sum(axis=1) >= 2)
