"""M momentum (directional, -100..100): slope and acceleration of a medium EMA of log closes in ATR units."""

from __future__ import annotations

import numpy as np

from ats.domain import FloatArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import Reading, lagged, safe_div, squash


def momentum(ema_mid: FloatArray, atr: FloatArray, config: FactorConfig) -> Reading:
    """`ema_mid`: window of the medium EMA (2 lags + 1 bars); `atr`: current ATR (log)."""
    lag = config.momentum_lag
    now, before, earlier = ema_mid[:, -1], lagged(ema_mid, lag), lagged(ema_mid, 2 * lag)
    unit = lag * atr
    slope = safe_div(now - before, unit)
    acceleration = slope - safe_div(before - earlier, unit)
    w = config.momentum_slope_weight
    value = 100.0 * (
        w * squash(slope, config.momentum_slope_ref) + (1.0 - w) * squash(acceleration, config.momentum_accel_ref)
    )
    return Reading(value, np.isfinite(now) & np.isfinite(before) & np.isfinite(earlier))
