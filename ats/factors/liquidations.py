"""Q large trades and liquidations (directional, -100..100): imbalance between large buy and large sell value.

"Large" is relative to the symbol's own trade sizes (at or above a quantile of the recent regular prints'
quote values), never a fixed base quantity, so it means the same for BTC and for a small coin. Liquidations
always count. The imbalance is shrunk toward 0 when there are few large prints. All symbols' prints are
concatenated and reduced per symbol in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ats.domain import FloatArray, IntArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import Reading
from ats.factors.inputs import TradeFlow


def _quantile_per_owner(owner: IntArray, value: FloatArray, owners: int, q: float) -> tuple[FloatArray, IntArray]:
    """Each owner's q-quantile of its values (linear between order statistics) and how many it has."""
    count = np.bincount(owner, minlength=owners)
    by_value = np.argsort(value)
    # a stable sort on small integers is a radix sort: values stay ordered within each owner
    narrow = owner[by_value].astype(np.int16 if owners < 2**15 else np.int64)
    ordered = value[by_value[np.argsort(narrow, kind="stable")]]
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    position = q * np.maximum(count - 1, 0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, np.maximum(count - 1, 0))
    if not ordered.size:
        return np.zeros(owners), count
    at_low = ordered[np.minimum(first + low, ordered.size - 1)]
    at_high = ordered[np.minimum(first + high, ordered.size - 1)]
    return at_low + (position - low) * (at_high - at_low), count


def liquidations(flows: Sequence[TradeFlow | None], start_ms: int, end_ms: int, config: FactorConfig) -> Reading:
    """Q per symbol from its prints in (start_ms, end_ms]; unavailable without any."""
    value_out = np.zeros(len(flows))
    available = np.zeros(len(flows), dtype=bool)
    held = [(i, f) for i, f in enumerate(flows) if f is not None and f.time_ms.size]
    if not held:
        return Reading(value_out, available)
    owners = len(held)
    owner = np.repeat(np.arange(owners, dtype=np.int64), [f.time_ms.size for _, f in held])
    time = np.concatenate([f.time_ms for _, f in held])
    value = np.concatenate([f.quote_value for _, f in held]).astype(np.float64)
    buy = np.concatenate([f.is_buy for _, f in held]).astype(bool)
    forced = np.concatenate([f.forced for _, f in held]).astype(bool)
    with np.errstate(invalid="ignore"):
        recent = (time > start_ms) & (time <= end_ms) & np.isfinite(value) & (value > 0)
    owner, value, buy, forced = owner[recent], value[recent], buy[recent], forced[recent]

    regular = ~forced
    threshold, regular_count = _quantile_per_owner(owner[regular], value[regular], owners, config.large_trade_quantile)
    threshold = np.where(regular_count >= config.large_trade_min_sample, threshold, -np.inf)
    large = forced | (value >= threshold[owner])
    bought = np.bincount(owner, weights=np.where(large & buy, value, 0.0), minlength=owners)
    sold = np.bincount(owner, weights=np.where(large & ~buy, value, 0.0), minlength=owners)
    large_count = np.bincount(owner, weights=large.astype(np.float64), minlength=owners)
    total = bought + sold
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(total) & (total > 0)
        imbalance = np.where(ok, (bought - sold) / np.where(ok, total, 1.0), 0.0)
    shrink = large_count / (large_count + config.large_trade_prior)
    rows = [i for i, _ in held]
    value_out[rows] = np.where(ok, 100.0 * np.tanh(imbalance / config.large_trade_ref) * shrink, 0.0)
    available[rows] = ok
    return Reading(value_out, available)
