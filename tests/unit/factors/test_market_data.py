"""The factor properties on real Binance klines from ../shared/data/binance (skipped where it is absent).

The developer set holds only open time and OHLCV: quote volume, trade count and taker-buy volumes are unknown.
The engine must still score every symbol from the prices, with the factors that need volumes (C, V and F) and
the extras (O, B, Q, L) reported unavailable. A few small files and the last few hundred bars keep it fast.
"""

from __future__ import annotations

import numpy as np
import pytest

from ats.domain import Bars, interval_ms
from ats.factors import DIRECTIONAL, QUALITY, IncrementalScorer, scan
from tests.unit.factors.market_data import real_klines
from tests.unit.factors.synthetic import mirror_bars, scale_bars

# Short files that all cover 2025-12-11 .. 2026-02-19 (SOURCES.md), two of them BTC and ETH for the context.
SYMBOLS = ("BTCUSDT", "ETHUSDT", "XAUUSDT", "RIVERUSDT", "WLFIUSDT", "ORCAUSDT", "PIPPINUSDT", "BNBUSDT")
WINDOW = 300
END_MS = 1_771_372_800_000  # 2026-02-18 00:00 UTC, inside every file
UNKNOWN_INPUTS = {"C", "V", "F", "O", "B", "Q", "L"}  # no volumes, no extras


def _real_panel() -> tuple[list[Bars], int]:
    loaded = real_klines(SYMBOLS)
    group = [b.slice(0, int(np.searchsorted(b.open_time, END_MS, side="right"))).tail(WINDOW) for b in loaded]
    assert all(len(b) == WINDOW and int(b.open_time[-1]) == END_MS for b in group)
    return group, END_MS + interval_ms("1h")


@pytest.mark.market_data
def test_ohlcv_only_bars_are_scored_with_the_volume_factors_unavailable() -> None:
    bars, as_of = _real_panel()
    assert all(np.isnan(b.quote_volume).all() and np.isnan(b.taker_buy_quote_volume).all() for b in bars)
    result = scan(bars, as_of_ms=as_of)
    for row in result.rows:
        assert row.scored, row.insufficient
        assert set(row.missing) == UNKNOWN_INPUTS, row.symbol
        assert (row.flow, row.fund_leading, row.volume) == (0.0, 0.0, 50.0)  # neutral, as documented
        assert 0 < row.coverage < 1
    assert any(row.strength > 0 for row in result.rows)


@pytest.mark.market_data
def test_real_bars_mirror_scale_and_definedness() -> None:
    bars, as_of = _real_panel()
    original = scan(bars, as_of_ms=as_of)
    mirrored = scan([mirror_bars(b, 1.0) for b in bars], as_of_ms=as_of)
    scaled = scan([scale_bars(b, 1000.0) for b in bars], as_of_ms=as_of)
    for a, m, s in zip(original.rows, mirrored.rows, scaled.rows, strict=True):
        values = [*a.factors.values(), a.strength, a.atr_pct]
        assert all(np.isfinite(values))
        assert a.insufficient is None
        for name in (*DIRECTIONAL, "F"):
            assert m.factors[name] == pytest.approx(-a.factors[name], abs=1e-6)
        for name in QUALITY:
            assert m.factors[name] == pytest.approx(a.factors[name], abs=1e-6)
        assert m.strength == pytest.approx(a.strength, abs=1e-6)
        for name, value in a.factors.items():
            assert s.factors[name] == pytest.approx(value, abs=1e-6)


@pytest.mark.market_data
def test_real_bars_no_look_ahead_and_incremental() -> None:
    bars, as_of = _real_panel()
    step = interval_ms(bars[0].interval)
    earlier = as_of - 10 * step
    truncated = scan(
        [b.slice(0, int(np.searchsorted(b.open_time, earlier - step, side="right"))) for b in bars], as_of_ms=earlier
    )
    assert scan(bars, as_of_ms=earlier).rows == truncated.rows
    scorer = IncrementalScorer(bars[0].interval)
    scorer.warm(bars, as_of_ms=earlier)
    assert scorer.update_many(bars, as_of_ms=as_of).rows == scan(bars, as_of_ms=as_of).rows
