"""B basis and funding (directional, -100..100): (mark - index) / index and the funding rate on a piecewise
scale: a modest premium is demand (bullish when positive, bearish when negative), an extreme one is crowding
and counts against its own side."""

from __future__ import annotations

import numpy as np

from ats.domain import FloatArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import Reading


def piecewise(x: FloatArray, dead: float, full: float, extreme: float) -> FloatArray:
    """0 within +-dead, rising to +-1 at full, falling back through 0 to -+1 at extreme and beyond."""
    size = np.abs(x)
    rising = np.clip((size - dead) / (full - dead), 0.0, 1.0)
    fading = np.clip((size - full) / (extreme - full), 0.0, 1.0)
    return np.sign(x) * np.where(size <= full, rising, 1.0 - 2.0 * fading)


def basis(basis_fraction: FloatArray, funding_rate: FloatArray, config: FactorConfig) -> Reading:
    """Inputs are per symbol, NaN where no premium snapshot exists."""
    known = np.isfinite(basis_fraction) & np.isfinite(funding_rate)
    b = np.where(known, basis_fraction, 0.0)
    f = np.where(known, funding_rate, 0.0)
    w = config.basis_weight
    value = 100.0 * (
        w * piecewise(b, config.basis_dead, config.basis_full, config.basis_extreme)
        + (1.0 - w) * piecewise(f, config.funding_dead, config.funding_full, config.funding_extreme)
    )
    return Reading(value, known)
