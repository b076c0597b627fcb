"""L liquidity (quality, 0..100) from the order book: spread, depth within a band around the mid, the price
impact of a fixed-notional market order, and how balanced the two sides are. Everything is relative to the
mid price or in USDT, so the score does not depend on the price level.

Books of all symbols are padded into (symbols, levels) arrays and scored together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ats.domain import FloatArray
from ats.factors.config import FactorConfig
from ats.factors.indicators import BoolArray, Reading, ramp_down, safe_div
from ats.factors.inputs import BookSnapshot


def _padded(books: Sequence[BookSnapshot], side: str) -> tuple[FloatArray, FloatArray]:
    """(books, levels) prices and quantities of one side, NaN beyond a book's depth."""
    levels = max(getattr(b, f"{side}_price").size for b in books)
    price = np.full((len(books), max(levels, 1)), np.nan)
    qty = np.full_like(price, np.nan)
    for row, book in enumerate(books):
        p, q = getattr(book, f"{side}_price"), getattr(book, f"{side}_qty")
        n = min(p.size, q.size)
        price[row, :n] = p[:n]
        qty[row, :n] = q[:n]
    return price, qty


def _well_formed(price: FloatArray, qty: FloatArray) -> BoolArray:
    """At least one level, and every level present has a positive finite price and quantity."""
    present = ~np.isnan(price)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(price) & (price > 0) & np.isfinite(qty) & (qty > 0)
    ok: BoolArray = present[:, 0] & (good | ~present).all(axis=1)
    return ok


def _sweep_impact(price: FloatArray, qty: FloatArray, notional: float, mid: FloatArray) -> FloatArray:
    """|average fill price / mid - 1| of a market order for `notional` USDT on each book; inf when too thin."""
    value = np.where(np.isnan(price), 0.0, price * qty)
    filled = np.cumsum(value, axis=1)
    fillable = filled[:, -1] >= notional
    last = np.argmax(filled >= notional, axis=1)
    rows = np.arange(price.shape[0])
    before_value = np.where(last > 0, filled[rows, np.maximum(last - 1, 0)], 0.0)
    held = np.cumsum(np.where(np.isnan(qty), 0.0, qty), axis=1)
    before_qty = np.where(last > 0, held[rows, np.maximum(last - 1, 0)], 0.0)
    quantity = before_qty + safe_div(notional - before_value, price[rows, last])
    impact = np.abs(safe_div(np.full(price.shape[0], notional), quantity) / mid - 1.0)
    return np.where(fillable, impact, np.inf)


def liquidity(books: Sequence[BookSnapshot | None], config: FactorConfig) -> Reading:
    value = np.zeros(len(books))
    available = np.zeros(len(books), dtype=bool)
    present = [i for i, b in enumerate(books) if b is not None]
    if not present:
        return Reading(value, available)
    held = [b for b in books if b is not None]
    bid_p, bid_q = _padded(held, "bid")
    ask_p, ask_q = _padded(held, "ask")
    with np.errstate(invalid="ignore"):
        ok = _well_formed(bid_p, bid_q) & _well_formed(ask_p, ask_q) & (ask_p[:, 0] > bid_p[:, 0])
    best_bid = np.where(ok, bid_p[:, 0], 1.0)
    best_ask = np.where(ok, ask_p[:, 0], 1.0)
    mid = 0.5 * (best_bid + best_ask)
    spread = (best_ask - best_bid) / mid
    with np.errstate(invalid="ignore"):
        near_bids = bid_p >= (mid * (1.0 - config.liquidity_band))[:, None]
        near_asks = ask_p <= (mid * (1.0 + config.liquidity_band))[:, None]
    # cumulative sums run level by level, so padding a book does not change its sum's rounding
    bid_depth = np.cumsum(np.where(near_bids, bid_p * bid_q, 0.0), axis=1)[:, -1]
    ask_depth = np.cumsum(np.where(near_asks, ask_p * ask_q, 0.0), axis=1)[:, -1]
    depth = bid_depth + ask_depth
    depth_score = np.clip(
        np.log(np.maximum(depth, 1e-300) / config.liquidity_depth_min)
        / np.log(config.liquidity_depth_good / config.liquidity_depth_min),
        0.0,
        1.0,
    )
    impact = np.maximum(
        _sweep_impact(ask_p, ask_q, config.liquidity_sweep_usdt, mid),
        _sweep_impact(bid_p, bid_q, config.liquidity_sweep_usdt, mid),
    )
    impact_score = np.where(
        np.isfinite(impact),
        ramp_down(np.where(np.isfinite(impact), impact, 0.0), 0.0, config.liquidity_impact_bad),
        0.0,
    )
    balance = np.where(depth > 0, 1.0 - safe_div(np.abs(bid_depth - ask_depth), depth), 0.0)
    weights = np.asarray(config.liquidity_weights)
    parts = np.stack([ramp_down(spread, 0.0, config.liquidity_spread_bad), depth_score, impact_score, balance])
    score = 100.0 * (weights[:, None] * parts).sum(axis=0) / weights.sum()
    ok &= np.isfinite(score)
    value[present] = np.where(ok, score, 0.0)
    available[present] = ok
    return Reading(value, available)
