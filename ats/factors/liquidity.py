"""L liquidity (quality, 0..100) from the order book: spread, depth within a band around the mid, the price
impact of a fixed-notional market order, and how balanced the two sides are. Everything is relative to the
mid price or in USDT, so the score does not depend on the price level."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ats.domain import FloatArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import Reading, ramp_down
from ats.factors.inputs import BookSnapshot


def _sweep_impact(price: FloatArray, qty: FloatArray, notional: float, mid: float) -> float:
    """|average fill price / mid - 1| of a market order for `notional` USDT; inf when the book is too thin."""
    value = price * qty
    filled = np.cumsum(value)
    if filled.size == 0 or filled[-1] < notional:
        return float("inf")
    last = int(np.searchsorted(filled, notional))
    before = filled[last - 1] if last else 0.0
    quantity = qty[:last].sum() + (notional - before) / price[last]
    return abs(float(notional / quantity) / mid - 1.0)


def book_liquidity(book: BookSnapshot, config: FactorConfig) -> float | None:
    """L for one symbol; None when the book is empty, crossed or malformed."""
    arrays = (book.bid_price, book.bid_qty, book.ask_price, book.ask_qty)
    if any(a.size == 0 or not np.isfinite(a).all() or (a <= 0).any() for a in arrays):
        return None
    best_bid, best_ask = float(book.bid_price[0]), float(book.ask_price[0])
    if best_ask <= best_bid:
        return None
    mid = 0.5 * (best_bid + best_ask)
    spread = (best_ask - best_bid) / mid
    near_bids = book.bid_price >= mid * (1.0 - config.liquidity_band)
    near_asks = book.ask_price <= mid * (1.0 + config.liquidity_band)
    bid_depth = float((book.bid_price * book.bid_qty)[near_bids].sum())
    ask_depth = float((book.ask_price * book.ask_qty)[near_asks].sum())
    depth = bid_depth + ask_depth
    depth_score = np.clip(
        np.log(max(depth, 1e-300) / config.liquidity_depth_min)
        / np.log(config.liquidity_depth_good / config.liquidity_depth_min),
        0.0,
        1.0,
    )
    impact = max(
        _sweep_impact(book.ask_price, book.ask_qty, config.liquidity_sweep_usdt, mid),
        _sweep_impact(book.bid_price, book.bid_qty, config.liquidity_sweep_usdt, mid),
    )
    balance = 1.0 - abs(bid_depth - ask_depth) / depth if depth > 0 else 0.0
    parts = np.array(
        [
            ramp_down(np.array(spread), 0.0, config.liquidity_spread_bad),
            depth_score,
            ramp_down(np.array(impact), 0.0, config.liquidity_impact_bad) if np.isfinite(impact) else 0.0,
            balance,
        ],
        dtype=np.float64,
    )
    weights = np.asarray(config.liquidity_weights)
    score = float(100.0 * weights @ parts / weights.sum())
    return score if np.isfinite(score) else None


def liquidity(books: Sequence[BookSnapshot | None], config: FactorConfig) -> Reading:
    values = [None if b is None else book_liquidity(b, config) for b in books]
    return Reading(
        np.array([0.0 if v is None else v for v in values]),
        np.array([v is not None for v in values], dtype=bool),
    )
