"""The model's calibration on synthetic markets: noise rarely signals, and never with a bias to one side;
an obvious trend with money behind it gives the obvious signal. Guards against the ancestor's long bias."""

from __future__ import annotations

import numpy as np

from ats.factors import MarketContext, SymbolExtras, scan
from ats.factors.inputs import PremiumSnapshot
from tests.unit.factors.synthetic import (
    as_of_after,
    make_bars,
    make_book,
    make_open_interest,
    make_trades,
    mirror_bars,
)


def test_noise_rarely_signals_and_has_no_side() -> None:
    bars = [make_bars(f"N{i}USDT", 300, seed=9000 + i, volatility=0.01) for i in range(200)]
    result = scan(bars, as_of_ms=as_of_after(bars[0]))
    strength = np.array([r.strength for r in result.rows])
    assert (strength >= 75).mean() < 0.05
    signed = np.array([0 if r.direction is None else r.direction.sign * r.strength for r in result.rows])
    longs, shorts = int((signed > 0).sum()), int((signed < 0).sum())
    assert min(longs, shorts) > 0.35 * (longs + shorts)
    assert abs(signed.mean()) < 3 * signed.std() / np.sqrt(signed.size)  # no bias beyond sampling noise


def test_a_trend_with_money_behind_it_is_a_strong_signal() -> None:
    bars = [make_bars(f"L{i}USDT", 300, seed=5000 + i, drift=0.003, buy_bias=0.05) for i in range(30)]
    as_of = as_of_after(bars[0])
    extras = {
        b.symbol: SymbolExtras(
            open_interest=make_open_interest(b, seed=i, trend=0.003),
            premium=PremiumSnapshot(float(b.close[-1]) * 1.001, float(b.close[-1]), 0.0003, as_of),
            book=make_book(float(b.close[-1])),
            trades=make_trades(as_of, seed=i, buy_share=0.65),
        )
        for i, b in enumerate(bars)
    }
    context = MarketContext(make_bars("BTCUSDT", 300, seed=1), make_bars("ETHUSDT", 300, seed=2))
    result = scan(bars, as_of_ms=as_of, extras=extras, context=context)
    assert all(r.direction == "LONG" for r in result.rows)
    assert np.mean([r.strength >= 75 for r in result.rows]) > 0.6
    flipped = scan([mirror_bars(b, 1.0) for b in bars], as_of_ms=as_of)
    assert all(r.direction in (None, "SHORT") for r in flipped.rows)
