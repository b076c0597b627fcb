"""The five properties of docs/factors.md, on a seeded synthetic market with every extra present."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ats.domain import Bars
from ats.factors import DIRECTIONAL, QUALITY, FactorConfig, FactorRow, IncrementalScorer, MarketContext, scan
from ats.factors.inputs import BookSnapshot, OpenInterestSeries, PremiumSnapshot, SymbolExtras, TradeFlow
from tests.unit.factors.synthetic import (
    START_MS,
    as_of_after,
    make_bars,
    make_market,
    mirror_bars,
    mirror_extras,
    scale_bars,
    scale_extras,
)

SIGNED = (*DIRECTIONAL, "F")
TOL = 1e-6


def assert_same_scores(a: FactorRow, b: FactorRow) -> None:
    assert a.symbol == b.symbol
    assert a.insufficient == b.insufficient
    assert a.direction == b.direction
    assert a.strength == pytest.approx(b.strength, abs=TOL)
    for name, value in a.factors.items():
        assert value == pytest.approx(b.factors[name], abs=TOL), name


# ---------------------------------------------------------------------------------------------- 1. mirror


@pytest.mark.parametrize(("seed", "k"), [(0, 1.0), (1, 1e4), (2, 3.7), (3, 1e-3)])
def test_mirror_symmetry(seed: int, k: float) -> None:
    bars, extras, context = make_market(12, 300, seed=seed)
    as_of = as_of_after(bars[0])
    original = scan(bars, as_of_ms=as_of, extras=extras, context=context)
    mirrored = scan(
        [mirror_bars(b, k) for b in bars],
        as_of_ms=as_of,
        extras={s: mirror_extras(e, k) for s, e in extras.items()},
        context=MarketContext(mirror_bars(context.btc, k), mirror_bars(context.eth, k)),  # type: ignore[arg-type]
    )
    directions = set()
    for a, b in zip(original.rows, mirrored.rows, strict=True):
        assert a.scored
        assert not a.missing
        for name in SIGNED:
            assert b.factors[name] == pytest.approx(-a.factors[name], abs=TOL), (a.symbol, name)
        for name in QUALITY:
            assert b.factors[name] == pytest.approx(a.factors[name], abs=TOL), (a.symbol, name)
        assert b.strength == pytest.approx(a.strength, abs=TOL)
        assert b.band == a.band
        flipped = None if a.direction is None else {"LONG": "SHORT", "SHORT": "LONG"}[a.direction]
        assert b.direction == flipped
        directions.add(a.direction)
    assert len(directions) >= 2  # the market had both sides, so the check was not vacuous


# ---------------------------------------------------------------------------------------------- 2. look-ahead


def test_bars_after_as_of_change_nothing() -> None:
    bars, extras, context = make_market(6, 300, seed=4)
    t = 220
    as_of = int(bars[0].open_time[t]) + 3_600_000  # the close of bar t
    truncated = scan([b.slice(0, t + 1) for b in bars], as_of_ms=as_of, extras=extras, context=context)
    with_future = scan(bars, as_of_ms=as_of, extras=extras, context=context)
    rng = np.random.default_rng(0)
    garbage = [
        b.slice(0, t + 1).concat(make_bars(b.symbol, 300, seed=int(rng.integers(1000)), price=1e6).slice(t + 1, 300))
        for b in bars
    ]
    changed_future = scan(garbage, as_of_ms=as_of, extras=extras, context=context)
    assert truncated.rows == with_future.rows == changed_future.rows
    assert all(r.bar_open_time_ms == int(bars[0].open_time[t]) for r in truncated.rows)


def test_replay_values_do_not_depend_on_later_bars() -> None:
    """Scores at every bar of a replay are unchanged when later bars are altered or removed."""
    bars = [make_bars(f"R{i}USDT", 160, seed=40 + i, drift=0.002 * (i - 1)) for i in range(3)]
    altered = [b.slice(0, 130).concat(scale_bars(b, 1.5).slice(130, 160)) for b in bars]

    def replay(source: list[Bars], stop: int) -> list[tuple[FactorRow, ...]]:
        scorer = IncrementalScorer("1h")
        scorer.warm([b.slice(0, 100) for b in source], as_of_ms=int(source[0].open_time[100]))
        return [
            scorer.update_many(
                [b.slice(j, j + 1) for b in source], as_of_ms=int(source[0].open_time[j]) + 3_600_000
            ).rows
            for j in range(100, stop)
        ]

    assert replay(bars, 160)[:30] == replay(altered, 160)[:30] == replay(bars, 130)


def test_forming_bar_is_never_scored() -> None:
    b = make_bars(n=200, seed=5)
    closed_at = as_of_after(b.slice(0, 199))  # bar 199 opens here and is still forming
    row = scan([b], as_of_ms=closed_at + 1_000).rows[0]
    assert row.bar_open_time_ms == int(b.open_time[198])
    assert row == scan([b.slice(0, 199)], as_of_ms=closed_at + 1_000).rows[0]


# ---------------------------------------------------------------------------------------------- 3. scale


@pytest.mark.parametrize("c", [1000.0, 1e-4, 7.3])
def test_scale_invariance(c: float) -> None:
    bars, extras, context = make_market(10, 300, seed=6)
    as_of = as_of_after(bars[0])
    original = scan(bars, as_of_ms=as_of, extras=extras, context=context)
    scaled = scan(
        [scale_bars(b, c) for b in bars],
        as_of_ms=as_of,
        extras={s: scale_extras(e, c) for s, e in extras.items()},
        context=context,
    )
    for a, b in zip(original.rows, scaled.rows, strict=True):
        assert_same_scores(a, b)
        assert b.atr_pct == pytest.approx(a.atr_pct, rel=1e-9)


# ---------------------------------------------------------------------------------------------- 4. robustness


def flat_bars(n: int, *, price: float = 5.0, volume: float = 0.0) -> Bars:
    ones = np.ones(n)
    return Bars(
        "FLATUSDT",
        "1h",
        START_MS + 3_600_000 * np.arange(n, dtype=np.int64),
        price * ones,
        price * ones,
        price * ones,
        price * ones,
        volume * ones,
        volume * price * ones,
        0 * ones,
        volume * ones / 2,
        volume * price * ones / 2,
    )


def assert_defined(row: FactorRow) -> None:
    values = [*row.factors.values(), row.strength, row.atr_pct, row.coverage, row.close]
    assert all(np.isfinite(values)), row
    assert row.insufficient is None or "non-finite" not in row.insufficient
    assert 0 <= row.strength <= 100
    for name in (*DIRECTIONAL, "F"):
        assert -100 <= row.factors[name] <= 100
    for name in QUALITY:
        assert 0 <= row.factors[name] <= 100


@pytest.mark.parametrize("volume", [0.0, 1e6])
def test_flat_prices_and_zero_volume_are_neutral(volume: float) -> None:
    b = flat_bars(300, volume=volume)
    row = scan([b], as_of_ms=as_of_after(b)).rows[0]
    assert_defined(row)
    assert row.scored
    assert row.direction is None
    assert row.strength == 0.0
    assert row.trend == row.momentum == 0.0


@pytest.mark.parametrize("n", [0, 1, 2, 13, 59])
def test_short_history_is_insufficient(n: int) -> None:
    b = make_bars(n=300, seed=7).slice(300 - n, 300) if n else Bars.empty("AAAUSDT", "1h")
    row = scan([b, make_bars("BBBUSDT", 300, seed=8)], as_of_ms=as_of_after(make_bars(n=300))).rows[0]
    assert_defined(row)
    assert row.insufficient is not None
    assert row.direction is None
    assert row.strength == 0.0


def test_exactly_min_bars_is_scored() -> None:
    b = make_bars(n=60, seed=9)
    row = scan([b], as_of_ms=as_of_after(b)).rows[0]
    assert row.scored
    assert_defined(row)


def test_missing_extras_are_reported_not_guessed() -> None:
    bars, _, _ = make_market(3, 300, seed=10)
    result = scan(bars, as_of_ms=as_of_after(bars[0]))
    for row in result.rows:
        assert_defined(row)
        assert set(row.missing) == {"O", "B", "Q", "L", "I"}
        assert row.liquidity == 50.0
        assert row.open_interest == 0.0
        assert row.coverage == pytest.approx(0.65)


def test_malformed_bars_are_skipped() -> None:
    b = make_bars(n=300, seed=11)

    def every(m: int) -> np.ndarray:
        mask: np.ndarray = (np.arange(300) % m == 0) & (np.arange(300) < 299)
        return mask  # the newest bar stays intact

    broken = Bars(
        b.symbol,
        b.interval,
        b.open_time,
        b.open,
        np.where(every(17), np.nan, b.high),
        np.where(every(23), -1.0, b.low),
        np.where(every(29), np.inf, b.close),
        b.volume,
        np.where(every(31), -5.0, b.quote_volume),
        b.trades,
        b.taker_buy_volume,
        b.taker_buy_quote_volume,
    )
    row = scan([broken], as_of_ms=as_of_after(b)).rows[0]
    assert_defined(row)
    assert row.scored


def test_stale_symbol_is_reported() -> None:
    fresh = make_bars("AUSDT", 300, seed=12)
    stale = make_bars("BUSDT", 297, seed=13)
    result = scan([fresh, stale], as_of_ms=as_of_after(fresh))
    assert result.row("AUSDT").scored
    reason = result.row("BUSDT").insufficient
    assert reason is not None
    assert "stale" in reason
    assert result.insufficient == {"BUSDT": reason}


prices = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False)
amounts = st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False)


@st.composite
def arbitrary_bars(draw: st.DrawFn) -> Bars:
    n = draw(st.integers(min_value=0, max_value=70))
    ohlc = draw(hnp.arrays(np.float64, (4, n), elements=prices))
    quote = draw(hnp.arrays(np.float64, n, elements=amounts))
    share = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)))
    return Bars(
        "XUSDT",
        "1h",
        START_MS + 3_600_000 * np.arange(n, dtype=np.int64),
        ohlc[0],
        ohlc[1],
        ohlc[2],
        ohlc[3],
        quote / ohlc[3],
        quote,
        np.ones(n),
        share * quote / ohlc[3],
        share * quote,
    )


@st.composite
def arbitrary_extras(draw: st.DrawFn) -> SymbolExtras:
    m = draw(st.integers(0, 40))
    oi = OpenInterestSeries(
        START_MS + np.sort(draw(hnp.arrays(np.int64, m, elements=st.integers(0, 80 * 3_600_000)))),
        draw(hnp.arrays(np.float64, m, elements=amounts)),
    )
    levels = draw(st.integers(0, 5))
    bid_price, bid_qty, ask_price, ask_qty = (draw(hnp.arrays(np.float64, levels, elements=prices)) for _ in range(4))
    book = BookSnapshot(bid_price, bid_qty, ask_price, ask_qty, START_MS)
    t = draw(st.integers(0, 30))
    trades = TradeFlow(
        START_MS + draw(hnp.arrays(np.int64, t, elements=st.integers(0, 80 * 3_600_000))),
        draw(hnp.arrays(np.float64, t, elements=amounts)),
        draw(hnp.arrays(np.bool_, t)),
        draw(hnp.arrays(np.bool_, t)),
    )
    premium = PremiumSnapshot(draw(prices), draw(prices), draw(st.floats(-0.05, 0.05)), START_MS)
    return SymbolExtras(
        open_interest=draw(st.none() | st.just(oi)),
        premium=draw(st.none() | st.just(premium)),
        book=draw(st.none() | st.just(book)),
        trades=draw(st.none() | st.just(trades)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bars=arbitrary_bars(), extras=arbitrary_extras())
def test_arbitrary_finite_input_gives_defined_rows(bars: Bars, extras: SymbolExtras) -> None:
    config = FactorConfig(min_bars=13)  # short enough that most examples are actually scored
    as_of = START_MS + 3_600_000 * max(len(bars), 1)
    context = MarketContext(btc=make_bars("BTCUSDT", 80, seed=1))
    row = scan([bars], as_of_ms=as_of, extras={"XUSDT": extras}, context=context, config=config).rows[0]
    assert_defined(row)


# ---------------------------------------------------------------------------------------------- 5. one pass


def test_batch_equals_one_symbol_at_a_time() -> None:
    bars, extras, context = make_market(10, 300, seed=14)
    listing = make_bars("NEWUSDT", 90, seed=15, start_ms=int(bars[0].open_time[210]))  # a new listing
    everyone = [*bars, listing]
    as_of = as_of_after(bars[0])
    together = scan(everyone, as_of_ms=as_of, extras=extras, context=context)
    for b, row in zip(everyone, together.rows, strict=True):
        assert scan([b], as_of_ms=as_of, extras=extras, context=context).rows[0] == row
    assert together.row("NEWUSDT").scored


def test_cold_scan_is_one_vectorised_pass() -> None:
    """A loose guard against per-symbol Python loops creeping in (benchmarks/factor_cold.py measures properly)."""
    bars = [make_bars(f"P{i}USDT", 300, seed=i) for i in range(100)]
    as_of = as_of_after(bars[0])
    scan(bars, as_of_ms=as_of)
    started = time.perf_counter()
    scan(bars, as_of_ms=as_of)
    assert time.perf_counter() - started < 1.0
