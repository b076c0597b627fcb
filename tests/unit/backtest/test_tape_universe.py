"""The tape's universe is what the pool rules give from each symbol's recent bars at every hour, though the engine
measures each symbol once for the whole run (ats.universe.measure_series) instead of once per symbol and hour."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import numpy as np

from ats.backtest.engine import _universe_window, record_tape
from ats.backtest.history import History, TickerSeries
from ats.config import Settings
from ats.domain import BAR_FIELDS, Bars
from ats.universe import PoolResult, UniverseConfig, build_elite, build_overlay, combine, measure
from tests.unit.backtest.series import T0, walk

H = 3_600_000
N = 400


def changed(b: Bars, keep: np.ndarray | None = None, shift: int = 0, **arrays: np.ndarray) -> Bars:
    columns = {name: arrays.get(name, getattr(b, name)) for name in BAR_FIELDS}
    rows = np.ones(len(b), dtype=bool) if keep is None else keep
    return Bars(b.symbol, b.interval, b.open_time[rows] + shift, *(columns[name][rows] for name in BAR_FIELDS))


def rough_market() -> dict[str, Bars]:
    """OHLCV history as imported, with what the pools react to: a hole in the volumes (windows shortened), missing
    hours, a listing during the run, a mover that also jumps too far (anti-chase) and spikes, a steady climb
    (its close pinned at the high)."""
    calm = walk("AAAUSDT", N, 1, 2.0)
    hole = walk("BBBUSDT", N, 2, 0.5)
    volume = hole.volume.copy()
    volume[200:310] = np.nan  # longer than the bars the pools read (_universe_window) hold beyond 72 h
    gaps = walk("CCCUSDT", N, 3, 40.0)
    present = np.ones(N, dtype=bool)
    present[280:310] = False
    listing = walk("DDDUSDT", N - 250, 4, 7.0)
    mover = walk("EEEUSDT", N, 5, 3.0)
    jumps = np.ones(N)
    jumps[[230, 270, 271, 330]] = [1.06, 1.25, 1 / 1.25, 1.08]
    close = mover.close * np.cumprod(jumps)
    surge = np.where(np.arange(N) % 37 == 0, 6.0, 1.0)
    pinned = walk("FFFUSDT", N, 6, 90.0)
    rising = np.arange(N) >= 250
    top = np.where(rising, pinned.close[249] * 1.001 ** (np.arange(N) - 249), pinned.close)  # a new high every hour
    top_open = np.concatenate([[pinned.open[0]], top[:-1]])
    return {
        "AAAUSDT": calm,
        "BBBUSDT": changed(hole, volume=volume),
        "CCCUSDT": changed(gaps, keep=present),
        "DDDUSDT": changed(listing, shift=250 * H),
        "EEEUSDT": changed(
            mover,
            open=np.concatenate([[mover.open[0]], close[:-1]]),
            high=np.maximum(mover.high * jumps.cumprod(), close),
            low=np.minimum(mover.low * jumps.cumprod(), close),
            close=close,
            volume=mover.volume * surge,
        ),
        "FFFUSDT": changed(
            pinned,
            open=top_open,
            high=np.where(rising, np.maximum(top_open, top), pinned.high),
            low=np.where(rising, np.minimum(top_open, top) * 0.998, pinned.low),
            close=top,
        ),
    }


def pools_from_bars(
    history: History, settings: Settings, start: int, end: int
) -> dict[int, tuple[PoolResult, PoolResult]]:
    """The pools at each hour as the live code builds them: build_elite (when due) and build_overlay measuring the
    last bars of every symbol that has a bar this hour."""
    window = _universe_window(settings)
    config = settings.universe
    elite: PoolResult | None = None
    overlay: PoolResult | None = None
    pools = {}
    for bar_open in range(start, end, H):
        as_of = bar_open + H
        recent, tickers = {}, []
        for symbol, series in history.bars.items():
            stop = int(np.searchsorted(series.open_time, bar_open)) + 1
            if stop > len(series) or int(series.open_time[stop - 1]) != bar_open:
                continue
            recent[symbol] = series.slice(max(stop - window, 0), stop)
            ticker = TickerSeries(series).at(stop)
            if ticker is not None:
                tickers.append(ticker)
        if not recent:
            continue
        rules = {s: history.rules_of(s) for s in history.bars}
        if elite is None or elite.is_due(as_of, config):
            elite = build_elite(rules, tickers, recent, now_ms=as_of, config=config, previous=elite)
        overlay = build_overlay(rules, tickers, recent, now_ms=as_of, config=config, previous=overlay)
        pools[bar_open] = (elite, overlay)
    return pools


def test_the_tape_universe_is_the_pools_built_from_bars_at_every_hour() -> None:
    history = History("1h", rough_market())
    config = UniverseConfig(elite_min_quote_volume=1e6, overlay_min_quote_volume=1e6, elite_size=3, overlay_size=2)
    settings = Settings(universe=config)
    start, end = T0 + 200 * H, T0 + N * H
    tape = record_tape(history, settings, start, end, floor=0.0)
    pools = pools_from_bars(history, settings, start, end)
    assert {h.bar_open_ms: h.universe for h in tape.hours} == {
        hour: combine(elite, overlay).symbols for hour, (elite, overlay) in pools.items()
    }
    assert tape.pool_notes == tuple(sorted({note for elite, _ in pools.values() for note in elite.notes}))
    # the comparison covers what the pools react to
    assert len({h.universe for h in tape.hours}) > 5
    overlays = [overlay for _, overlay in pools.values()]
    assert any("new listings" in o.reason and "DDDUSDT" in o.symbols for o in overlays)
    assert any(o.excluded.get("EEEUSDT", "").startswith("already moved") for o in overlays)
    reasons = [why for elite, _ in pools.values() for why in elite.excluded.values()]
    assert any(why.startswith("anomaly") for why in reasons)
    assert any(why.startswith("price pinned") for why in reasons)
    hole = history.bars["BBBUSDT"].slice(315 - _universe_window(settings), 315)
    stats = measure(hole, T0 + 315 * H, config)
    assert stats is not None
    assert "collapse base 72h (60 of 72 bars)" in stats.caveats  # the hole in the volumes shortens the windows


def test_the_ticker_series_is_the_day_of_bars_it_ends() -> None:
    series = walk("AAAUSDT", 200, 3, 2.0)
    volume = series.volume.copy()
    volume[50:60] = np.nan  # unknown volumes count as nothing, as in a ticker summed from known bars
    series = dataclasses.replace(series, volume=volume)
    tickers = TickerSeries(series)
    assert tickers.at(23) is None
    for end in (24, 55, 61, 200):
        day = series.slice(end - 24, end)
        ticker = tickers.at(end)
        assert ticker is not None
        typical = day.volume * (day.high + day.low + day.close) / 3.0
        assert ticker.quote_volume == Decimal(repr(float(np.nansum(typical))))
        assert ticker.volume == Decimal(repr(float(np.nansum(day.volume))))
        assert (ticker.high, ticker.low) == (Decimal(repr(float(day.high.max()))), Decimal(repr(float(day.low.min()))))
        change = round((float(day.close[-1]) / float(day.open[0]) - 1.0) * 100.0, 6)
        assert ticker.price_change_percent == Decimal(repr(change))
        assert ticker.trade_count is None
        assert ticker.close_time_ms == int(day.open_time[-1]) + 3_600_000 - 1
