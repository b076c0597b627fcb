"""Panel alignment, the as-of discipline, and the adapters from exchange values."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from ats.domain import Bars, Side, interval_ms
from ats.exchange.base import (
    AggTrade,
    ForceOrder,
    KlineUpdate,
    MarkPriceUpdate,
    OpenInterestPoint,
    OrderBook,
    PremiumIndex,
)
from ats.factors import (
    IncrementalScorer,
    OpenInterestSeries,
    SymbolExtras,
    bars_from_klines,
    book_snapshot,
    build_panel,
    last_closed_open_time,
    open_interest_series,
    premium_snapshot,
    trade_flow,
)
from tests.unit.factors.synthetic import START_MS, as_of_after, make_bars

HOUR = 3_600_000


def test_last_closed_open_time() -> None:
    assert last_closed_open_time(START_MS + 10 * HOUR, "1h") == START_MS + 9 * HOUR  # closed exactly now
    assert last_closed_open_time(START_MS + 10 * HOUR - 1, "1h") == START_MS + 8 * HOUR  # bar 9 still forming
    week = interval_ms("1w")
    monday = 4 * 86_400_000  # weekly bars open on Mondays, not at multiples of a week since the epoch
    assert last_closed_open_time(monday + 3 * week + 5, "1w", anchor_ms=monday) == monday + 2 * week


def test_new_listing_is_nan_padded_not_shifted() -> None:
    old = make_bars("OLDUSDT", 10, seed=1)
    new = make_bars("NEWUSDT", 4, seed=2, start_ms=START_MS + 6 * HOUR)
    panel = build_panel([old, new], as_of_ms=as_of_after(old), interval="1h")
    assert panel.open_time.tolist() == (START_MS + HOUR * np.arange(10)).tolist()
    assert np.isnan(panel.log_close[1, :6]).all()
    np.testing.assert_array_equal(panel.close[1, 6:], new.close)
    np.testing.assert_array_equal(panel.close[0], old.close)
    np.testing.assert_allclose(panel.log_close[0], np.log(old.close))


def test_gaps_stay_in_place_and_forming_bars_are_dropped() -> None:
    b = make_bars(n=10, seed=3)
    holed = b.slice(0, 4).concat(b.slice(5, 10))
    panel = build_panel([holed], as_of_ms=as_of_after(b) - 1, interval="1h")  # bar 9 is still forming
    assert panel.open_time.size == 9
    assert np.isnan(panel.close[0, 4])
    np.testing.assert_array_equal(panel.close[0, 5:], b.close[5:9])


def test_start_ms_keeps_only_newer_bars() -> None:
    b = make_bars(n=10, seed=4)
    panel = build_panel([b], as_of_ms=as_of_after(b), interval="1h", start_ms=int(b.open_time[7]))
    np.testing.assert_array_equal(panel.close[0], b.close[7:])


def test_repairs_and_clamps() -> None:
    b = make_bars(n=3, seed=5)
    odd = Bars(
        b.symbol,
        "1h",
        b.open_time,
        b.open,
        b.low,  # high and low swapped
        b.high,
        b.close,
        b.volume,
        b.quote_volume,
        b.trades,
        b.taker_buy_volume,
        b.quote_volume * 2,  # taker buys above the total
    )
    panel = build_panel([odd], as_of_ms=as_of_after(b), interval="1h")
    np.testing.assert_allclose(np.exp(panel.log_high[0]), np.maximum.reduce([b.open, b.high, b.low, b.close]))
    np.testing.assert_array_equal(panel.taker_buy_quote[0], b.quote_volume)


def test_programming_errors_are_loud() -> None:
    a = make_bars("AUSDT", 5)
    with pytest.raises(ValueError, match="once"):
        build_panel([a, a], as_of_ms=as_of_after(a), interval="1h")
    with pytest.raises(ValueError, match="1m bars"):
        build_panel([make_bars("BUSDT", 5, interval="1m")], as_of_ms=as_of_after(a), interval="1h")


def test_open_interest_is_taken_as_of_each_close() -> None:
    b = make_bars(n=6, seed=6)
    closes = b.open_time + HOUR
    # snapshots: 5 min before bar 0 closes, at bar 1's close, one 1 ms after bar 2's close (not usable for bar 2)
    series = OpenInterestSeries(
        np.array([closes[0] - 300_000, closes[1], closes[2] + 1], dtype=np.int64),
        np.array([100.0, 200.0, 300.0]),
    )
    panel = build_panel([b], as_of_ms=as_of_after(b), interval="1h", extras={b.symbol: SymbolExtras(series)})
    oi = np.exp(panel.log_open_interest[0])
    assert oi[:3].tolist() == pytest.approx([100.0, 200.0, 200.0])
    assert oi[3] == pytest.approx(300.0)
    # older than two bars at a bar's close (and no snapshot period given): not used
    assert np.isnan(panel.log_open_interest[0, 5])


def test_coarser_open_interest_serves_finer_bars() -> None:
    b = make_bars(n=30, seed=7, interval="1m")
    five = 300_000
    series = OpenInterestSeries(START_MS + five * np.arange(8, dtype=np.int64), np.arange(1.0, 9.0), five)
    panel = build_panel([b], as_of_ms=as_of_after(b), interval="1m", extras={b.symbol: SymbolExtras(series)})
    oi = np.exp(panel.log_open_interest[0])
    expected = 1.0 + (b.open_time + 60_000 - START_MS) // five  # the newest 5-minute snapshot at each close
    np.testing.assert_allclose(oi, expected)
    with pytest.raises(ValueError, match="oldest first"):
        OpenInterestSeries(np.array([2, 1], dtype=np.int64), np.array([1.0, 1.0]))


def test_adapters_from_exchange_values() -> None:
    points = [
        OpenInterestPoint("XUSDT", Decimal("20"), Decimal("2000"), START_MS + HOUR),
        OpenInterestPoint("XUSDT", Decimal("10"), Decimal("1000"), START_MS),
    ]
    series = open_interest_series(points)
    assert series.time_ms.tolist() == [START_MS, START_MS + HOUR]
    assert series.contracts.tolist() == [10.0, 20.0]
    assert series.period_ms == HOUR  # inferred from the spacing
    assert open_interest_series(points, period="5m").period_ms == 300_000

    premium = premium_snapshot(PremiumIndex("XUSDT", Decimal("101"), Decimal("100"), Decimal("0.0001"), 0, START_MS))
    assert (premium.mark_price, premium.index_price, premium.funding_rate) == (101.0, 100.0, 0.0001)
    streamed = premium_snapshot(
        MarkPriceUpdate("XUSDT", Decimal("99"), Decimal("100"), Decimal("-0.0002"), 0, START_MS + 5)
    )
    assert (streamed.mark_price, streamed.funding_rate, streamed.time_ms) == (99.0, -0.0002, START_MS + 5)

    book = book_snapshot(
        OrderBook(
            "XUSDT",
            [(Decimal("99.9"), Decimal("2")), (Decimal("99.8"), Decimal("3"))],
            [(Decimal("100.1"), Decimal("1"))],
            1,
            START_MS,
        )
    )
    assert book.bid_price.tolist() == [99.9, 99.8]
    assert book.bid_qty.tolist() == [2.0, 3.0]
    assert book.ask_price.tolist() == [100.1]

    flow = trade_flow(
        [
            AggTrade("XUSDT", Decimal("100"), Decimal("2"), buyer_is_maker=False, trade_time_ms=1, event_time_ms=1),
            AggTrade("XUSDT", Decimal("100"), Decimal("1"), buyer_is_maker=True, trade_time_ms=2, event_time_ms=2),
        ],
        [ForceOrder("XUSDT", Side.SELL, Decimal("99"), Decimal("10"), 3, 3)],
    )
    assert flow.quote_value.tolist() == [200.0, 100.0, 990.0]
    assert flow.is_buy.tolist() == [True, False, False]
    assert flow.forced.tolist() == [False, False, True]
    empty = trade_flow()
    assert empty.quote_value.size == 0


def kline(b: Bars, i: int, *, closed: bool = True, symbol: str | None = None) -> KlineUpdate:
    def d(name: str) -> Decimal:
        return Decimal(repr(float(getattr(b, name)[i])))

    open_ms = int(b.open_time[i])
    return KlineUpdate(
        symbol or b.symbol, b.interval, open_ms, open_ms + HOUR - 1, d("open"), d("high"), d("low"), d("close"),
        d("volume"), d("quote_volume"), int(b.trades[i]), d("taker_buy_volume"), d("taker_buy_quote_volume"),
        closed, open_ms + HOUR,
    )  # fmt: skip


def test_closed_kline_events_feed_the_incremental_scorer() -> None:
    b = make_bars(n=200, seed=8)
    events = [kline(b, 199), kline(b, 198), kline(b, 199, closed=False), kline(b, 199, symbol="OTHERUSDT")]
    fed = bars_from_klines(b.symbol, "1h", events)
    assert fed.open_time.tolist() == [int(b.open_time[198]), int(b.open_time[199])]
    np.testing.assert_array_equal(fed.close, b.close[198:200])
    assert len(bars_from_klines(b.symbol, "1h", [kline(b, 199, closed=False)])) == 0
    scorer = IncrementalScorer("1h")
    scorer.warm([b.slice(0, 198)], as_of_ms=int(b.open_time[198]))
    row = scorer.update(fed, as_of_ms=as_of_after(b))
    assert row == scorer.warm([b], as_of_ms=as_of_after(b)).rows[0]
