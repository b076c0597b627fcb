"""The incremental scorer gives exactly what a cold scan of the same history gives."""

from __future__ import annotations

import numpy as np
import pytest

from ats.domain import Bars
from ats.factors import FactorConfig, IncrementalScorer, MarketContext, Panel, SymbolExtras, scan
from ats.factors.inputs import PremiumSnapshot
from tests.unit.factors.synthetic import as_of_after, make_bars, make_market

HOUR = 3_600_000


def close_of(b: Bars, i: int) -> int:
    return int(b.open_time[i]) + HOUR


def test_bar_by_bar_equals_cold_at_every_step() -> None:
    bars, extras, context = make_market(6, 260, seed=20)
    scorer = IncrementalScorer("1h")
    scorer.warm([b.slice(0, 200) for b in bars], as_of_ms=close_of(bars[0], 199), extras=extras, context=context)
    for j in range(200, 260):
        as_of = close_of(bars[0], j)
        incremental = scorer.update_many(
            [b.slice(j, j + 1) for b in bars], as_of_ms=as_of, extras=extras, context=context
        )
        cold = scan([b.slice(0, j + 1) for b in bars], as_of_ms=as_of, extras=extras, context=context)
        assert incremental.rows == cold.rows


def test_several_new_bars_at_once_and_overlap_are_handled() -> None:
    b = make_bars(n=300, seed=21)
    scorer = IncrementalScorer("1h")
    scorer.warm([b.slice(0, 250)], as_of_ms=close_of(b, 249))
    # the caller re-sends some bars it already fed, plus five new ones
    row = scorer.update(b.slice(240, 255), as_of_ms=close_of(b, 254))
    assert row == scan([b.slice(0, 255)], as_of_ms=close_of(b, 254)).rows[0]


def test_gap_equals_cold_with_the_same_gap() -> None:
    b = make_bars(n=300, seed=22)
    holed = b.slice(0, 280).concat(b.slice(283, 300))
    scorer = IncrementalScorer("1h")
    scorer.warm([b.slice(0, 280)], as_of_ms=close_of(b, 279))
    row = scorer.update(b.slice(283, 300), as_of_ms=as_of_after(b))
    assert row == scan([holed], as_of_ms=as_of_after(b)).rows[0]
    assert row.scored


def test_unknown_symbol_starts_from_the_bars_given() -> None:
    bars = [make_bars(f"K{i}USDT", 300, seed=30 + i) for i in range(3)]
    newcomer = make_bars("NEWUSDT", 120, seed=33, start_ms=int(bars[0].open_time[180]))
    scorer = IncrementalScorer("1h")
    scorer.warm([b.slice(0, 299) for b in bars], as_of_ms=close_of(bars[0], 298))
    result = scorer.update_many([*(b.slice(299, 300) for b in bars), newcomer], as_of_ms=as_of_after(bars[0]))
    assert result.rows == scan([*bars, newcomer], as_of_ms=as_of_after(bars[0])).rows
    assert scorer.symbols == ("K0USDT", "K1USDT", "K2USDT", "NEWUSDT")


def test_no_new_bar_becomes_stale_then_recovers() -> None:
    b = make_bars(n=300, seed=34)
    scorer = IncrementalScorer("1h")
    scorer.warm([b.slice(0, 298)], as_of_ms=close_of(b, 297))
    stale = scorer.update(Bars.empty(b.symbol, "1h"), as_of_ms=close_of(b, 298))
    assert stale.insufficient is not None
    assert "stale" in stale.insufficient
    late = scorer.update(b.slice(298, 300), as_of_ms=as_of_after(b))
    assert late == scan([b], as_of_ms=as_of_after(b)).rows[0]


def test_fresh_extras_rescore_the_same_bar() -> None:
    b = make_bars(n=300, seed=35)
    as_of = as_of_after(b)
    scorer = IncrementalScorer("1h")
    before = scorer.warm([b], as_of_ms=as_of).rows[0]
    premium = SymbolExtras(premium=PremiumSnapshot(float(b.close[-1]) * 1.001, float(b.close[-1]), 0.0003, as_of))
    after = scorer.update(Bars.empty(b.symbol, "1h"), as_of_ms=as_of + 60_000, extras=premium)
    assert after.bar_open_time_ms == before.bar_open_time_ms
    assert before.basis == 0.0
    assert after.basis > 0
    assert after.trend == before.trend


def test_going_back_in_time_is_refused() -> None:
    b = make_bars(n=300, seed=36)
    scorer = IncrementalScorer("1h")
    scorer.warm([b], as_of_ms=as_of_after(b))
    with pytest.raises(ValueError, match="before bars already scored"):
        scorer.update(b, as_of_ms=close_of(b, 250))


