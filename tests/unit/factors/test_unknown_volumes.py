"""Bars whose volumes are unknown (NaN: history holding only OHLCV) are still bars: the price factors score them,
the factors that need the unknown volumes (C, V and F) report themselves unavailable."""

from __future__ import annotations

import dataclasses

import numpy as np

from ats.domain import Bars, Direction, interval_ms
from ats.factors import IncrementalScorer, scan
from tests.unit.factors.synthetic import make_bars

VOLUMES = ("volume", "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")


def unknown(bars: Bars, fields: tuple[str, ...] = VOLUMES, *, where: slice = slice(None)) -> Bars:
    """These columns unknown (NaN) in the bars `where` says (all of them by default)."""
    for name in fields:
        column = getattr(bars, name).copy()
        column[where] = np.nan
        bars = dataclasses.replace(bars, **{name: column})
    return bars


def as_of(bars: Bars) -> int:
    return int(bars.open_time[-1]) + interval_ms(bars.interval)


def test_ohlcv_only_bars_are_scored_and_the_volume_factors_unavailable() -> None:
    bars = [unknown(make_bars(s, 300, seed=i, drift=0.004)) for i, s in enumerate(("AAAUSDT", "BBBUSDT"))]
    result = scan(bars, as_of_ms=as_of(bars[0]))
    for row in result.rows:
        assert row.scored, row.insufficient
        assert {"C", "V", "F"} <= set(row.missing)  # F too: all its inputs are unknown
        assert not {"T", "M", "S"} & set(row.missing)
        assert (row.flow, row.fund_leading, row.volume) == (0.0, 0.0, 50.0)  # neutral, as documented
    assert all(row.direction is Direction.LONG and row.strength > 0 for row in result.rows)  # a clear uptrend


def test_unknown_taker_buys_alone_leave_the_flow_unknown_and_the_volume_known() -> None:
    bars = unknown(make_bars("AAAUSDT", 300, seed=3), ("taker_buy_volume", "taker_buy_quote_volume"))
    (row,) = scan([bars], as_of_ms=as_of(bars)).rows
    assert {"C", "F"} <= set(row.missing)
    assert "V" not in row.missing


def test_the_newest_bar_decides_whether_volumes_are_known() -> None:
    full = make_bars("AAAUSDT", 300, seed=4, buy_bias=0.1)
    last_unknown = unknown(full, where=slice(-1, None))
    (row,) = scan([last_unknown], as_of_ms=as_of(full)).rows
    assert row.scored
    assert {"C", "V", "F"} <= set(row.missing)


def test_volume_history_that_starts_later_reads_as_if_the_bars_before_had_none() -> None:
    """Known volumes after unknown ones: the volume EMAs start at the first known bar, as for a fresh series."""
    full = make_bars("AAAUSDT", 300, seed=5, buy_bias=0.05)
    mixed = unknown(full, where=slice(0, 150))
    (row,) = scan([mixed], as_of_ms=as_of(full)).rows
    assert not {"C", "V", "F"} & set(row.missing)
    (fresh,) = scan([full.slice(150, 300)], as_of_ms=as_of(full)).rows
    assert row.volume == fresh.volume
    assert row.flow == fresh.flow


def test_incremental_equals_cold_with_unknown_volumes() -> None:
    bars = [
        unknown(make_bars(s, 260, seed=i), where=slice(0, 200 + 10 * i)) for i, s in enumerate(("AAAUSDT", "BBBUSDT"))
    ]
    cold = scan(bars, as_of_ms=as_of(bars[0]))
    scorer = IncrementalScorer("1h")
    scorer.warm([b.slice(0, 180) for b in bars], as_of_ms=as_of(bars[0].slice(0, 180)))
    for stop in range(181, 261):
        result = scorer.update_many([b.slice(stop - 1, stop) for b in bars], as_of_ms=as_of(bars[0].slice(0, stop)))
    assert result.rows == cold.rows


def test_an_infinite_or_negative_volume_is_still_an_invalid_bar() -> None:
    bars = make_bars("AAAUSDT", 300, seed=6)
    quote = bars.quote_volume.copy()
    quote[-1] = np.inf
    (row,) = scan([dataclasses.replace(bars, quote_volume=quote)], as_of_ms=as_of(bars)).rows
    assert "stale" in (row.insufficient or "")
