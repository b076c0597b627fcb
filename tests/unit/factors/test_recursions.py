"""The vectorised recursions (blocked EMAs, the ZigZag) against plain bar-by-bar loops, and split invariance:
feeding a history in any chunks gives bit-identical values, which is what makes incremental scoring equal the
cold scan."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ats.factors.config import FactorConfig
from ats.factors.indicators import ACROSS, SMOOTH_BLOCK, _running_sums, initial_smoothing, smooth, smoothing_tables
from ats.factors.structure import PIVOTS, zigzag_advance, zigzag_state

ALPHAS = np.array([2 / 13, 2 / 27, 1 / 14, 2 / 169])


def series(seed: int, rows: int, bars: int) -> np.ndarray:
    """Random inputs with late starts, gaps and unknown stretches (NaN)."""
    rng = np.random.default_rng(seed)
    x = 10.0 + np.cumsum(rng.normal(0, 0.01, (rows, bars)), axis=1)
    for r in range(rows):
        x[r, : rng.integers(0, bars // 2)] = np.nan  # starts later
        if r % 3 == 1:
            x[r, rng.integers(0, bars, 3)] = np.nan  # gaps
    return x


def chunks(bars: int, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    cuts = sorted({0, bars, *rng.integers(1, bars, rng.integers(0, 12)).tolist()})
    return list(itertools.pairwise(cuts))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 3 * SMOOTH_BLOCK))
def test_smoothing_in_any_chunks_is_bit_identical_and_follows_the_recursion(seed: int, first_bar: int) -> None:
    rows, bars = 8, 3 * SMOOTH_BLOCK + 17
    x = series(seed, rows, bars)
    tables = smoothing_tables(ALPHAS)
    whole, state = smooth(x, first_bar, initial_smoothing(rows), tables)
    parts, held = [], initial_smoothing(rows)
    for start, stop in chunks(bars, seed):
        part, held = smooth(x[:, start:stop], first_bar + start, held, tables)
        parts.append(part)
    assert np.array_equal(np.concatenate(parts, axis=1), whole, equal_nan=True)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(state, held, strict=True))

    alpha = np.resize(ALPHAS, rows)
    ema, expected = np.full(rows, np.nan), np.full((rows, bars), np.nan)
    for j in range(bars):
        known = np.isfinite(x[:, j])
        ema = np.where(known, np.where(np.isnan(ema), x[:, j], ema + alpha * (x[:, j] - ema)), ema)
        expected[:, j] = np.where(known, ema, np.nan)
    assert np.array_equal(np.isnan(whole), np.isnan(expected))
    assert np.nanmax(np.abs(whole - expected)) < 1e-12


def walk(prices: np.ndarray, thresholds: np.ndarray) -> tuple[list[tuple[float, float]], float]:
    """The ZigZag's rules, one bar at a time, in plain Python: the pivots (price, bar) and the direction."""
    pivots: list[tuple[float, float]] = []
    direction, hi, hi_i, lo, lo_i, ext, ext_i = 0.0, -np.inf, 0.0, np.inf, 0.0, 0.0, 0.0
    for i, (p, th) in enumerate(zip(prices.tolist(), thresholds.tolist(), strict=True)):
        if direction == 0:
            if p > hi:
                hi, hi_i = p, float(i)
            if p < lo:
                lo, lo_i = p, float(i)
            if th > 0 and hi - lo >= th:
                high_first = hi_i < lo_i
                pivots.append((hi, hi_i) if high_first else (lo, lo_i))
                direction = -1.0 if high_first else 1.0
                ext, ext_i = (lo, lo_i) if high_first else (hi, hi_i)
            continue
        if (direction > 0 and p > ext) or (direction < 0 and p < ext):
            ext, ext_i = p, float(i)
        if th > 0 and direction * (ext - p) >= th:
            pivots.append((ext, ext_i))
            direction, ext, ext_i = -direction, p, float(i)
    return pivots, direction


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_zigzag_in_any_chunks_equals_the_bar_by_bar_rules(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows, bars = 5, 240
    prices = np.cumsum(rng.normal(0, 1, (rows, bars)), axis=1).round(1)  # rounded: ties happen
    thresholds = np.where(rng.random((rows, bars)) < 0.05, 0.0, rng.uniform(1.0, 4.0, (rows, bars)))
    if seed % 2:  # gaps
        valid = rng.random((rows, bars)) > 0.1
        valid[0] = True
    else:  # late starts only (read in place, no reordering)
        valid = np.arange(bars) >= rng.integers(0, bars // 2, rows)[:, None]
    index = np.cumsum(valid, axis=1, dtype=np.float64) - 1.0
    zz = zigzag_state(rows)
    for start, stop in chunks(bars, seed):
        zz, _ = zigzag_advance(
            zz, valid[:, start:stop], prices[:, start:stop], thresholds[:, start:stop], index[:, start:stop]
        )
    whole, events = zigzag_advance(zigzag_state(rows), valid, prices, thresholds, index)
    assert all(np.array_equal(zz[k], whole[k]) for k in whole)
    for r in range(rows):
        pivots, direction = walk(prices[r, valid[r]], thresholds[r, valid[r]])
        assert whole["zz_dir"][r] == direction
        assert whole["piv_n"][r] == min(len(pivots), PIVOTS)
        recent = pivots[-PIVOTS:]
        held = len(recent)
        assert whole["piv_p"][r, PIVOTS - held :].tolist() == [p for p, _ in recent]
        assert whole["piv_i"][r, PIVOTS - held :].tolist() == [i for _, i in recent]
        assert events.price[events.row == r].tolist() == [p for p, _ in pivots]


def test_a_span_of_one_is_refused() -> None:
    """alpha = 1 leaves c = 0, where the blocked form has no meaning (and an EMA of span 1 smooths nothing)."""
    spans_of_one: list[Callable[[], FactorConfig]] = [
        lambda: FactorConfig(trend_ema_fast=1),
        lambda: FactorConfig(volume_long_ema=1),
        lambda: FactorConfig(atr_period=1),
    ]
    for config in spans_of_one:
        with pytest.raises(ValueError, match="must be >= 2"):
            config()


def test_running_sums_across_many_rows_are_the_cumulative_sums() -> None:
    """Many (row, block) pairs take the column-by-column path; its values are np.cumsum's, bit for bit."""
    terms = np.random.default_rng(3).normal(0, 1, (300, 3, SMOOTH_BLOCK + 1))
    assert terms[:, :, 0].size >= ACROSS
    assert np.array_equal(_running_sums(terms.copy()), np.cumsum(terms, axis=2))
