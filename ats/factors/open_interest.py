"""O open interest (directional, -100..100): OI change in units of its own typical change, signed by the price
direction it confirms.

Rising OI (positions opening) with rising price is bullish, with falling price bearish; falling OI (positions
closing) counts with `oi_falling_weight` and the same sign rule. OI is in contracts, so a price move alone
never looks like positioning.
"""

from __future__ import annotations

import numpy as np

from ats.domain import FloatArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import Reading, finite_median, lagged, safe_div, squash


def oi_change(open_interest: FloatArray, config: FactorConfig) -> Reading:
    """The latest OI change over `oi_window` bars divided by the median |change| of the lookback (a z-like
    number); unavailable without enough OI history."""
    if not np.isfinite(open_interest[:, -1]).any():  # no current OI anywhere (the common case without extras)
        return Reading(np.zeros(open_interest.shape[0]), np.zeros(open_interest.shape[0], dtype=bool))
    window = config.oi_window
    with np.errstate(invalid="ignore"):
        changes = open_interest[:, window:] - open_interest[:, :-window]
    median, points = finite_median(np.abs(changes))
    current = changes[:, -1]
    z = safe_div(current, np.maximum(median, config.oi_floor))
    return Reading(z, np.isfinite(current) & (points >= config.oi_min_points))


def open_interest(change: Reading, close: FloatArray, atr: FloatArray, config: FactorConfig) -> Reading:
    """`change`: from oi_change; `close`: log closes window; `atr`: current ATR (log)."""
    window = config.oi_window
    price_move = close[:, -1] - lagged(close, window)
    direction = squash(safe_div(price_move, atr * np.sqrt(window)), config.oi_price_ref)
    strength = squash(change.value, config.oi_ref)
    strength = np.where(strength >= 0, strength, config.oi_falling_weight * strength)
    return Reading(100.0 * strength * direction, change.available & np.isfinite(price_move))
