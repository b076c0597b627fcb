"""Every constant of the factor model, in one frozen, validated object.

Windows are counted in bars of the primary timeframe (the model reads ~300 bars whatever the interval).
Price moves are measured in log space and in units of the ATR of log prices, which is what makes the
factors independent of the price level (scale invariance) and exactly antisymmetric when the market is
mirrored (p -> k/p). "ref" constants are the value at which a tanh-squashed component reaches 0.76 of its
maximum. They sit at about 2.5 standard deviations of what a driftless random walk produces (measured on
synthetic 1h bars), so noise reads about 0.4 of full scale and only a move well beyond noise reads strong.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

DIRECTIONAL = ("T", "M", "C", "O", "B", "Q")
QUALITY = ("S", "V", "L", "I")
FACTOR_NAMES = (*DIRECTIONAL, *QUALITY, "F")


@dataclass(frozen=True, slots=True)
class FactorConfig:
    """The 10+1 factor model's constants (see docs/factors.md). Frozen: pass a new one to change it."""

    # --- history ---------------------------------------------------------------------------------
    min_bars: int = 60  # fewer valid closed bars than this: "insufficient data" (ATR/EMA warm-up)

    # --- shared indicators -----------------------------------------------------------------------
    atr_period: int = 14  # Wilder ATR of log prices: the unit of every price move below

    # --- T trend -----------------------------------------------------------------------------------
    trend_window: int = 48  # bars in the regression of log closes
    trend_ema_fast: int = 12  # fast EMA span (log close)
    trend_ema_slow: int = 26  # slow EMA span (log close); also the "mean" S measures extension from
    trend_agree_window: int = 12  # bars over which fast-above-slow (or below) agreement is averaged
    trend_slope_ref: float = 0.25  # regression slope in ATR per bar counted as strong (noise sd ~0.10)
    trend_gap_ref: float = 1.75  # fast minus slow EMA in ATR counted as a strong ordering (noise sd ~0.7)
    trend_regression_weight: float = 0.7  # regression vs EMA-agreement share of T (the rest is agreement)
    trend_r2_power: float = 1.0  # T is scaled by R² ** power (a random walk's R² averages ~0.45)

    # --- M momentum --------------------------------------------------------------------------------
    momentum_ema: int = 50  # medium EMA span (log close)
    momentum_lag: int = 6  # bars between the EMA values whose difference is the slope
    momentum_slope_ref: float = 0.2  # EMA slope in ATR per bar counted as strong (noise sd ~0.085)
    momentum_accel_ref: float = 0.12  # change of that slope over momentum_lag bars counted as strong (sd ~0.046)
    momentum_slope_weight: float = 0.7  # slope vs acceleration share of M

    # --- C flow (CVD) ------------------------------------------------------------------------------
    flow_ema: int = 24  # span of the EMAs of taker delta and traded value (quote units)
    flow_ref: float = 0.05  # net taker imbalance (share of traded value per bar) counted as strong (sd ~0.02)
    flow_window: int = 24  # bars of the CVD regression whose R² measures noise
    flow_noise_floor: float = 0.5  # multiplier at R² = 0 (1 at R² = 1): noisy flow is discounted
    flow_crowd_lookback: int = 168  # bars of |flow| history the current reading is ranked against
    flow_crowd_start: float = 0.9  # percentile rank above which flow counts as crowded
    flow_crowd_penalty: float = 0.5  # multiplier lost at the 100th percentile (linear from crowd_start)

    # --- O open interest ---------------------------------------------------------------------------
    oi_window: int = 24  # bars over which the OI change (log) and the price change are measured
    oi_lookback: int = 168  # bars of OI-change history whose median |change| is the OI unit
    oi_ref: float = 2.0  # OI change in median-|change| units counted as strong
    oi_price_ref: float = 1.5  # price change in ATR * sqrt(oi_window) units counted as a clear direction (sd ~0.63)
    oi_falling_weight: float = 0.5  # weight of falling OI (positions closing) relative to rising OI
    oi_min_points: int = 12  # fewer OI-change points than this: O unavailable
    oi_floor: float = 1e-4  # smallest median |log OI change| used as the unit (flat OI series)
    oi_max_age_bars: int = 2  # an OI point older than this many bars at a bar's close is not used for it

    # --- B basis and funding -----------------------------------------------------------------------
    # Piecewise scale: |x| <= dead: 0; up to full: linear to 1 (premium = demand, bullish when positive);
    # from full to extreme: linear back through 0 to -1 (crowded, contrarian); beyond extreme: -1.
    basis_dead: float = 0.0002  # (mark - index) / index
    basis_full: float = 0.002
    basis_extreme: float = 0.01
    funding_dead: float = 0.0001  # funding rate per period; Binance's usual +0.01 % sits in the dead zone
    funding_full: float = 0.0005
    funding_extreme: float = 0.002
    basis_weight: float = 0.4  # basis vs funding share of B

    # --- Q large trades and liquidations -----------------------------------------------------------
    large_trade_lookback_bars: int = 4  # trades/liquidations within this many bars before as_of count
    large_trade_quantile: float = 0.9  # "large" = at or above this quantile of the sample's quote values
    large_trade_min_sample: int = 20  # below this many trades every trade counts (no distribution yet)
    large_trade_ref: float = 0.5  # buy/sell imbalance of large value counted as strong
    large_trade_prior: float = 10.0  # shrinkage: imbalance scaled by n / (n + prior) large prints

    # --- S structure -------------------------------------------------------------------------------
    zigzag_atr: float = 2.0  # a swing reverses after a move of this many ATR against it
    structure_retrace_ok: float = 0.618  # pullback depth (of the last leg) still considered healthy
    structure_retrace_broken: float = 1.0  # depth at which the structure counts as broken
    structure_fresh_bars: int = 24  # pivot age up to which the structure is fully fresh
    structure_stale_bars: int = 96  # pivot age at which freshness reaches 0
    structure_extension_ok: float = 2.0  # distance from the slow EMA in ATR that is still fine
    structure_extension_max: float = 4.0  # distance at which the move counts as over-extended
    structure_weights: tuple[float, float, float, float] = (0.35, 0.25, 0.15, 0.25)
    # ^ consistency (HH/HL or LH/LL), retracement, freshness, extension

    # --- V volume ----------------------------------------------------------------------------------
    volume_short_ema: int = 24  # span of the short quote-volume EMA (participation numerator)
    volume_long_ema: int = 168  # span of the long quote-volume EMA (participation denominator)
    volume_roc_lag: int = 6  # bars over which the short EMA's rate of change is measured
    volume_ratio_ref: float = 0.7  # log(short/long) counted as strong participation (about x2)
    volume_roc_ref: float = 0.5  # log change of the short EMA over volume_roc_lag counted as strong
    volume_participation_weight: float = 0.7  # participation vs rate-of-change share of V

    # --- L liquidity -------------------------------------------------------------------------------
    liquidity_band: float = 0.005  # depth is summed within +-0.5 % of the mid price
    liquidity_sweep_usdt: float = 10_000.0  # notional of the market order whose impact is measured
    liquidity_spread_bad: float = 0.001  # spread (fraction of mid) scoring 0
    liquidity_depth_min: float = 10_000.0  # depth (USDT, both sides) scoring 0
    liquidity_depth_good: float = 1_000_000.0  # depth scoring 1 (log scale between the two)
    liquidity_impact_bad: float = 0.002  # sweep impact (fraction of mid) scoring 0
    liquidity_weights: tuple[float, float, float, float] = (0.3, 0.3, 0.3, 0.1)
    # ^ spread, depth, impact, balance (1 - |bid depth - ask depth| / total)

    # --- I independence ----------------------------------------------------------------------------
    independence_window: int = 168  # bars of returns joined by time with BTC and ETH
    independence_min_points: int = 24  # fewer joined returns than this: I unavailable

    # --- F fund-leading modulator ------------------------------------------------------------------
    fund_window: int = 24  # bars of price change that capital flow is compared with
    fund_price_ref: float = 1.5  # that change in ATR * sqrt(fund_window) units counted as strong (sd ~0.63)
    fund_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)  # CVD, OI, volume shares of flow momentum
    fund_gain: float = 0.4  # strength multiplier change per unit of |F|/100 on the side F supports
    fund_bound: float = 0.2  # the multiplier stays within [1 - bound, 1 + bound]

    # --- composite ---------------------------------------------------------------------------------
    directional_weights: tuple[float, float, float, float, float, float] = (0.25, 0.20, 0.20, 0.15, 0.10, 0.10)
    # ^ T, M, C, O, B, Q; unavailable factors are left out and the rest renormalised
    quality_weights: tuple[float, float, float, float] = (0.30, 0.25, 0.25, 0.20)  # S, V, L, I
    neutral_band: float = 10.0  # |weighted directional mean| below this: no direction
    full_evidence: float = 60.0  # |weighted directional mean| that maps to strength 100 before scaling
    quality_floor: float = 0.6  # strength multiplier at quality 0
    quality_ceiling: float = 1.2  # strength multiplier at quality 100 (1.0 at quality 100/3*2 = 66.7)

    def __post_init__(self) -> None:
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                if any(w < 0 for w in value) or sum(value) <= 0:
                    problems.append(f"{f.name} must be non-negative weights with a positive sum")
            elif isinstance(value, int) and value < 1:
                problems.append(f"{f.name} must be >= 1")
            elif isinstance(value, float) and value < 0:
                problems.append(f"{f.name} must be >= 0")
        if len(self.directional_weights) != len(DIRECTIONAL) or len(self.quality_weights) != len(QUALITY):
            problems.append("one weight per factor is required")
        if not 0 < self.large_trade_quantile < 1 or not 0 <= self.flow_crowd_start < 1:
            problems.append("large_trade_quantile and flow_crowd_start must lie in (0, 1)")
        if not (
            self.basis_dead < self.basis_full < self.basis_extreme
            and self.funding_dead < self.funding_full < self.funding_extreme
        ):
            problems.append("piecewise scales need dead < full < extreme")
        if self.fund_bound >= 1 or self.quality_floor > self.quality_ceiling:
            problems.append("fund_bound must be < 1 and quality_floor <= quality_ceiling")
        spans = (self.trend_ema_fast, self.trend_ema_slow, self.momentum_ema, self.flow_ema, self.volume_short_ema)
        if min(*spans, self.volume_long_ema, self.atr_period) < 2:
            problems.append("EMA spans and atr_period must be >= 2 (1 would not smooth at all)")
        if self.min_bars < 2 * self.momentum_lag + 1:
            problems.append("min_bars must cover two momentum lags")
        if problems:
            raise ValueError("invalid FactorConfig: " + "; ".join(problems))
