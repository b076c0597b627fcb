"""The composite score and the scan's result: what a user sees and what becomes a Signal.

direction = sign of the weighted mean of the available directional factors, none inside the neutral band;
strength = that mean's magnitude (scaled so `full_evidence` is 100), times a quality multiplier (from the mean
of the available quality factors) and the F multiplier (up for the side F supports, down for the other),
bounded to 0..100. Quality and F never choose the side, they only scale it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from ats.domain import Band, Direction, FloatArray, Signal
from ats.factors.config import DIRECTIONAL, FACTOR_NAMES, QUALITY, FactorConfig
from ats.factors.indicators import BoolArray, Reading, weighted_mean

NEUTRAL = {**dict.fromkeys(DIRECTIONAL, 0.0), **dict.fromkeys(QUALITY, 50.0), "F": 0.0}


@dataclass(frozen=True, slots=True)
class Composite:
    """Vectorised composite over the scored symbols."""

    values: dict[str, FloatArray]  # factor letter -> values, neutral where unavailable
    available: dict[str, BoolArray]
    direction: FloatArray  # +1, -1 or 0
    strength: FloatArray  # 0..100, 0 without a direction
    coverage: FloatArray  # share of the directional weight that had data


def composite(readings: Mapping[str, Reading], config: FactorConfig) -> Composite:
    available = {name: r.available & np.isfinite(r.value) for name, r in readings.items()}
    values = {name: np.where(available[name], readings[name].value, NEUTRAL[name]) for name in readings}
    mean, coverage = weighted_mean(
        np.stack([values[n] for n in DIRECTIONAL]),
        np.stack([available[n] for n in DIRECTIONAL]),
        np.asarray(config.directional_weights),
    )
    quality, quality_coverage = weighted_mean(
        np.stack([values[n] for n in QUALITY]),
        np.stack([available[n] for n in QUALITY]),
        np.asarray(config.quality_weights),
    )
    quality = np.where(quality_coverage > 0, quality, 50.0)
    direction = np.where(np.abs(mean) >= config.neutral_band, np.sign(mean), 0.0)
    evidence = np.clip(100.0 * np.abs(mean) / config.full_evidence, 0.0, 100.0)
    quality_scale = config.quality_floor + (config.quality_ceiling - config.quality_floor) * quality / 100.0
    fund_scale = np.clip(
        1.0 + config.fund_gain * direction * values["F"] / 100.0, 1.0 - config.fund_bound, 1.0 + config.fund_bound
    )
    strength = np.where(direction != 0, np.clip(evidence * quality_scale * fund_scale, 0.0, 100.0), 0.0)
    return Composite(values, available, direction, strength, coverage)


@dataclass(frozen=True, slots=True)
class FactorRow:
    """One symbol's score at one closed bar, with every factor so a user can see why it fired (or did not)."""

    symbol: str
    bar_open_time_ms: int  # open time of the newest closed bar the row describes
    close: float  # that bar's close (0 when the symbol has no bar at all)
    direction: Direction | None
    strength: float  # 0..100; 0 without a direction
    band: Band
    trend: float  # T, -100..100
    momentum: float  # M
    flow: float  # C
    open_interest: float  # O
    basis: float  # B
    liquidations: float  # Q
    structure: float  # S, 0..100
    volume: float  # V
    liquidity: float  # L
    independence: float  # I
    fund_leading: float  # F, -100..100
    atr_pct: float  # ATR as a fraction of price
    coverage: float  # share of the directional weight whose data existed
    missing: tuple[str, ...]  # factors without data, reported at their neutral value (0, or 50 for quality)
    insufficient: str | None = None  # why the symbol could not be scored; None when it was

    @property
    def scored(self) -> bool:
        return self.insufficient is None

    @property
    def factors(self) -> dict[str, float]:
        """Factor letter -> value (T M C O B Q S V L I F)."""
        return dict(
            zip(
                FACTOR_NAMES,
                (
                    self.trend, self.momentum, self.flow, self.open_interest, self.basis, self.liquidations,
                    self.structure, self.volume, self.liquidity, self.independence, self.fund_leading,
                ),
                strict=True,
            )
        )  # fmt: skip

    def to_signal(self) -> Signal:
        """This row as a Signal (only for a scored row with a direction)."""
        if self.direction is None or not self.scored:
            raise ValueError(f"{self.symbol}: no signal to make ({self.insufficient or 'no direction'})")
        return Signal(
            symbol=self.symbol,
            direction=self.direction,
            strength=self.strength,
            band=self.band,
            bar_open_time_ms=self.bar_open_time_ms,
            price=Decimal(repr(self.close)),
            factors={**self.factors, "atr_pct": self.atr_pct},
            atr_pct=self.atr_pct,
            trend=self.trend,
            liquidity=self.liquidity,
        )


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Every requested symbol's row, in the order the symbols were given."""

    as_of_ms: int
    interval: str
    rows: tuple[FactorRow, ...]

    def row(self, symbol: str) -> FactorRow:
        for row in self.rows:
            if row.symbol == symbol:
                return row
        raise KeyError(symbol)

    def ranked(self) -> list[FactorRow]:
        """Scored rows with a direction, strongest first."""
        return sorted((r for r in self.rows if r.scored and r.direction is not None), key=lambda r: -r.strength)

    def signals(self, min_score: float) -> list[Signal]:
        """Signals for the rows at or above min_score, strongest first."""
        return [r.to_signal() for r in self.ranked() if r.strength >= min_score]

    @property
    def insufficient(self) -> dict[str, str]:
        """Symbol -> why it could not be scored."""
        return {r.symbol: r.insufficient for r in self.rows if r.insufficient is not None}
