"""Hand-checked numeric helpers."""

from __future__ import annotations

import numpy as np
import pytest

from ats.factors.indicators import (
    LOG_RATIO_CAP,
    finite_median,
    lagged,
    log_ratio,
    masked_correlation,
    masked_linreg,
    rank_of_last,
    safe_div,
    weighted_mean,
)


def test_safe_div_is_zero_for_zero_and_non_finite() -> None:
    out = safe_div(np.array([1.0, 1.0, np.nan, 6.0]), np.array([0.0, 1e-15, 1.0, 3.0]))
    assert out.tolist() == [0.0, 0.0, 0.0, 2.0]


def test_linreg_on_a_line_and_with_a_gap() -> None:
    y = 3.0 + 0.5 * np.arange(10.0)
    slope, r2 = masked_linreg(y[None], np.ones((1, 10), dtype=bool))
    assert slope[0] == pytest.approx(0.5)
    assert r2[0] == pytest.approx(1.0)
    # A masked gap keeps its width: the slope is still per bar, not per valid point.
    mask = np.ones((1, 10), dtype=bool)
    mask[0, 4:7] = False
    y_gap = np.where(mask[0], y, np.nan)
    slope, r2 = masked_linreg(y_gap[None], mask)
    assert slope[0] == pytest.approx(0.5)
    assert r2[0] == pytest.approx(1.0)


def test_linreg_degenerate_rows_are_neutral() -> None:
    flat = np.full((1, 5), 2.0)
    one_point = np.array([[np.nan, np.nan, 1.0]])
    slope, r2 = masked_linreg(np.vstack([flat[:, :3], one_point]), np.isfinite(np.vstack([flat[:, :3], one_point])))
    assert slope.tolist() == [0.0, 0.0]
    assert r2.tolist() == [0.0, 0.0]


def test_correlation_by_hand() -> None:
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    corr, points = masked_correlation(a, -2 * a, np.ones_like(a, dtype=bool))
    assert corr[0] == pytest.approx(-1.0)
    assert points[0] == 4
    _, points = masked_correlation(a, np.zeros_like(a), np.ones_like(a, dtype=bool))
    assert points[0] == 0  # no variation: no correlation defined


def test_rank_of_last_counts_ties_half() -> None:
    values = np.array([[1.0, 2.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    rank = rank_of_last(values, np.isfinite(values))
    assert rank[0] == pytest.approx((1 + 0.5 * 2) / 4)
    assert rank[1] == pytest.approx(0.5)


def test_finite_median_skips_nan() -> None:
    values = np.array([[3.0, np.nan, 1.0, 2.0], [np.nan, np.nan, np.nan, np.nan], [4.0, 1.0, 3.0, 2.0]])
    median, count = finite_median(values)
    assert median.tolist() == [2.0, 0.0, 2.5]
    assert count.tolist() == [3, 0, 4]


def test_log_ratio_edges() -> None:
    out = log_ratio(np.array([np.e, 0.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0]))
    assert out.tolist() == pytest.approx([1.0, -LOG_RATIO_CAP, LOG_RATIO_CAP, 0.0])


def test_weighted_mean_renormalises_over_available() -> None:
    values = np.array([[10.0], [40.0], [99.0]])
    available = np.array([[True], [True], [False]])
    mean, coverage = weighted_mean(values, available, np.array([1.0, 3.0, 4.0]))
    assert mean[0] == pytest.approx((10 + 120) / 4)
    assert coverage[0] == pytest.approx(0.5)


def test_lagged_beyond_the_window_is_nan() -> None:
    window = np.arange(6.0).reshape(2, 3)
    assert lagged(window, 2).tolist() == [0.0, 3.0]
    assert np.isnan(lagged(window, 3)).all()
