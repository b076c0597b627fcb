"""score_series gives, at every bar, exactly the row a cold scan of the history up to that bar gives."""

from __future__ import annotations

import numpy as np
import pytest

from ats.domain import Direction
from ats.factors import FACTOR_NAMES, MarketContext, SymbolExtras, scan, score_series
from ats.factors.score import ScanResult
from ats.factors.series import ScoreSeries
from ats.factors.state import SMOOTH_SLICE
from tests.unit.factors.synthetic import as_of_after, make_bars, make_market

HOUR = 3_600_000


def assert_column_is_the_scan(series: ScoreSeries, t: int, result: ScanResult) -> None:
    for i, row in enumerate(result.rows):
        assert series.symbols[i] == row.symbol
        assert bool(series.scored[i, t]) == row.scored, (row.symbol, t, row.insufficient)
        if not row.scored:
            continue
        side = {None: 0.0, Direction.LONG: 1.0, Direction.SHORT: -1.0}[row.direction]
        assert series.direction[i, t] == side
        assert series.strength[i, t] == row.strength
        assert series.coverage[i, t] == row.coverage
        assert series.atr_pct[i, t] == row.atr_pct
        for name in FACTOR_NAMES:
            assert series.factors[name][i, t] == row.factors[name], (row.symbol, t, name)
        assert series.row(row.symbol, t) == row


def test_every_bar_equals_the_cold_scan_of_its_prefix() -> None:
    bars, extras, context = make_market(5, 330, seed=60)
    late = make_bars("LATEUSDT", 200, seed=61, start_ms=int(bars[0].open_time[130]))  # listed later
    holed = make_bars("HOLEUSDT", 330, seed=62)
    holed = holed.slice(0, 150).concat(holed.slice(153, 250)).concat(holed.slice(251, 330))  # two gaps
    everyone = [*bars, late, holed]
    oi = {s: e.open_interest for s, e in extras.items() if e.open_interest is not None}
    series = score_series(everyone, as_of_ms=as_of_after(bars[0]), open_interest=oi, context=context)
    assert series.scored.sum() > 1000
    early = series.row("LATEUSDT", 10)  # before its listing
    assert not early.scored
    assert early.strength == 0.0
    assert early.direction is None
    only_oi = {s: SymbolExtras(open_interest=o) for s, o in oi.items()}
    for t in range(0, 330, 3):
        as_of = int(series.open_time[t]) + HOUR
        assert_column_is_the_scan(series, t, scan(everyone, as_of_ms=as_of, extras=only_oi, context=context))


def test_context_from_the_bars_and_unknown_volumes() -> None:
    btc = make_bars("BTCUSDT", 260, seed=63, price=60_000.0)
    alt = make_bars("ALTUSDT", 260, seed=64)
    quote = alt.quote_volume.copy()
    quote[:120] = np.nan  # history holding only OHLCV at first
    alt = alt.__class__(**{**{f: getattr(alt, f) for f in alt.__dataclass_fields__}, "quote_volume": quote})
    series = score_series([alt, btc], as_of_ms=as_of_after(alt))
    for t in range(55, 260, 7):
        as_of = int(series.open_time[t]) + HOUR
        assert_column_is_the_scan(series, t, scan([alt, btc], as_of_ms=as_of))


def test_bars_after_as_of_are_not_read() -> None:
    bars, _, context = make_market(3, 300, seed=65)
    as_of = int(bars[0].open_time[249]) + HOUR
    full = score_series(bars, as_of_ms=as_of, context=MarketContext(btc=context.btc))
    cut = score_series([b.slice(0, 250) for b in bars], as_of_ms=as_of, context=MarketContext(btc=context.btc))
    assert full.open_time.size == cut.open_time.size == 250
    assert np.array_equal(full.strength, cut.strength)
    assert np.array_equal(full.direction, cut.direction)


def test_no_bars_is_refused() -> None:
    with pytest.raises(ValueError, match="no bars"):
        score_series([], as_of_ms=0)


def test_a_history_longer_than_one_smoothing_slice() -> None:
    """The recursions of a long history run in slices (state.SMOOTH_SLICE bars): the values do not change."""
    bars = [make_bars(f"L{i}USDT", SMOOTH_SLICE + 90, seed=66 + i) for i in range(2)]
    series = score_series(bars, as_of_ms=as_of_after(bars[0]))
    for t in (SMOOTH_SLICE - 1, SMOOTH_SLICE, SMOOTH_SLICE + 89):
        as_of = int(series.open_time[t]) + HOUR
        assert_column_is_the_scan(series, t, scan(bars, as_of_ms=as_of))
