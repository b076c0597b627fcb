"""Vectorised numeric building blocks shared by the factors.

Arrays are shaped (symbols, bars) with the newest bar last. Reductions run along each row's bar axis (never
through BLAS), so a symbol's result does not depend on which other symbols share the batch. Windows may hold
NaN where a symbol had no bar (new listings, gaps); every helper takes or derives a validity mask instead of
assuming full rows, and none returns NaN or infinity for finite or masked input: degenerate cases (flat
prices, zero volume, empty windows) yield 0, the neutral value.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ats.domain import FloatArray

BoolArray = npt.NDArray[np.bool_]

TINY = 1e-12  # denominators at or below this are treated as zero (degenerate input, neutral result)


def span_alpha(span: int) -> float:
    """Smoothing factor of an EMA with the given span (the usual 2 / (span + 1))."""
    return 2.0 / (span + 1.0)


def safe_div(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """numerator / denominator, 0 where the denominator is (nearly) zero or the result is not finite."""
    ok = np.abs(denominator) > TINY
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.where(ok, numerator / np.where(ok, denominator, 1.0), 0.0)
    return np.where(np.isfinite(out), out, 0.0)


def squash(value: FloatArray, ref: float) -> FloatArray:
    """Signed strength in (-1, 1): tanh(value / ref); `ref` is a strong reading (0.76)."""
    return np.tanh(value / ref)


def unit_squash(value: FloatArray, ref: float) -> FloatArray:
    """Strength in (0, 1) with 0.5 at value 0, for quality scores built from signed evidence."""
    return 0.5 + 0.5 * np.tanh(value / ref)


LOG_RATIO_CAP = 20.0  # |log(a / b)| is capped here; a zero on one side gives the cap, zeros on both give 0


def log_ratio(a: FloatArray, b: FloatArray) -> FloatArray:
    """log(a / b) for non-negative a and b, defined everywhere: the cap when one side is 0, 0 when both are."""
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.log(np.where(a > 0, a, 1.0)) - np.log(np.where(b > 0, b, 1.0))
    capped = np.clip(raw, -LOG_RATIO_CAP, LOG_RATIO_CAP)
    return np.where(a > 0, np.where(b > 0, capped, LOG_RATIO_CAP), np.where(b > 0, -LOG_RATIO_CAP, 0.0))


def ramp_down(value: FloatArray, ok: float, bad: float) -> FloatArray:
    """1 up to `ok`, 0 from `bad` on, linear between: a penalty that starts at a tolerance."""
    return np.clip((bad - value) / (bad - ok), 0.0, 1.0)


def masked_linreg(y: FloatArray, mask: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Least-squares slope (per bar) and R² of each row of y against bar position, over masked entries.

    Positions are the bars' places in the window, so a gap keeps its width instead of closing up.
    Rows with fewer than two valid points, or no variation, give slope 0 and R² 0.
    """
    weight = mask.astype(np.float64)
    y0 = np.where(mask, y, 0.0)
    x = np.arange(y.shape[-1], dtype=np.float64)
    count = weight.sum(axis=-1)
    mean_x = safe_div((weight * x).sum(axis=-1), count)
    mean_y = safe_div(y0.sum(axis=-1), count)
    dx = (x - mean_x[..., None]) * weight
    dy = (y0 - mean_y[..., None]) * weight
    sxx = (dx * dx).sum(axis=-1)
    sxy = (dx * dy).sum(axis=-1)
    syy = (dy * dy).sum(axis=-1)
    slope = safe_div(sxy, sxx)
    r2 = np.clip(safe_div(sxy * sxy, sxx * syy), 0.0, 1.0)
    return slope, r2


def masked_correlation(a: FloatArray, b: FloatArray, mask: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Row-wise Pearson correlation of a and b over masked entries, and the number of points used
    (0 when either side does not vary: no correlation is defined)."""
    weight = mask.astype(np.float64)
    a0 = np.where(mask, a, 0.0)
    b0 = np.where(mask, b, 0.0)
    count = weight.sum(axis=-1)
    da = (a0 - safe_div(a0.sum(axis=-1), count)[..., None]) * weight
    db = (b0 - safe_div(b0.sum(axis=-1), count)[..., None]) * weight
    cov = (da * db).sum(axis=-1)
    var_a = (da * da).sum(axis=-1)
    var_b = (db * db).sum(axis=-1)
    scale = np.sqrt(var_a * var_b)
    corr = np.clip(safe_div(cov, scale), -1.0, 1.0)
    return corr, np.where(scale > TINY, count, 0.0)


def rank_of_last(values: FloatArray, mask: BoolArray) -> FloatArray:
    """Percentile rank (0..1) of each row's last value among the row's masked values (ties count half)."""
    current = values[..., -1:]
    count = mask.sum(axis=-1)
    below = (mask & (values < current)).sum(axis=-1)
    equal = (mask & (values == current)).sum(axis=-1)
    return safe_div(below + 0.5 * equal, count.astype(np.float64))


def finite_median(values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Row-wise median over the finite entries (NaN marks a missing one), and how many there were."""
    finite = np.isfinite(values)
    count = finite.sum(axis=-1)
    ordered = np.sort(np.where(finite, values, np.inf), axis=-1)
    low = np.maximum(count - 1, 0) // 2
    high = np.maximum(count // 2, low)
    pick_low = np.take_along_axis(ordered, low[..., None], axis=-1)[..., 0]
    pick_high = np.take_along_axis(ordered, high[..., None], axis=-1)[..., 0]
    median = np.where(count > 0, 0.5 * (pick_low + pick_high), 0.0)
    return median, count.astype(np.float64)


def weighted_mean(values: FloatArray, available: BoolArray, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Mean of factor rows (factors, symbols) over the available ones, weights renormalised.

    Returns the mean and the share of the total weight that was available (the coverage).
    """
    w = weights[:, None] * available
    total = w.sum(axis=0)
    mean = safe_div((w * np.where(available, values, 0.0)).sum(axis=0), total)
    return mean, total / weights.sum()


def lagged(window: FloatArray, lag: int) -> FloatArray:
    """The value `lag` bars before the newest one (NaN when the window is shorter)."""
    if lag >= window.shape[-1]:
        return np.full(window.shape[:-1], np.nan)
    return window[..., -1 - lag]


class Reading(NamedTuple):
    """One factor for every scored symbol: its values and whether the data to compute each existed."""

    value: FloatArray
    available: BoolArray
