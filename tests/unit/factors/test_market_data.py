"""The five properties on real klines from ../shared/data/market (skipped when the directory is absent)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from ats.domain import Bars, interval_ms
from ats.factors import DIRECTIONAL, QUALITY, IncrementalScorer, scan
from tests.unit.factors.market_data import MARKET_DIR, load_market_bars
from tests.unit.factors.synthetic import make_bars, mirror_bars, scale_bars

MAX_SYMBOLS = 30
WINDOW = 300


def _real_panel() -> tuple[list[Bars], int]:
    loaded = load_market_bars()
    if not loaded:
        pytest.skip(f"no market data under {MARKET_DIR} (see its SOURCES.md when present)")
    by_interval: dict[str, list[Bars]] = {}
    for (_, interval), bars in sorted(loaded.items()):
        by_interval.setdefault(interval, []).append(bars)
    interval, group = max(by_interval.items(), key=lambda item: len(item[1]))
    group = [b for b in group if len(b) >= 80][:MAX_SYMBOLS]
    if not group:
        pytest.skip("market data has too few bars per symbol")
    end = min(int(b.open_time[-1]) for b in group)  # a common as_of every symbol reaches
    group = [b.slice(0, int(np.searchsorted(b.open_time, end, side="right"))).tail(WINDOW) for b in group]
    return group, end + interval_ms(interval)


@pytest.mark.market_data
def test_real_bars_mirror_scale_and_definedness() -> None:
    bars, as_of = _real_panel()
    original = scan(bars, as_of_ms=as_of)
    mirrored = scan([mirror_bars(b, 1.0) for b in bars], as_of_ms=as_of)
    scaled = scan([scale_bars(b, 1000.0) for b in bars], as_of_ms=as_of)
    for a, m, s in zip(original.rows, mirrored.rows, scaled.rows, strict=True):
        values = [*a.factors.values(), a.strength, a.atr_pct]
        assert all(np.isfinite(values))
        assert a.insufficient is None or "non-finite" not in a.insufficient
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


def test_loader_reads_binance_kline_files(tmp_path: Path) -> None:
    """The loader itself, on files in Binance's public-data layout (runs without the real data)."""
    b = make_bars("ABCUSDT", 5, seed=1)
    lines = [
        f"{t},{o},{h},{lo},{c},{v},{t + 3_599_999},{q},{n},{tb},{tq},0"
        for t, o, h, lo, c, v, q, n, tb, tq in zip(
            b.open_time, b.open, b.high, b.low, b.close, b.volume, b.quote_volume, b.trades,
            b.taker_buy_volume, b.taker_buy_quote_volume, strict=True,
        )
    ]  # fmt: skip
    header = (
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
        "taker_buy_volume,taker_buy_quote_volume,ignore"
    )
    (tmp_path / "ABCUSDT-1h-2026-01.csv").write_text("\n".join([header, *lines[:3]]))
    nested = tmp_path / "ABCUSDT" / "1h"
    nested.mkdir(parents=True)
    micro = [line.replace(str(t), str(t * 1000), 1) for line, t in zip(lines[2:], b.open_time[2:], strict=True)]
    (nested / "part.csv.gz").write_bytes(gzip.compress("\n".join(micro).encode()))
    loaded = load_market_bars(tmp_path)
    assert list(loaded) == [("ABCUSDT", "1h")]
    got = loaded[("ABCUSDT", "1h")]
    np.testing.assert_array_equal(got.open_time, b.open_time)
    np.testing.assert_allclose(got.close, b.close)
    np.testing.assert_allclose(got.taker_buy_quote_volume, b.taker_buy_quote_volume)
    assert load_market_bars(tmp_path / "absent") == {}
