"""Each factor on small inputs whose answer is computed by hand (numbers in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ats.factors.basis import basis, piecewise
from ats.factors.config import FactorConfig
from ats.factors.flow import flow
from ats.factors.fund_leading import fund_leading
from ats.factors.independence import independence
from ats.factors.indicators import Reading
from ats.factors.inputs import BookSnapshot, MarketContext, TradeFlow
from ats.factors.liquidations import liquidations
from ats.factors.liquidity import liquidity
from ats.factors.momentum import momentum
from ats.factors.open_interest import oi_change, open_interest
from ats.factors.score import composite
from ats.factors.structure import structure, zigzag_advance, zigzag_state
from ats.factors.trend import trend
from ats.factors.volume import volume
from tests.unit.factors.synthetic import START_MS, make_bars

CFG = FactorConfig()
TANH1 = math.tanh(1.0)  # 0.7616: a reading exactly at its "ref"


def row(values: list[float] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)[None, :]


def one(x: float) -> np.ndarray:
    return np.array([x])


# ---------------------------------------------------------------------------------------------- T


def test_trend_straight_line() -> None:
    close = row(0.01 * np.arange(48))  # log closes rising 0.01 per bar, R² = 1
    atr = one(0.04)  # slope / ATR = 0.25 = trend_slope_ref -> tanh(1)
    gaps = row(np.full(12, 0.07))  # fast EMA 1.75 ATR above the slow one = trend_gap_ref -> tanh(1)
    # T = 100 * R² * (0.7 * tanh(1) + 0.3 * tanh(1)) = 76.16
    assert trend(close, gaps, atr, CFG).value[0] == pytest.approx(100 * TANH1)
    wide = row(np.full(12, 0.14))  # twice the ref: tanh(2)
    assert trend(close, wide, atr, CFG).value[0] == pytest.approx(100 * (0.7 * TANH1 + 0.3 * math.tanh(2)))
    # EMAs half above, half below: agreement 0 -> 53.31
    mixed = row([0.07] * 6 + [-0.07] * 6)
    assert trend(close, mixed, atr, CFG).value[0] == pytest.approx(100 * 0.7 * TANH1)
    # the mirror image
    assert trend(-close, -gaps, atr, CFG).value[0] == pytest.approx(-100 * TANH1)


def test_trend_is_discounted_by_r2() -> None:
    noisy = row(0.01 * np.arange(48) + 0.05 * np.where(np.arange(48) % 2 == 0, 1.0, -1.0))
    clean = row(0.01 * np.arange(48))
    gaps = row(np.full(12, 0.07))
    assert 0 < trend(noisy, gaps, one(0.04), CFG).value[0] < trend(clean, gaps, one(0.04), CFG).value[0]


# ---------------------------------------------------------------------------------------------- M


def test_momentum_slope_and_acceleration() -> None:
    linear = row(0.01 * np.arange(13))
    # slope = 0.06 / (6 * 0.05) = 0.2 = momentum_slope_ref -> tanh(1); no acceleration: M = 100 * 0.7 * 0.7616
    assert momentum(linear, one(0.05), CFG).value[0] == pytest.approx(100 * 0.7 * TANH1)
    # EMA flat for 6 bars, then rising 0.06: slope 0.2 (tanh 1), acceleration 0.2 - 0 = 0.2 (tanh(0.2 / 0.12))
    bent = row([0.0] * 7 + [0.01 * k for k in range(1, 7)])
    expected = 100 * (0.7 * TANH1 + 0.3 * math.tanh(0.2 / 0.12))
    assert momentum(bent, one(0.05), CFG).value[0] == pytest.approx(expected)
    assert momentum(-bent, one(0.05), CFG).value[0] == pytest.approx(-expected)
    short = row([np.nan] * 7 + [0.0] * 6)
    assert not momentum(short, one(0.05), CFG).available[0]


# ---------------------------------------------------------------------------------------------- C


def test_flow_steady_buying() -> None:
    history = row(np.full(168, 0.05))  # = flow_ref, all equal: rank 0.5, not crowded
    delta = row(np.full(24, 400.0))  # CVD a straight line: R² = 1, no noise discount
    quote = row(np.full(24, 10_000.0))
    reading = flow(history, delta, quote, CFG)
    assert reading.value[0] == pytest.approx(100 * TANH1)
    assert flow(-history, -delta, quote, CFG).value[0] == pytest.approx(-100 * TANH1)


def test_flow_crowded_is_discounted() -> None:
    history = row(np.concatenate([np.linspace(0.0, 0.025, 167), [0.05]]))  # the current reading is the highest
    delta, quote = row(np.full(24, 400.0)), row(np.full(24, 10_000.0))
    rank = (167 + 0.5) / 168
    crowd = 1 - 0.5 * (rank - 0.9) / 0.1
    assert flow(history, delta, quote, CFG).value[0] == pytest.approx(100 * TANH1 * crowd)


def test_flow_without_trading_is_unavailable() -> None:
    reading = flow(row(np.zeros(168)), row(np.zeros(24)), row(np.zeros(24)), CFG)
    assert not reading.available[0]


# ---------------------------------------------------------------------------------------------- O


def oi_window(step: float) -> np.ndarray:
    return row(10.0 + step * np.arange(CFG.oi_lookback + CFG.oi_window))


def test_open_interest_signed_by_price() -> None:
    change = oi_change(oi_window(0.001), CFG)  # every 24-bar change is 0.024, the median: z = 1
    assert change.value[0] == pytest.approx(1.0)
    atr = 0.01
    rising = row(np.linspace(0.0, 1.5 * atr * math.sqrt(24), 25))  # +1.5 ATR*sqrt(24) = oi_price_ref: tanh(1)
    expected = 100 * math.tanh(0.5) * TANH1  # z / ref = 0.5
    assert open_interest(change, rising, one(atr), CFG).value[0] == pytest.approx(expected)
    assert open_interest(change, -rising, one(atr), CFG).value[0] == pytest.approx(-expected)
    falling_oi = Reading(-change.value, change.available)  # positions closing into a rally
    assert open_interest(falling_oi, rising, one(atr), CFG).value[0] == pytest.approx(-0.5 * expected)


def test_open_interest_needs_history() -> None:
    oi = oi_window(0.001)
    oi[0, :-30] = np.nan  # 6 changes only
    assert not oi_change(oi, CFG).available[0]


# ---------------------------------------------------------------------------------------------- B


def test_basis_piecewise_by_hand() -> None:
    assert piecewise(np.array([0.0001, 0.0011, 0.002, 0.006, 0.02]), 0.0002, 0.002, 0.01).tolist() == pytest.approx(
        [0.0, 0.5, 1.0, 0.0, -1.0]
    )
    # basis 0.0011 -> 0.5, funding 0.0003 -> 0.5: B = 100 * (0.4 * 0.5 + 0.6 * 0.5) = 50
    assert basis(one(0.0011), one(0.0003), CFG).value[0] == pytest.approx(50.0)
    # basis 0.006 -> 0 (crowded half way), funding 0.002 -> -1: B = -60
    assert basis(one(0.006), one(0.002), CFG).value[0] == pytest.approx(-60.0)
    assert basis(one(-0.006), one(-0.002), CFG).value[0] == pytest.approx(60.0)
    assert not basis(one(np.nan), one(np.nan), CFG).available[0]


# ---------------------------------------------------------------------------------------------- Q


def trades(values: list[float], buys: list[bool], forced: list[bool] | None = None, t: int = START_MS) -> TradeFlow:
    n = len(values)
    return TradeFlow(
        np.full(n, t, dtype=np.int64),
        np.array(values),
        np.array(buys),
        np.array(forced or [False] * n),
    )


def large_trade_imbalance(flow: TradeFlow, start_ms: int, end_ms: int, config: FactorConfig) -> float | None:
    reading = liquidations([flow], start_ms, end_ms, config)
    return float(reading.value[0]) if reading.available[0] else None


def test_large_trades_small_sample_counts_everything() -> None:
    flow_ = trades([300.0, 100.0, 100.0, 100.0], [True, True, False, False])
    # imbalance (400 - 200) / 600 = 1/3; shrink 4 / (4 + 10)
    expected = 100 * math.tanh((1 / 3) / 0.5) * 4 / 14
    assert large_trade_imbalance(flow_, START_MS - 1, START_MS, CFG) == pytest.approx(expected)


def test_large_is_relative_to_the_symbols_own_sizes() -> None:
    values = [float(v) for v in range(1, 31)]  # 0.9 quantile = 27.1: 28, 29, 30 are large
    buys = [v >= 29 for v in range(1, 31)]  # 29 and 30 bought, 28 sold
    flow_ = trades(values, buys)
    imbalance = (29 + 30 - 28) / (29 + 30 + 28)
    expected = 100 * math.tanh(imbalance / 0.5) * 3 / 13
    assert large_trade_imbalance(flow_, START_MS - 1, START_MS, CFG) == pytest.approx(expected)
    scaled = trades([v * 1e6 for v in values], buys)  # a bigger market: same answer
    assert large_trade_imbalance(scaled, START_MS - 1, START_MS, CFG) == pytest.approx(expected)


def test_large_trades_window_and_liquidations() -> None:
    flow_ = TradeFlow(
        np.array([START_MS - 10, START_MS, START_MS + 1], dtype=np.int64),  # too old, in, after as_of
        np.array([1e9, 50.0, 1e9]),
        np.array([True, False, True]),
        np.array([False, True, False]),
    )
    # only the liquidation (a forced sell of 50) counts: imbalance -1, shrink 1 / 11
    assert large_trade_imbalance(flow_, START_MS - 10, START_MS, CFG) == pytest.approx(-100 * math.tanh(2) / 11)
    assert large_trade_imbalance(flow_, START_MS + 5, START_MS + 9, CFG) is None


def test_large_trades_of_several_symbols_at_once() -> None:
    values = [float(v) for v in range(1, 31)]
    first = trades(values, [v >= 29 for v in range(1, 31)])
    second = trades([300.0, 100.0, 100.0, 100.0], [True, True, False, False])
    reading = liquidations([second, None, first, trades([], [])], START_MS - 1, START_MS, CFG)
    assert reading.available.tolist() == [True, False, True, False]
    assert reading.value[0] == pytest.approx(100 * math.tanh((1 / 3) / 0.5) * 4 / 14)
    assert reading.value[2] == pytest.approx(100 * math.tanh((31 / 87) / 0.5) * 3 / 13)


# ---------------------------------------------------------------------------------------------- S


def walk(prices: list[float], threshold: float = 1.5) -> dict[str, np.ndarray]:
    n = len(prices)
    zz, _ = zigzag_advance(
        zigzag_state(1), np.ones((1, n), bool), row(prices), row([threshold] * n), row(list(range(n)))
    )
    return zz


def test_zigzag_pivots_by_hand() -> None:
    zz = walk([0, 1, 2, 3, 1, 0.5, 2, 4, 2.5])
    # low 0 (bar 0), high 3 (bar 3), low 0.5 (bar 5), high 4 (bar 7); now falling from 4
    assert zz["piv_p"][0].tolist() == [0, 3, 0.5, 4]
    assert zz["piv_i"][0].tolist() == [0, 3, 5, 7]
    assert zz["zz_dir"][0] == -1


def test_structure_by_hand() -> None:
    prices = [0, 1, 2, 3, 1, 0.5, 2, 4, 2.5]
    zz = walk(prices)
    seen = one(len(prices))
    # higher highs and higher lows (1), pullback (4 - 2.5) / 3.5 = 0.43 <= 0.618 (1), pivot 1 bar old (1),
    # at the EMA (1): S = 100
    assert structure(zz, seen, one(2.5), one(2.5), one(1.0), CFG)[0] == pytest.approx(100.0)
    # pullback to 1: depth 3 / 3.5 = 0.857 -> (1 - 0.857) / (1 - 0.618) = 0.374
    depth = 3 / 3.5
    retracement = (1 - depth) / (1 - 0.618)
    expected = 100 * (0.35 + 0.25 * retracement + 0.15 + 0.25)
    assert structure(zz, seen, one(1.0), one(1.0), one(1.0), CFG)[0] == pytest.approx(expected)
    # the mirror image has the same structure score
    mirrored = walk([-p for p in prices])
    assert structure(mirrored, seen, one(-1.0), one(-1.0), one(1.0), CFG)[0] == pytest.approx(expected)


def test_structure_without_pivots_is_neutral_but_extension_counts() -> None:
    zz = zigzag_state(1)
    s = structure(zz, one(10), one(5.0), one(5.0), one(1.0), CFG)[0]
    assert s == pytest.approx(100 * (0.35 * 0.5 + 0.25 * 0.5 + 0.15 * 0.5 + 0.25))
    over = structure(zz, one(10), one(9.0), one(5.0), one(1.0), CFG)[0]  # 4 ATR from the EMA: extension 0
    assert over == pytest.approx(100 * (0.35 * 0.5 + 0.25 * 0.5 + 0.15 * 0.5))


# ---------------------------------------------------------------------------------------------- V


def test_volume_by_hand() -> None:
    flat = volume(one(1000.0), one(1000.0), row(np.full(7, 1000.0)), CFG)
    assert flat.value[0] == pytest.approx(50.0)
    double = volume(one(2000.0), one(1000.0), row(np.full(7, 2000.0)), CFG)
    level = 0.5 + 0.5 * math.tanh(math.log(2) / 0.7)
    assert double.value[0] == pytest.approx(100 * (0.7 * level + 0.3 * 0.5))
    assert volume(one(0.0), one(0.0), row(np.zeros(7)), CFG).value[0] == 0.0


# ---------------------------------------------------------------------------------------------- L


def book_liquidity(book: BookSnapshot) -> float | None:
    reading = liquidity([book], CFG)
    return float(reading.value[0]) if reading.available[0] else None


def test_liquidity_by_hand() -> None:
    book = BookSnapshot(np.array([99.99]), np.array([5000.0]), np.array([100.01]), np.array([5000.0]), START_MS)
    # spread 0.0002 -> 0.8; depth 999,950 + 500,050 ~ 1e6 -> 1.0; sweep fills at 100.01 -> impact 1e-4 -> 0.95;
    # balance 1 - 100 / 1e6
    depth = 99.99 * 5000 + 100.01 * 5000
    depth_score = min(math.log(depth / 1e4) / math.log(100), 1.0)
    balance = 1 - abs(99.99 * 5000 - 100.01 * 5000) / depth
    expected = 100 * (0.3 * 0.8 + 0.3 * depth_score + 0.3 * 0.95 + 0.1 * balance)
    assert book_liquidity(book) == pytest.approx(expected, rel=1e-6)
    thin = BookSnapshot(np.array([99.99]), np.array([1.0]), np.array([100.01]), np.array([1.0]), START_MS)
    # 200 USDT of depth (score 0) cannot absorb a 10,000 USDT sweep (impact score 0): spread and balance only
    thin_balance = 1 - abs(99.99 - 100.01) / (99.99 + 100.01)
    assert book_liquidity(thin) == pytest.approx(100 * (0.3 * 0.8 + 0.1 * thin_balance))
    crossed = BookSnapshot(np.array([100.02]), np.array([1.0]), np.array([100.01]), np.array([1.0]), START_MS)
    assert book_liquidity(crossed) is None
    # a deeper book, several levels swept: 4,000 USDT at 100.01, then 6,000 of the next level at 100.02
    deep = BookSnapshot(
        np.array([99.99, 99.98]), np.array([40.0, 1000.0]), np.array([100.01, 100.02]), np.array([40.0, 1000.0]), 0
    )
    reading = liquidity([None, deep, crossed], CFG)
    assert reading.available.tolist() == [False, True, False]
    qty_bought = 40.0 + (10_000 - 40 * 100.01) / 100.02
    expected_impact = 10_000 / qty_bought / 100.0 - 1
    assert 0 < expected_impact < 0.002
    bid_depth, ask_depth = 99.99 * 40 + 99.98 * 1000, 100.01 * 40 + 100.02 * 1000
    sold_qty = 40.0 + (10_000 - 40 * 99.99) / 99.98
    impact = max(expected_impact, 1 - 10_000 / sold_qty / 100.0)
    depth = bid_depth + ask_depth
    expected = 100 * (
        0.3 * 0.8
        + 0.3 * math.log(depth / 1e4) / math.log(100)
        + 0.3 * (1 - impact / 0.002)
        + 0.1 * (1 - abs(bid_depth - ask_depth) / depth)
    )
    assert reading.value[1] == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------- I


def test_independence_joins_on_time_not_position() -> None:
    btc = make_bars("BTCUSDT", 200, seed=1)
    same = np.log(btc.close)[None, :]
    last_open = np.array([int(btc.open_time[-1])])
    ctx = MarketContext(btc=btc)
    assert independence(same, last_open, "1h", ctx, CFG).value[0] == pytest.approx(0.0, abs=1e-9)
    # BTC misses a bar in the middle: a positional join would shift every earlier return; a time join drops one.
    holed = btc.slice(0, 150).concat(btc.slice(151, 200))
    assert independence(same, last_open, "1h", MarketContext(btc=holed), CFG).value[0] == pytest.approx(0.0, abs=1e-9)
    other = np.log(make_bars("XUSDT", 200, seed=7).close)[None, :]
    assert independence(other, last_open, "1h", ctx, CFG).value[0] > 70


def test_independence_never_reads_context_after_the_symbols_bar() -> None:
    btc = make_bars("BTCUSDT", 200, seed=1)
    sym = np.log(btc.close[:150])[None, :]
    last_open = np.array([int(btc.open_time[149])])
    before = independence(sym, last_open, "1h", MarketContext(btc=btc.slice(0, 150)), CFG)
    after = independence(sym, last_open, "1h", MarketContext(btc=btc), CFG)
    assert before.value[0] == after.value[0]


# ---------------------------------------------------------------------------------------------- F


def test_fund_leading_money_ahead_of_price() -> None:
    flat_price = row(np.zeros(25))
    no_oi = Reading(one(0.0), np.array([False]))
    # CVD part tanh(0.05 / flow_ref) = tanh(1); volume part sign * tanh(0) = 0; OI unavailable:
    # money = (0.5 * 0.7616 + 0.2 * 0) / 0.7
    money = 0.5 * TANH1 / 0.7
    reading = fund_leading(one(0.05), no_oi, one(0.0), flat_price, one(0.01), CFG)
    assert reading.value[0] == pytest.approx(100 * money / 2)
    # price already up 3 ATR*sqrt(24) (twice fund_price_ref) with no flow: price leads money, F negative
    rallied = row(np.linspace(0, 3 * 0.01 * math.sqrt(24), 25))
    lagging = fund_leading(one(0.0), no_oi, one(0.0), rallied, one(0.01), CFG)
    assert lagging.value[0] == pytest.approx(-100 * math.tanh(2) / 2)


# ---------------------------------------------------------------------------------------------- composite


def readings(**values: float) -> dict[str, Reading]:
    out = {}
    for name in ("T", "M", "C", "O", "B", "Q", "S", "V", "L", "I", "F"):
        v = values.get(name)
        out[name] = Reading(one(v if v is not None else 0.0), np.array([v is not None]))
    return out


def test_composite_by_hand() -> None:
    # T = M = C = 60 (the rest missing): mean 60 = full evidence -> 100; quality 50 -> x0.9; F 0 -> x1
    result = composite(readings(T=60, M=60, C=60, S=50, V=50), CFG)
    assert result.direction[0] == 1
    assert result.strength[0] == pytest.approx(90.0)
    assert result.coverage[0] == pytest.approx(0.65)
    # F +50 supports the long side: x(1 + 0.4 * 0.5) = 1.2 (the bound)
    boosted = composite(readings(T=30, M=30, C=30, S=50, V=50, F=50), CFG)
    assert boosted.strength[0] == pytest.approx(50 * 0.9 * 1.2)
    against = composite(readings(T=30, M=30, C=30, S=50, V=50, F=-25), CFG)
    assert against.strength[0] == pytest.approx(50 * 0.9 * 0.9)


def test_composite_neutral_band_and_mirror() -> None:
    quiet = composite(readings(T=5, M=5, S=80), CFG)
    assert quiet.direction[0] == 0
    assert quiet.strength[0] == 0.0
    bull = composite(readings(T=40, M=20, C=10, O=30, B=-10, Q=5, S=70, V=60, L=80, I=30, F=20), CFG)
    bear = composite(readings(T=-40, M=-20, C=-10, O=-30, B=10, Q=-5, S=70, V=60, L=80, I=30, F=-20), CFG)
    assert bull.direction[0] == -bear.direction[0] == 1
    assert bull.strength[0] == pytest.approx(bear.strength[0])
