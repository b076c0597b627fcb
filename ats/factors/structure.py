"""S structure (quality, 0..100): swing structure from a ZigZag whose reversal threshold is in ATR units.

The ZigZag is a recursive state machine advanced one bar at a time (vectorised across symbols), so the
incremental scorer never replays history. A swing reverses once price moves `zigzag_atr` ATR against its
running extreme; the extreme becomes a pivot. S rewards consistent swings (higher highs and higher lows, or
lower highs and lower lows: direction-free), a shallow pullback from the last pivot, a recent pivot, and a
price not over-extended from its slow EMA.
"""

from __future__ import annotations

import numpy as np

from ats.domain import FloatArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import BoolArray, ramp_down, safe_div

PIVOTS = 4  # two highs and two lows: enough for "higher highs and higher lows"

ZIGZAG_FIELDS = ("zz_dir", "zz_ext", "zz_ext_i", "zz_hi", "zz_hi_i", "zz_lo", "zz_lo_i", "piv_n")


def zigzag_state(symbols: int) -> dict[str, FloatArray]:
    """A fresh ZigZag for each symbol: no swing direction yet, no pivots."""
    state = {name: np.zeros(symbols) for name in ZIGZAG_FIELDS}
    state["piv_p"] = np.zeros((symbols, PIVOTS))
    state["piv_i"] = np.zeros((symbols, PIVOTS))
    return state


def zigzag_step(
    zz: dict[str, FloatArray],
    valid: BoolArray,
    price: FloatArray,
    threshold: FloatArray,
    index: FloatArray,
) -> None:
    """Advance every symbol's ZigZag by one closing price (in place). `index` counts the symbol's valid bars.

    Direction 0 means no swing is established yet: the running high and low are tracked until their
    distance reaches the threshold, and whichever came first becomes the first pivot. Direction +1 is an
    up swing tracking its highest close, -1 a down swing tracking its lowest. Closes, not highs and lows,
    so one wide bar cannot be both the top of one swing and the bottom of the next.
    """
    direction = zz["zz_dir"]
    armed = valid & (threshold > 0)
    start = valid & (index == 0)
    undecided = valid & (direction == 0)
    raise_high = start | (undecided & (price > zz["zz_hi"]))
    lower_low = start | (undecided & (price < zz["zz_lo"]))
    run_high = np.where(raise_high, price, zz["zz_hi"])
    run_high_i = np.where(raise_high, index, zz["zz_hi_i"])
    run_low = np.where(lower_low, price, zz["zz_lo"])
    run_low_i = np.where(lower_low, index, zz["zz_lo_i"])
    decide = undecided & armed & (run_high - run_low >= threshold)
    high_first = run_high_i < run_low_i

    up = valid & (direction == 1)
    down = valid & (direction == -1)
    new_extreme = (up & (price > zz["zz_ext"])) | (down & (price < zz["zz_ext"]))
    extreme = np.where(new_extreme, price, zz["zz_ext"])
    extreme_i = np.where(new_extreme, index, zz["zz_ext_i"])
    top = up & armed & (extreme - price >= threshold)
    bottom = down & armed & (price - extreme >= threshold)

    pivot = np.where(decide, np.where(high_first, run_high, run_low), extreme)
    pivot_i = np.where(decide, np.where(high_first, run_high_i, run_low_i), extreme_i)
    turned_down = (decide & high_first) | top
    turned_up = (decide & ~high_first) | bottom
    push = turned_down | turned_up

    zz["zz_dir"] = np.where(turned_down, -1.0, np.where(turned_up, 1.0, direction))
    zz["zz_ext"] = np.where(decide, np.where(high_first, run_low, run_high), np.where(push, price, extreme))
    zz["zz_ext_i"] = np.where(decide, np.where(high_first, run_low_i, run_high_i), np.where(push, index, extreme_i))
    zz["zz_hi"], zz["zz_hi_i"], zz["zz_lo"], zz["zz_lo_i"] = run_high, run_high_i, run_low, run_low_i
    if push.any():
        shifted_p = np.concatenate([zz["piv_p"][:, 1:], pivot[:, None]], axis=1)
        shifted_i = np.concatenate([zz["piv_i"][:, 1:], pivot_i[:, None]], axis=1)
        zz["piv_p"] = np.where(push[:, None], shifted_p, zz["piv_p"])
        zz["piv_i"] = np.where(push[:, None], shifted_i, zz["piv_i"])
        zz["piv_n"] = np.minimum(zz["piv_n"] + push, PIVOTS)


def structure(
    zz: dict[str, FloatArray],
    bars_seen: FloatArray,
    close: FloatArray,
    slow_ema: FloatArray,
    atr: FloatArray,
    config: FactorConfig,
) -> FloatArray:
    """S in [0, 100]. Components without enough pivots score a neutral 0.5.

    Pivots p0..p3 (newest last) alternate highs and lows. The structure's direction is where both the highs
    (p3 vs p1) and the lows (p2 vs p0) point; its consistency is 1 when they agree, 0.5 when one is flat or
    unknown, 0 when they disagree. Retracement is the depth of the current pullback against that direction
    (or, while price moves with it, of the last completed pullback) as a fraction of the impulse before it.
    """
    p, pivot_i, count = zz["piv_p"], zz["piv_i"], zz["piv_n"]
    with np.errstate(invalid="ignore"):
        trend_votes = np.sign(p[:, 3] - p[:, 1]) + np.sign(p[:, 2] - p[:, 0])
        full = count >= PIVOTS
        consistency = np.where(full, np.abs(trend_votes) / 2.0, 0.5)
        side = np.sign(trend_votes)
        last_leg, previous_leg = p[:, 3] - p[:, 2], p[:, 2] - p[:, 1]
        pulling_back = zz["zz_dir"] != side
        depth = np.where(
            pulling_back,
            safe_div(np.abs(close - p[:, 3]), np.abs(last_leg)),
            safe_div(np.abs(last_leg), np.abs(previous_leg)),
        )
        retracement = np.where(
            full & (side != 0),
            ramp_down(depth, config.structure_retrace_ok, config.structure_retrace_broken),
            0.5,
        )
        age = bars_seen - 1.0 - pivot_i[:, 3]
        freshness = np.where(count >= 1, ramp_down(age, config.structure_fresh_bars, config.structure_stale_bars), 0.5)
        stretch = safe_div(np.abs(close - slow_ema), atr)
        extension = ramp_down(stretch, config.structure_extension_ok, config.structure_extension_max)
    weights = np.asarray(config.structure_weights)
    parts = np.stack([consistency, retracement, freshness, extension])
    score: FloatArray = 100.0 * (weights[:, None] * parts).sum(axis=0) / weights.sum()
    return score
