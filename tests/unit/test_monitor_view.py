"""The monitor's in-memory view: which mark ticks reach the lifecycle, the book of watched positions, stream
names, bars from klines and which closed-bar scores become reversal signals."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from typing import Any

from ats.domain import Band, Direction
from ats.exchange.base import KlineUpdate
from ats.factors import FactorRow
from ats.lifecycle import Phase
from monitor.view import Book, Watch, bar_of, market_streams, reversal_signal
from tests.unit.lifecycle.harness import KEY, RULES, Driver


def opened(direction: Direction = Direction.LONG, **policy: Any) -> Driver:
    driver = Driver(direction, **policy)
    driver.open_fully()
    return driver


NOW = 10**9  # a mark's event time (ms), later than anything the driver did


def watch_of(driver: Driver) -> Watch:
    watch = Watch.of(driver.p)
    assert watch is not None
    return watch


def test_only_ticks_at_or_beyond_the_stop_reach_the_lifecycle() -> None:
    long = watch_of(opened())
    assert long.stop_price == D("98.00")
    assert not long.wants_mark(D("98.01"), NOW)
    assert long.wants_mark(D("98.00"), NOW)
    short = watch_of(opened(Direction.SHORT))
    assert short.stop_price == D("102.00")
    assert not short.wants_mark(D("101.99"), NOW)
    assert short.wants_mark(D("102.50"), NOW)


def test_after_a_crossing_a_tick_goes_through_once_the_grace_ran_out_or_to_reset_the_clock() -> None:
    d = opened()
    d.mark("97.50")  # the lifecycle starts its supervision clock
    watch = watch_of(d)
    crossed = watch.stop_crossed_ms
    assert crossed is not None
    grace = d.p.policy.supervision_grace_ms
    assert not watch.wants_mark(D("97.40"), crossed + grace - 1)  # still within the grace: nothing changes
    assert watch.wants_mark(D("97.40"), crossed + grace)  # the exchange stop did not fire: close at market
    assert watch.wants_mark(D("99.00"), crossed + 1)  # back above: the lifecycle must reset the clock
    d.mark("99.00")
    assert not watch_of(d).wants_mark(D("99.00"), crossed + 2)


def test_a_tick_tells_which_live_levels_it_reached() -> None:
    d = opened()
    watch = watch_of(d)
    assert watch.reached(D("100.00")) == ()
    assert [t.leg for t in watch.reached(D("104.10"))] == ["T1"]
    assert [t.leg for t in watch.reached(D("97.00"))] == ["S1"]
    d.fill("T1", "0.500", "104.00")
    assert [t.leg for t in watch_of(d).reached(D("104.10"))] == []  # filled: nothing to wait for


def test_a_position_closing_at_market_ignores_ticks() -> None:
    d = opened()
    d.close()
    watch = watch_of(d)
    assert watch.closing
    assert not watch.wants_mark(D("90"), NOW)


def test_pending_legs_are_those_without_an_outcome() -> None:
    d = Driver()
    d.accept("E")
    d.fill("E", "1.000", "100.00", done=True, cum="1.000")
    assert watch_of(d).pending == (d.cid("S1"), d.cid("T1"), d.cid("T2"))
    d.accept("S1")
    assert watch_of(d).pending == (d.cid("T1"), d.cid("T2"))


def test_the_book_tracks_open_positions_by_key_and_symbol() -> None:
    book = Book()
    d = opened()
    before, after = book.put(KEY, d.p)
    assert before is None
    assert after is not None
    assert after.phase is Phase.OPEN
    assert book.on_symbol(RULES.symbol) == after
    assert book.symbols() == {RULES.symbol}
    d.fill("S1", "1.000", "98.00", done=True)  # stopped out: nothing left to watch
    before, after = book.put(KEY, d.p)
    assert before is not None
    assert after is None
    assert len(book) == 0
    book.replace_all([opened().p, replace(opened().p, key="other", symbol="ETHUSDT")])
    assert book.symbols() == {RULES.symbol, "ETHUSDT"}


def test_streams_per_symbol() -> None:
    assert market_streams("BTCUSDT", "1h") == ["btcusdt@markPrice@1s", "btcusdt@kline_1h"]


def test_a_closed_kline_becomes_one_bar() -> None:
    update = KlineUpdate(
        "BTCUSDT", "1h", 3_600_000, 7_199_999, D("1"), D("3"), D("0.5"), D("2"), D("10"), D("20"), 7, D("4"), D("8"),
        closed=True, event_time_ms=7_200_000,
    )  # fmt: skip
    bars = bar_of(update)
    assert len(bars) == 1
    assert int(bars.open_time[0]) == 3_600_000
    assert (bars.open[0], bars.high[0], bars.low[0], bars.close[0]) == (1.0, 3.0, 0.5, 2.0)
    assert int(bars.close_time[0]) == 7_199_999


def _row(direction: Direction | None, strength: float, *, insufficient: str | None = None) -> FactorRow:
    return FactorRow(
        symbol=RULES.symbol, bar_open_time_ms=3_600_000, close=99.0, direction=direction, strength=strength,
        band=Band.of(strength), trend=0, momentum=0, flow=0, open_interest=0, basis=0, liquidations=0, structure=50,
        volume=0, liquidity=50, independence=0, fund_leading=0, atr_pct=0.01, coverage=1.0, missing=(),
        insufficient=insufficient,
    )  # fmt: skip


def test_only_opposite_signals_strong_enough_become_reversal_events() -> None:
    watch = watch_of(opened())  # long; policy: tighten at 70
    event = reversal_signal(watch, _row(Direction.SHORT, 75.0), D("99.5"), 10)
    assert event is not None
    assert (event.direction, event.bar_open_time_ms, event.mark_price) == (Direction.SHORT, 3_600_000, D("99.5"))
    assert reversal_signal(watch, _row(Direction.SHORT, 60.0), D("99.5"), 10) is None
    assert reversal_signal(watch, _row(Direction.LONG, 95.0), D("99.5"), 10) is None
    assert reversal_signal(watch, _row(None, 0.0), D("99.5"), 10) is None
    assert reversal_signal(watch, _row(Direction.SHORT, 90.0, insufficient="stale"), D("99.5"), 10) is None
    ignoring = watch_of(opened(on_reversal="ignore"))
    assert reversal_signal(ignoring, _row(Direction.SHORT, 99.0), D("99.5"), 10) is None
