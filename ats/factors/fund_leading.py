"""F fund-leading (the +1 modulator, -100..100): capital-flow momentum minus price momentum.

Flow momentum is the taker flow (CVD) plus OI growth and volume participation, the latter two signed by the
side the flow is on (they say "more money", the CVD says which way). Positive F means money is moving up
faster than price has (money leads price up); negative, the same downward. The composite uses F to scale a
signal's strength up for the side it supports and down for the other, within bounds. Without the taker flow
(unknown taker-buy or quote volume at the newest bar) F is unavailable: OI and volume only say "more money", the
flow says which way.
"""

from __future__ import annotations

import numpy as np

from ats.domain import FloatArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import Reading, lagged, safe_div, squash, weighted_mean


def fund_leading(
    flow_now: FloatArray,
    oi_change: Reading,
    volume_participation: FloatArray,
    close: FloatArray,
    atr: FloatArray,
    config: FactorConfig,
) -> Reading:
    """`flow_now`: EMA(delta)/EMA(quote volume); `oi_change`: O's z; `volume_participation`: log(short/long)."""
    flow_known = np.isfinite(flow_now)
    flow = np.where(flow_known, flow_now, 0.0)
    side = np.sign(flow)
    parts = np.stack(
        [
            squash(flow, config.flow_ref),
            side * squash(np.where(oi_change.available, oi_change.value, 0.0), config.oi_ref),
            side * squash(volume_participation, config.volume_ratio_ref),
        ]
    )
    known = np.stack([flow_known, oi_change.available & flow_known, flow_known])
    money, _ = weighted_mean(parts, known, np.asarray(config.fund_weights))
    window = config.fund_window
    price_move = close[:, -1] - lagged(close, window)
    price = squash(safe_div(price_move, atr * np.sqrt(window)), config.fund_price_ref)
    value = 100.0 * np.clip((money - price) / 2.0, -1.0, 1.0)
    return Reading(value, flow_known & np.isfinite(price_move))