def test_forget_and_rewarm() -> None:
    bars = [make_bars(f"F{i}USDT", 300, seed=37 + i) for i in range(3)]
    scorer = IncrementalScorer("1h")
    scorer.warm(bars, as_of_ms=as_of_after(bars[0]))
    scorer.forget("F1USDT")
    scorer.forget("UNKNOWN")
    assert scorer.symbols == ("F0USDT", "F2USDT")
    again = scorer.warm([bars[0]], as_of_ms=as_of_after(bars[0])).rows[0]
    assert again == scan([bars[0]], as_of_ms=as_of_after(bars[0])).rows[0]
    row = scorer.update(bars[2].slice(299, 300), as_of_ms=as_of_after(bars[0]))
    assert row == scan([bars[2]], as_of_ms=as_of_after(bars[0])).rows[0]


def test_context_comes_from_btc_and_eth_bars_when_not_given() -> None:
    btc = make_bars("BTCUSDT", 300, seed=38, price=60_000.0)
    eth = make_bars("ETHUSDT", 300, seed=39, price=3_000.0)
    alt = make_bars("ALTUSDT", 300, seed=40)
    as_of = as_of_after(alt)
    implicit = scan([alt, btc, eth], as_of_ms=as_of)
    explicit = scan([alt, btc, eth], as_of_ms=as_of, context=MarketContext(btc, eth))
    assert implicit.rows == explicit.rows
    assert implicit.row("BTCUSDT").independence == pytest.approx(0.0, abs=1e-9)
    assert "I" not in implicit.row("ALTUSDT").missing
    assert "I" in scan([alt], as_of_ms=as_of).rows[0].missing


def test_context_is_kept_between_updates() -> None:
    btc = make_bars("BTCUSDT", 300, seed=41, price=60_000.0)
    alt = make_bars("ALTUSDT", 300, seed=42)
    scorer = IncrementalScorer("1h")
    scorer.warm([alt.slice(0, 290)], as_of_ms=close_of(alt, 289), context=MarketContext(btc=btc.slice(0, 290)))
    for j in range(290, 300):
        row = scorer.update(
            alt.slice(j, j + 1), as_of_ms=close_of(alt, j), context=MarketContext(btc=btc.slice(j, j + 1))
        )
    assert row == scan([alt], as_of_ms=as_of_after(alt), context=MarketContext(btc=btc)).rows[0]


def test_signals_from_rows() -> None:
    bars = [make_bars(f"G{i}USDT", 300, seed=50 + i, drift=0.004 * (i - 2)) for i in range(5)]
    result = scan(bars, as_of_ms=as_of_after(bars[0]))
    signals = result.signals(min_score=0.0)
    assert [s.symbol for s in signals] == [r.symbol for r in result.ranked()]
    assert signals
    strongest = result.ranked()[0]
    signal = signals[0]
    assert signal.strength == strongest.strength
    assert signal.factors["T"] == strongest.trend == signal.trend
    assert signal.factors["atr_pct"] == strongest.atr_pct == signal.atr_pct
    assert signal.liquidity == strongest.liquidity
    assert set(signal.factors) == {"T", "M", "C", "O", "B", "Q", "S", "V", "L", "I", "F", "atr_pct"}
    source = next(b for b in bars if b.symbol == signal.symbol)
    assert float(signal.price) == float(source.close[-1])
    assert signal.bar_open_time_ms == int(source.open_time[-1])
    assert all(s.strength >= 75 for s in result.signals(75))
    short = make_bars(n=10)
    with pytest.raises(ValueError, match="no signal"):
        scan([short], as_of_ms=as_of_after(short)).rows[0].to_signal()


def test_scan_of_nothing_is_empty() -> None:
    assert scan([], as_of_ms=0).rows == ()


def test_incremental_does_not_replay_history() -> None:
    """An update touches only the new bars: the recursion runs once per new bar, not over the history."""
    b = make_bars(n=2000, seed=43)
    scorer = IncrementalScorer("1h")
    scorer.warm([b.slice(0, 1999)], as_of_ms=close_of(b, 1998))
    fed: list[int] = []
    import ats.factors.state as state_module

    original = state_module.run

    def counting(state: state_module.State, chunk: Panel, config: FactorConfig) -> object:
        fed.append(chunk.log_close.shape[1])
        return original(state, chunk, config)

    state_module.run = counting  # type: ignore[assignment]
    try:
        scorer.update(b, as_of_ms=as_of_after(b))  # the whole history is passed, only one bar is new
    finally:
        state_module.run = original
    assert fed == [1]
    assert np.isfinite(scorer.update(Bars.empty(b.symbol, "1h"), as_of_ms=as_of_after(b)).strength)
