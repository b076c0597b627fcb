"""S structure (quality, 0..100): swing structure from a ZigZag whose reversal threshold is in ATR units.

The ZigZag is a recursive state machine (`zigzag_advance`, vectorised across symbols and swings), so the
incremental scorer never replays history. A swing reverses once price moves `zigzag_atr` ATR against its
running extreme; the extreme becomes a pivot. S rewards consistent swings (higher highs and higher lows, or
lower highs and lower lows: direction-free), a shallow pullback from the last pivot, a recent pivot, and a
price not over-extended from its slow EMA.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ats.domain import FloatArray, IntArray
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


LOOKAHEAD = 32  # bars examined per ZigZag pass: a pass stops at each row's first reversal


class ZigzagEvents(NamedTuple):
    """Reversals found by `zigzag_advance`, ordered by row then bar: the pivot each one confirmed and the
    swing direction from that bar on."""

    row: IntArray
    column: IntArray  # the chunk column (bar) at which the reversal was confirmed
    price: FloatArray
    bar: FloatArray  # the pivot's valid-bar count (its age reference)
    direction: FloatArray


def zigzag_advance(
    zz: dict[str, FloatArray],
    valid: BoolArray,
    price: FloatArray,
    threshold: FloatArray,
    index: FloatArray,
) -> tuple[dict[str, FloatArray], ZigzagEvents]:
    """Advance every symbol's ZigZag over a chunk of closing prices (symbols, bars); returns the new state and
    the reversals. `index` counts the symbol's valid bars (0 for its first), `threshold` is the reversal
    distance at each bar (the ZigZag is unarmed where it is not positive).

    Direction 0 means no swing is established yet: the running high and low are tracked until their
    distance reaches the threshold, and whichever came first becomes the first pivot. Direction +1 is an
    up swing tracking its highest close, -1 a down swing tracking its lowest. Closes, not highs and lows,
    so one wide bar cannot be both the top of one swing and the bottom of the next.

    Vectorised across symbols and, within a pass, across up to LOOKAHEAD bars: a pass finds each row's first
    reversal in the next LOOKAHEAD valid bars (running extremes are cumulative maxima, the test a comparison),
    so the Python loop runs once per swing, not once per bar. Only comparisons and one subtraction per test
    are involved, so the result is bit-identical to a bar-by-bar walk, whatever the chunking.
    """
    symbols, bars = price.shape
    out = {name: value.copy() for name, value in zz.items()}
    none = ZigzagEvents(*(np.zeros(0, dtype=np.int64),) * 2, *(np.zeros(0),) * 3)
    if not bars:
        return out, none
    n_valid = valid.sum(axis=1)
    first = np.where(n_valid > 0, np.argmax(valid, axis=1), bars)
    if (n_valid == bars - first).all():  # no gaps after each row's first bar (the usual case): read in place
        order = None
        pos, limit = first.copy(), np.full(symbols, bars)
        columns = [np.where(valid, a, np.nan) for a in (price, threshold, index)]
    else:  # each row's valid bars moved to its front, in time order
        order = np.argsort(~valid, axis=1, kind="stable")
        pos, limit = np.zeros(symbols, dtype=np.int64), n_valid
        after = np.arange(bars) >= n_valid[:, None]  # past each row's valid bars: NaN, so no pass reads them
        columns = [np.where(after, np.nan, np.take_along_axis(a, order, axis=1)) for a in (price, threshold, index)]
    # Bars down, symbols across, LOOKAHEAD bars of NaN below: a pass's windows of the three are one `take` of
    # flat positions, and running extremes accumulate down the bars for all rows at once.
    packed = np.full((3, bars + LOOKAHEAD, symbols), np.nan)
    for k, column in enumerate(columns):
        packed[k, :bars] = column.T
    flat = packed.reshape(3, -1)
    direction, ext, ext_i = out["zz_dir"], out["zz_ext"], out["zz_ext_i"]
    hi, hi_i, lo, lo_i = out["zz_hi"], out["zz_hi_i"], out["zz_lo"], out["zz_lo_i"]
    # the symbol's first bar starts the running high and low
    fresh = (n_valid > 0) & (columns[2][np.arange(symbols), np.minimum(pos, bars - 1)] == 0)
    hi[fresh], lo[fresh] = -np.inf, np.inf
    steps = np.arange(LOOKAHEAD)[:, None]
    found: list[tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray]] = []

    def window(rows: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(LOOKAHEAD, rows): the next bars of price, threshold and index from each row's position."""
        p, th, ix = flat.take((pos[rows] + steps) * symbols + rows, axis=1)
        return p, th, ix

    def running(start: FloatArray, start_i: FloatArray, x: FloatArray, ix: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Running maximum of start, x[0..k] and the index of its first occurrence (ties keep the older)."""
        run = np.maximum(start, np.maximum.accumulate(x, axis=0))
        before = np.concatenate([start[None, :], run[:-1]], axis=0)
        newest = np.maximum.accumulate(np.where(x > before, steps, -1), axis=0)
        picked = np.take_along_axis(ix, np.maximum(newest, 0), axis=0)
        return run, np.where(newest >= 0, picked, start_i)

    rows = np.flatnonzero((direction == 0) & (n_valid > 0))
    while rows.size:  # undecided: the first swing (once per symbol's history)
        picks = np.arange(rows.size)
        p, th, ix = window(rows)
        inside = pos[rows] + steps < limit[rows]
        last = np.minimum(limit[rows] - pos[rows], LOOKAHEAD) - 1
        run_hi, run_hi_i = running(hi[rows], hi_i[rows], np.where(inside, p, -np.inf), ix)
        neg_lo, run_lo_i = running(-lo[rows], lo_i[rows], np.where(inside, -p, -np.inf), ix)
        run_lo = -neg_lo
        with np.errstate(invalid="ignore"):
            turn = inside & (th > 0) & (run_hi - run_lo >= th)
        hit = turn.any(axis=0)
        at = np.where(hit, turn.argmax(axis=0), last)
        h, hx, lw, lx = run_hi[at, picks], run_hi_i[at, picks], run_lo[at, picks], run_lo_i[at, picks]
        hi[rows], hi_i[rows], lo[rows], lo_i[rows] = h, hx, lw, lx
        high_first = hx < lx
        new_dir = np.where(high_first, -1.0, 1.0)
        direction[rows] = np.where(hit, new_dir, 0.0)
        ext[rows] = np.where(hit, np.where(high_first, lw, h), ext[rows])
        ext_i[rows] = np.where(hit, np.where(high_first, lx, hx), ext_i[rows])
        if hit.any():
            found.append(
                (
                    rows[hit],
                    pos[rows[hit]] + at[hit],
                    np.where(high_first, h, lw)[hit],
                    np.where(high_first, hx, lx)[hit],
                    new_dir[hit],
                )
            )
        pos[rows] += at + 1
        rows = rows[(direction[rows] == 0) & (pos[rows] < limit[rows])]

    swings: list[tuple[npt.NDArray[Any], ...]] = []  # per pass: hit, row, bar, pivot price, pivot bar, new side
    rows = np.flatnonzero(pos < limit)
    while rows.size:  # in a swing: find where price comes back `threshold` from the running extreme
        picks = np.arange(rows.size)
        p, th, ix = window(rows)  # NaN past each row's last valid bar
        side = direction[rows]
        start = side * ext[rows]
        q = side * p  # the swing's side made upward: the extreme is a running maximum
        run = np.maximum(start, np.maximum.accumulate(q, axis=0))
        with np.errstate(invalid="ignore"):
            turn = (th > 0) & (run - q >= th)
        hit = turn.any(axis=0)
        at = np.where(hit, turn.argmax(axis=0), np.minimum(limit[rows] - pos[rows], LOOKAHEAD) - 1)
        best = run[at, picks]
        # the extreme's bar: its first occurrence in the window, or the one held if the window never passed it
        first_best = ix[np.argmax(q == best, axis=0), picks]
        extreme, extreme_i = side * best, np.where(best > start, first_best, ext_i[rows])
        direction[rows] = np.where(hit, -side, side)
        ext[rows] = np.where(hit, p[at, picks], extreme)
        ext_i[rows] = np.where(hit, ix[at, picks], extreme_i)
        # every pass kept; the reversals among them are picked once, after the last pass
        swings.append((np.asarray(hit), rows, pos[rows] + at, extreme, extreme_i, -side))
        pos[rows] += at + 1
        rows = rows[pos[rows] < limit[rows]]

    hit = np.concatenate([swing[0] for swing in swings]) if swings else np.zeros(0, dtype=bool)
    if hit.any():
        turned_row, at_bar, pivot_price, pivot_bar, turned_to = (
            np.concatenate(parts)[hit] for parts in zip(*(swing[1:] for swing in swings), strict=True)
        )
        found.append((turned_row, at_bar, pivot_price, pivot_bar, turned_to))
    if not found:
        return out, none
    row, place, pivot, pivot_i, turned = (np.concatenate(parts) for parts in zip(*found, strict=True))
    ordered = np.lexsort((place, row))
    row, place, pivot, pivot_i, turned = row[ordered], place[ordered], pivot[ordered], pivot_i[ordered], turned[ordered]
    count = np.bincount(row, minlength=symbols)
    rank = np.arange(row.size) - (np.cumsum(count) - count)[row]
    for name, new in (("piv_p", pivot), ("piv_i", pivot_i)):
        held = np.concatenate([out[name], np.zeros((symbols, int(count.max())))], axis=1)
        held[row, PIVOTS + rank] = new
        out[name] = np.take_along_axis(held, count[:, None] + np.arange(PIVOTS), axis=1)
    out["piv_n"] = np.minimum(out["piv_n"] + count, PIVOTS)
    return out, ZigzagEvents(row, place if order is None else order[row, place], pivot, pivot_i, turned)


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
