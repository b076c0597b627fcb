"""Q large trades and liquidations (directional, -100..100): imbalance between large buy and large sell value.

"Large" is relative to the symbol's own trade sizes (at or above a quantile of the recent prints' quote
values), never a fixed base quantity, so it means the same for BTC and for a small coin. Liquidations always
count. The imbalance is shrunk toward 0 when there are few large prints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ats.factors.config import FactorConfig
from ats.factors.indicators import Reading
from ats.factors.inputs import TradeFlow


def large_trade_imbalance(flow: TradeFlow, start_ms: int, end_ms: int, config: FactorConfig) -> float | None:
    """Q for one symbol from prints in (start_ms, end_ms]; None when there are none."""
    recent = (flow.time_ms > start_ms) & (flow.time_ms <= end_ms) & np.isfinite(flow.quote_value)
    recent &= flow.quote_value > 0
    value = flow.quote_value[recent]
    if value.size == 0:
        return None
    forced = flow.forced[recent]
    regular = value[~forced]
    if regular.size >= config.large_trade_min_sample:
        large = forced | (value >= np.quantile(regular, config.large_trade_quantile))
    else:
        large = np.ones(value.size, dtype=bool)
    buys = flow.is_buy[recent]
    bought = float(value[large & buys].sum())
    sold = float(value[large & ~buys].sum())
    total = bought + sold
    if not np.isfinite(total) or total <= 0:
        return None
    imbalance = (bought - sold) / total
    shrink = large.sum() / (large.sum() + config.large_trade_prior)
    return float(100.0 * np.tanh(imbalance / config.large_trade_ref) * shrink)


def liquidations(flows: Sequence[TradeFlow | None], start_ms: int, end_ms: int, config: FactorConfig) -> Reading:
    values = [None if f is None else large_trade_imbalance(f, start_ms, end_ms, config) for f in flows]
    return Reading(
        np.array([0.0 if v is None else v for v in values]),
        np.array([v is not None for v in values], dtype=bool),
    )
