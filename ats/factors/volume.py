"""V volume (quality, 0..100): participation (short vs long EMA of quote volume) and its rate of change.

Average participation scores 50; a market that never traded scores 0. Unavailable when the newest bar's quote
volume is unknown (history holding only OHLCV): participation is not guessed from older bars.
"""

from __future__ import annotations

import numpy as np

from ats.domain import FloatArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import Reading, lagged, log_ratio, unit_squash


def participation(short: FloatArray, long: FloatArray) -> FloatArray:
    """log(short EMA / long EMA) of quote volume: > 0 when recent bars trade more than usual."""
    return log_ratio(np.where(np.isfinite(short), short, 0.0), np.where(np.isfinite(long), long, 0.0))


def volume(short: FloatArray, long: FloatArray, short_history: FloatArray, config: FactorConfig) -> Reading:
    """`short`, `long`: current EMAs of quote volume; `short_history`: window of the short EMA."""
    level = unit_squash(participation(short, long), config.volume_ratio_ref)
    before = lagged(short_history, config.volume_roc_lag)
    known = np.isfinite(before) & np.isfinite(short)
    change = np.where(known, log_ratio(np.where(known, short, 0.0), np.where(known, before, 0.0)), 0.0)
    pace = unit_squash(change, config.volume_roc_ref)
    w = config.volume_participation_weight
    traded = np.isfinite(long) & (long > 0)
    value = np.where(traded, 100.0 * (w * level + (1.0 - w) * pace), 0.0)
    return Reading(value, np.isfinite(long) & np.isfinite(short_history[:, -1]))
