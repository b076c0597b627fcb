"""The simulated market: determinism, bar consistency, history, paging, aggregation, replay."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from ats.domain import Bars
from sim.market import CLOSE, HIGH, LOW, OPEN, TAKER_BUY, VOLUME, Market, ReplaySource, SyntheticSource
from sim.specs import CATALOGUE

START_MS = 1_767_225_600_000 + 1_234_567  # not aligned to a bar: a forming bar exists at start


def market(seed: int = 7, interval: str = "1h", start_ms: int = START_MS, history: int = 600) -> Market:
    return Market(SyntheticSource(seed=seed), interval=interval, start_ms=start_ms, history_bars=history)


def test_catalogue_has_realistic_contracts() -> None:
    perpetuals = [s for s in CATALOGUE if s.contract_type == "PERPETUAL"]
    assert len(perpetuals) >= 30
    btc = next(s for s in CATALOGUE if s.symbol == "BTCUSDT")
    assert (btc.tick, btc.step, btc.price_precision, btc.quantity_precision) == ("0.10", "0.001", 2, 3)
    assert any(s.tick_size <= Decimal("0.00001") for s in CATALOGUE)
    assert sum(1 for s in CATALOGUE if s.listed_bars) >= 2
    assert sum(1 for s in CATALOGUE if s.mover) >= 2


def test_same_seed_same_market_and_different_seed_different_market() -> None:
    a, b, c = market(seed=11), market(seed=11), market(seed=12)
    a.advance(120)
    b.advance(120)
    c.advance(120)
    assert np.array_equal(a.bars, b.bars, equal_nan=True)
    assert np.array_equal(a.last, b.last)
    assert not np.array_equal(a.last, c.last)


def test_bars_are_consistent_and_free_of_nan_once_listed() -> None:
    m = market()
    m.advance(2 * 3600)
    for i, spec in enumerate(m.specs):
        bars = m.bars[:, i, :]
        listed = np.isfinite(bars[CLOSE])
        data = bars[:, listed]
        assert data.shape[1] > 0, spec.symbol
        assert np.all(np.isfinite(data))
        assert np.all(data[LOW] <= np.minimum(data[OPEN], data[CLOSE]) + 1e-9)
        assert np.all(data[HIGH] >= np.maximum(data[OPEN], data[CLOSE]) - 1e-9)
        assert np.all(data[TAKER_BUY] <= data[VOLUME] + 1e-9)
        assert np.all(data[VOLUME] > 0)
        if spec.listed_bars is None:
            assert listed.all(), spec.symbol


def test_klines_serve_history_with_the_forming_bar_last_and_page_by_time() -> None:
    m = market()
    rows = m.kline_rows("BTCUSDT", "1h", start_ms=None, end_ms=None, limit=500)
    assert len(rows) == 500
    step = 3_600_000
    assert all(b[0] - a[0] == step for a, b in itertools.pairwise(rows))
    assert rows[-1][0] == m.bar_open_ms
    assert rows[-1][6] == m.bar_open_ms + step - 1
    closed = rows[:-1]
    assert closed[-1][0] + step == m.bar_open_ms
    page = m.kline_rows("BTCUSDT", "1h", start_ms=rows[10][0], end_ms=None, limit=5)
    assert [r[0] for r in page] == [r[0] for r in rows[10:15]]
    tail = m.kline_rows("BTCUSDT", "1h", start_ms=None, end_ms=rows[20][0], limit=3)
    assert [r[0] for r in tail] == [r[0] for r in rows[18:21]]
    bars = Bars.from_rows("BTCUSDT", "1h", rows)
    assert np.all(bars.low <= bars.high)


def test_bars_close_as_time_passes_and_aggregate_to_longer_intervals() -> None:
    m = market()
    before = len(m.open_times)
    closed: list[int] = []
    m.advance(2 * 3600, lambda info: closed.append(info.closed_bar_open_ms) if info.closed_bar_open_ms else None)
    assert len(closed) == 2
    assert len(m.open_times) == before + 2
    four_hour = m.kline_rows("ETHUSDT", "4h", start_ms=None, end_ms=None, limit=10)
    assert all(r[0] % (4 * 3_600_000) == 0 for r in four_hour)
    with pytest.raises(ValueError, match="cannot be built"):
        m.kline_rows("ETHUSDT", "15m", start_ms=None, end_ms=None, limit=10)


def test_coarse_ticks_cover_the_same_time_and_bars_in_fewer_ticks() -> None:
    fine, coarse = market(interval="1m"), market(interval="1m")
    fine_ticks: list[int] = []
    coarse_ticks: list[int] = []
    fine.advance(5 * 60 + 30, lambda info: fine_ticks.append(info.time_ms))
    coarse.advance(5 * 60 + 30, lambda info: coarse_ticks.append(info.time_ms), tick_s=60)
    assert coarse.now_ms == fine.now_ms
    assert np.array_equal(coarse.open_times, fine.open_times)
    assert len(fine_ticks) == 5 * 60 + 30
    assert len(coarse_ticks) == 5 + 1  # the last tick is the 30 s left over
    assert coarse_ticks[-1] - coarse_ticks[-2] == 30_000
    again = market(interval="1m")
    again.advance(5 * 60 + 30, tick_s=60)
    assert np.array_equal(again.bars, coarse.bars, equal_nan=True)  # seeded: the same ticks, the same market
    with pytest.raises(ValueError, match="between 1 s and one bar"):
        coarse.advance(60, tick_s=120)


def test_compressed_market_moves_like_hourly_bars_on_one_minute_bars() -> None:
    hourly, minute = market(interval="1h"), market(interval="1m")
    hourly_returns = np.diff(np.log(hourly.bars[CLOSE, 0, -400:]))
    minute_returns = np.diff(np.log(minute.bars[CLOSE, 0, -400:]))
    ratio = np.std(minute_returns) / np.std(hourly_returns)
    assert 0.6 < ratio < 1.6


@pytest.mark.parametrize(("interval", "bars_in_a_day"), [("1h", 24), ("1m", 24), ("4h", 6)])
def test_24h_statistics_cover_a_market_day(interval: str, bars_in_a_day: int) -> None:
    """A compressed market (bars under an hour move like hourly bars) has 24-bar days, so the 24h ticker agrees
    with what its bars show; an hourly or slower market has real days."""
    m = market(interval=interval)
    ticker = m.ticker_24h("BTCUSDT")
    bar_ms = m.interval_ms
    assert m.now_ms - ticker["openTime"] <= bars_in_a_day * bar_ms
    assert m.now_ms - ticker["openTime"] > (bars_in_a_day - 1) * bar_ms


def test_new_listings_have_short_history_and_movers_move() -> None:
    m = market()
    kaito = m.kline_rows("KAITOUSDT", "1h", start_ms=None, end_ms=None, limit=1500)
    assert 100 <= len(kaito) <= 125
    assert m.listed_ms[m.index["KAITOUSDT"]] > m.open_times[0]
    changes = {s: float(m.ticker_24h(s)["priceChangePercent"]) for s in ("WIFUSDT", "ENAUSDT")}
    assert changes["WIFUSDT"] > 10
    assert changes["ENAUSDT"] < -5


def test_open_interest_funding_and_book_are_served() -> None:
    m = market()
    oi = m.open_interest_hist("BTCUSDT", "1h", start_ms=None, end_ms=None, limit=30)
    assert len(oi) == 30
    assert all(r["timestamp"] % 3_600_000 == 0 for r in oi)
    assert all(float(r["sumOpenInterest"]) > 0 for r in oi)
    funding = m.funding_rate_history("BTCUSDT", start_ms=None, end_ms=None, limit=10)
    assert len(funding) == 10
    assert all(r["fundingTime"] % (8 * 3_600_000) == 0 for r in funding)
    assert all(not math.isnan(float(r["fundingRate"])) for r in funding)
    bids, asks = m.book("BTCUSDT", 20)
    assert bids[0].price < asks[0].price
    assert all(a.price < b.price for a, b in itertools.pairwise(asks))
    quote = m.quote("BTCUSDT")
    assert quote.last % Decimal("0.1") == 0
    premium = m.premium_index("BTCUSDT")
    assert premium["nextFundingTime"] % (8 * 3_600_000) == 0


def test_set_price_moves_last_and_mark_and_the_forming_bar() -> None:
    m = market()
    m.set_price("BTCUSDT", Decimal("123456.7"), Decimal("123400"))
    quote = m.quote("BTCUSDT")
    assert quote.last == Decimal("123456.7")
    assert abs(quote.mark - Decimal("123400")) < Decimal("0.01")
    assert m.forming[HIGH, m.index["BTCUSDT"]] == pytest.approx(123456.7)


def test_replay_source_walks_stored_klines(tmp_path: Path) -> None:
    step = 3_600_000
    rows = []
    price = 100.0
    for k in range(700):
        o, c = price, price * (1.01 if k % 3 else 0.99)
        rows.append([k * step, f"{o:.2f}", f"{max(o, c) * 1.002:.2f}", f"{min(o, c) * 0.998:.2f}", f"{c:.2f}",
                     "10.000", k * step + step - 1, "1000.0", 50, "6.000", "600.0", "0"])  # fmt: skip
        price = c
    path = tmp_path / "TESTUSDT-1h.csv"
    path.write_text("\n".join(",".join(str(v) for v in row) for row in rows))
    source = ReplaySource.from_directory(tmp_path, "1h")
    m = Market(source, interval="1h", start_ms=1_767_225_600_000, history_bars=600)
    served = m.kline_rows("TESTUSDT", "1h", start_ms=None, end_ms=None, limit=1000)
    assert len(served) == 601  # 600 history bars + the forming one
    assert served[-2][4] == rows[599][4]
    m.advance(3 * 3600)
    after = m.kline_rows("TESTUSDT", "1h", start_ms=None, end_ms=None, limit=4)
    assert after[0][1:5] == rows[600][1:5]


def test_books_have_per_symbol_ids_and_sub_second_updates_change_a_few_levels() -> None:
    m = market()
    btc, eth = m.index["BTCUSDT"], m.index["ETHUSDT"]
    full = m.book_arrays("BTCUSDT")
    top = m.book_arrays("BTCUSDT", 5)
    assert len(full.bid_ticks) == len(full.ask_ticks) == 100
    assert top.ask_steps.tolist() == full.ask_steps[:5].tolist()  # a shallow read agrees with a deep one
    ids = (int(m.book_id[btc]), int(m.book_id[eth]))
    m.set_price("ETHUSDT", Decimal(3100))
    assert (int(m.book_id[btc]), int(m.book_id[eth])) == (ids[0], ids[1] + 1)
    m.refresh_books(m.now_ms + 100)
    after = m.book_arrays("BTCUSDT")
    assert after.update_id == full.update_id + 1
    assert after.ask_ticks.tolist() == full.ask_ticks.tolist()  # prices stay between market ticks
    changed = int((after.ask_steps != full.ask_steps).sum() + (after.bid_steps != full.bid_steps).sum())
    assert 0 < changed < 100


def test_mark_index_and_premium_klines_follow_the_recorded_basis() -> None:
    m = market()
    last = m.kline_rows("BTCUSDT", "1h", start_ms=None, end_ms=None, limit=50)
    mark = m.kline_rows("BTCUSDT", "1h", start_ms=None, end_ms=None, limit=50, price="mark")
    index = m.kline_rows("BTCUSDT", "1h", start_ms=None, end_ms=None, limit=50, price="index")
    premium = m.kline_rows("BTCUSDT", "1h", start_ms=None, end_ms=None, limit=50, price="premium")
    assert [r[0] for r in last] == [r[0] for r in mark] == [r[0] for r in index] == [r[0] for r in premium]
    for row in mark[:-1] + index[:-1]:
        assert float(row[3]) <= float(row[1]) <= float(row[2])
        assert row[5] == "0.000"
    assert all(abs(float(r[4])) < 0.02 for r in premium)
    assert all(abs(float(a[4]) / float(b[4]) - 1) < 0.02 for a, b in zip(mark, last, strict=True))
    month = m.kline_rows("BTCUSDT", "1M", start_ms=None, end_ms=None, limit=2)
    assert month[-1][6] - month[-1][0] >= 27 * 86_400_000


def test_a_one_minute_market_keeps_time_in_market_hours_of_one_bar() -> None:
    """Every 1m bar moves like an hour, so listing ages, 24h windows and funding count one bar as an hour."""
    m = market(interval="1m", history=1500)
    bar = 60_000
    ages = {s: (m.now_ms - m.onboard_date_ms(s)) // bar for s in m.symbols}
    assert {s: ages[s] for s in ages if ages[s] < 1500} == {s.symbol: s.listed_bars for s in CATALOGUE if s.listed_bars}
    assert ages["BTCUSDT"] >= 365 * 24
    assert m.day_ms == 24 * bar
    assert m.next_funding_ms() % (8 * bar) == 0
    assert 0 < m.next_funding_ms() - m.now_ms <= 8 * bar
    times = [t for t, _, _ in m.funding_history[m.index["BTCUSDT"]]]
    assert len(times) > 100
    assert {b - a for a, b in itertools.pairwise(times)} == {8 * bar}


def test_replay_reads_binances_public_data_layout_with_empty_columns(tmp_path: Path) -> None:
    klines = tmp_path / "klines"
    klines.mkdir()
    header = (
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,"
        "ignore"
    )
    for symbol, first in (("AAAUSDT", 0), ("BBBUSDT", 100)):
        lines = [header] + [f"{k * 3_600_000},10,11,9,10.5,100,,,,,," for k in range(first, 700)]
        (klines / f"{symbol}-1h.csv").write_text("\n".join(lines))
    (klines / "AAAUSDT-5m.csv").write_text(header + "\n0,99,99,99,99,1,,,,,,")  # another interval: ignored
    source = ReplaySource.from_directory(tmp_path, "1h")
    m = Market(source, interval="1h", start_ms=1_767_225_600_000, history_bars=500)
    row = m.kline_rows("AAAUSDT", "1h", start_ms=None, end_ms=None, limit=2)[0]
    assert row[1:6] == ["10.0", "11.0", "9.0", "10.5", "100"]
    assert float(row[7]) == 100 * 10.125  # quote volume from the bar's mean price
    assert m.kline_rows("BBBUSDT", "1h", start_ms=None, end_ms=None, limit=1)[0][4] == "10.5"
