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

from ats.domain import FloatArray, IntArray

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
    x = np.arange(y.shape[-1], dtype=np.float64)
    if mask.all():  # the common case: the same arithmetic without the masking (x * 1.0 == x exactly)
        count = np.full(y.shape[:-1], float(y.shape[-1]))
        mean_x = safe_div(np.full(y.shape[:-1], x.sum()), count)
        dx = x - mean_x[..., None]
        dy = y - safe_div(y.sum(axis=-1), count)[..., None]
    else:
        weight = mask.astype(np.float64)
        y0 = np.where(mask, y, 0.0)
        count = weight.sum(axis=-1)
        mean_x = safe_div((weight * x).sum(axis=-1), count)
        dx = (x - mean_x[..., None]) * weight
        dy = (y0 - safe_div(y0.sum(axis=-1), count)[..., None]) * weight
    sxx = (dx * dx).sum(axis=-1)
    sxy = (dx * dy).sum(axis=-1)
    syy = (dy * dy).sum(axis=-1)
    slope = safe_div(sxy, sxx)
    r2 = np.clip(safe_div(sxy * sxy, sxx * syy), 0.0, 1.0)
    return slope, r2


def masked_correlation(a: FloatArray, b: FloatArray, mask: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Row-wise Pearson correlation of a and b over masked entries, and the number of points used
    (0 when either side does not vary: no correlation is defined)."""
    if mask.all():  # the common case: the same arithmetic without the masking (x * 1.0 == x exactly)
        count = np.full(a.shape[:-1], float(a.shape[-1]))
        da = a - safe_div(a.sum(axis=-1), count)[..., None]
        db = b - safe_div(b.sum(axis=-1), count)[..., None]
    else:
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


# ------------------------------------------------------------------------------------ exponential smoothing

SMOOTH_BLOCK = 64  # bars per block of the blocked EMA (c^-64 stays far from overflow for any span >= 2)


class SmoothingTables(NamedTuple):
    """Constants of the blocked EMA, one row per series: power[k, j] = c^j, weight[k, j] = alpha * c^-j."""

    power: FloatArray  # (series, SMOOTH_BLOCK + 1)
    weight: FloatArray


def smoothing_tables(alphas: FloatArray) -> SmoothingTables:
    c = 1.0 - np.asarray(alphas, dtype=np.float64)
    power = c[:, None] ** np.arange(SMOOTH_BLOCK + 1, dtype=np.float64)
    return SmoothingTables(power, alphas[:, None] / power)


class Smoothing(NamedTuple):
    """State of a blocked EMA per row: its value is power[n] * (base + partial). NaN base: nothing seen yet."""

    base: FloatArray  # the value when the current block began
    partial: FloatArray  # sum of weight[i] * x_i over the block's inputs so far (i = 1..n)
    n: FloatArray  # inputs taken in the current block
    block: FloatArray  # the current block: bar number // SMOOTH_BLOCK


def initial_smoothing(rows: int) -> Smoothing:
    return Smoothing(np.full(rows, np.nan), np.zeros(rows), np.zeros(rows), np.zeros(rows))


def smoothed_value(s: Smoothing, tables: SmoothingTables) -> FloatArray:
    """The EMA's current value (NaN before its first input)."""
    kinds = len(tables.power)
    at = (np.arange(s.n.size) % kinds) * (SMOOTH_BLOCK + 1) + s.n.astype(np.int64)
    return np.take(tables.power, at) * (s.base + s.partial)


def _slices(table: FloatArray, kind: IntArray, shift: IntArray, *, zero_at_0: bool) -> FloatArray:
    """(rows, blocks, SMOOTH_BLOCK): table[kind, j + 1 - shift] for j = 0..SMOOTH_BLOCK-1 (0 where that index is
    negative, or 0 with zero_at_0); each is one contiguous slice of the table row padded on the left."""
    head = table[:, :1] * (not zero_at_0)
    extended = np.concatenate([np.zeros((len(table), SMOOTH_BLOCK)), head, table[:, 1:]], axis=1)
    view = np.lib.stride_tricks.sliding_window_view(extended, SMOOTH_BLOCK, axis=1)
    return view[kind[:, None], np.clip(SMOOTH_BLOCK + 1 - shift, 0, SMOOTH_BLOCK + 1)]


ACROSS = 512  # (row, block) pairs from which a block's running sums are faster column by column


def _running_sums(terms: FloatArray) -> FloatArray:
    """np.cumsum(terms, axis=2), computed in place. Many rows: one addition per bar of the block, across all rows
    and blocks at once (a cumulative sum along a short last axis runs row by row, several times slower); the same
    additions in the same order, so the same values."""
    if terms[:, :, 0].size < ACROSS:
        return np.cumsum(terms, axis=2, out=terms)
    for j in range(1, terms.shape[2]):
        np.add(terms[:, :, j - 1], terms[:, :, j], out=terms[:, :, j])
    return terms


def smooth(x: FloatArray, first_bar: int, state: Smoothing, tables: SmoothingTables) -> tuple[FloatArray, Smoothing]:
    """Feed inputs (rows, bars) through EMAs y <- y + alpha * (x - y), skipping NaN inputs (the EMA holds).

    `first_bar` numbers column 0 on the interval's grid (open time // interval). Row r uses the constants of
    table row r % len(tables). Returns the value after each known input (NaN where the input is unknown) and
    the new state.

    The recursion is evaluated in blocks of SMOOTH_BLOCK bars, aligned to the bar numbers: inside a block the
    value after its n-th input is c^n * (base + sum_i alpha c^-i x_i), a cumulative sum, so the only Python
    loop runs once per block, to carry each block's end value into the next one's base. The block boundaries
    do not depend on where a chunk starts, so feeding a history in any split (one bar at a time, or all at
    once) performs the same floating-point operations in the same order: bit-identical values, which is what
    makes incremental scoring equal the cold scan.
    """
    rows, bars = x.shape
    kinds = len(tables.power)
    kind = np.arange(rows) % kinds
    first_block, offset = divmod(first_bar, SMOOTH_BLOCK)
    blocks = -(-(offset + bars) // SMOOTH_BLOCK)
    block_starts = np.arange(blocks) * SMOOTH_BLOCK

    # a block left behind closes: its end value is the new base (an empty block leaves the base unchanged)
    base, partial, n = state.base, state.partial, state.n
    behind = state.block < first_block
    if behind.any():
        closed = smoothed_value(state, tables)
        base = np.where(behind, closed, base)
        partial = np.where(behind, 0.0, partial)
        n = np.where(behind, 0.0, n)

    known = np.isfinite(x)
    seeded = np.isfinite(base)
    anything = known.any(axis=1)
    # column of each row's first input in the padded layout (just past the chunk for a row without one)
    first = np.where(anything, np.argmax(known, axis=1), bars) + offset
    seeding = ~seeded & anything  # rows whose first input is in this chunk: it seeds the base
    seed_block = np.where(seeding, first // SMOOTH_BLOCK, -1)
    seed_value = np.where(seeding, x[np.arange(rows), np.minimum(first - offset, bars - 1)], np.nan)
    held = n.astype(np.int64)  # inputs the current block took before this chunk
    padded = np.zeros((rows, blocks * SMOOTH_BLOCK))
    np.copyto(padded[:, offset : offset + bars], x, where=known)
    padded[np.flatnonzero(seeding), first[seeding]] = 0.0  # the seed is the base, not a term of the sum
    xs = padded.reshape(rows, blocks, SMOOTH_BLOCK)

    last_bar = np.full(blocks, SMOOTH_BLOCK - 1)
    last_bar[-1] = (offset + bars - 1) % SMOOTH_BLOCK
    terms = np.empty((rows, blocks, SMOOTH_BLOCK + 1))
    terms[:, :, 0] = 0.0
    terms[:, 0, 0] = np.where(seeded, partial, 0.0)
    every = bool(known.all())
    gapless = every or bool((np.count_nonzero(known, axis=1) == np.where(anything, offset + bars - first, 0)).all())
    if gapless:
        # no gaps after a row's first input (the usual case): block b's bar j is its (j + 1 - shift)-th input, so
        # its weights are one slice of the table: the same slice for every block a row entered before it began
        # (shift 0); only the blocks where a row's inputs start part-way (`own`) take a slice of their own
        shift = np.maximum((first + seeding)[:, None], block_starts) - block_starts
        shift[:, 0] -= held
        taken = np.maximum(last_bar + 1 - shift, 0)  # inputs per block
        own = np.nonzero(shift > 0)
        own_kind, own_shift = kind[own[0]], shift[own][:, None]
        np.multiply(tables.weight[kind, 1:][:, None, :], xs, out=terms[:, :, 1:])
        terms[own[0], own[1], 1:] = _slices(tables.weight, own_kind, own_shift, zero_at_0=True)[:, 0] * xs[own]
    else:
        # count[r, b, j]: the inputs block b has taken up to its bar j (<= 0 before its first one)
        counted = np.zeros((rows, blocks * SMOOTH_BLOCK), dtype=bool)
        counted[:, offset : offset + bars] = known
        counted[np.flatnonzero(seeding), first[seeding]] = False
        count = np.cumsum(counted.reshape(rows, blocks, SMOOTH_BLOCK), axis=2, dtype=np.int64)
        count[:, 0, :] += held[:, None]
        at = (kind * (SMOOTH_BLOCK + 1))[:, None, None] + np.maximum(count, 0)
        taken = np.maximum(count[:, np.arange(blocks), last_bar], 0)  # inputs per block
        np.multiply(np.take(tables.weight, at) * (count > 0), xs, out=terms[:, :, 1:])
    sums = _running_sums(terms)

    bases = np.empty((rows, blocks))
    bases[:, 0] = np.where(seed_block == 0, seed_value, base)
    for b in range(1, blocks):
        carried = tables.power[kind, taken[:, b - 1]] * (bases[:, b - 1] + sums[:, b - 1, -1])
        bases[:, b] = np.where(seed_block == b, seed_value, carried)
    end_partial = sums[:, -1, -1].copy()
    value = sums[:, :, 1:]  # computed in place: the sums are not needed any more
    value += bases[:, :, None]
    out = np.empty((rows, blocks, SMOOTH_BLOCK))
    if gapless:
        np.multiply(value, tables.power[kind, 1:][:, None, :], out=out)
        out[own] = value[own] * _slices(tables.power, own_kind, own_shift, zero_at_0=False)[:, 0]
    else:
        np.multiply(value, np.take(tables.power, at), out=out)
    path = out.reshape(rows, -1)[:, offset : offset + bars]
    if not every:
        np.copyto(path, np.nan, where=~known)
    new = Smoothing(
        bases[:, -1],
        np.where(np.isfinite(bases[:, -1]), end_partial, 0.0),
        taken[:, -1].astype(np.float64),
        np.full(rows, float(first_block + blocks - 1)),
    )
    return path, new
