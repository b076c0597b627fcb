"""Elite and Overlay pools: ranking, every exclusion rule with its reason, windows in hours, fallback."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ats.domain import BAR_FIELDS, Bars, SymbolRules, interval_ms
from ats.exchange.base import Ticker24h
from ats.universe import (
    HOUR_MS,
    PoolResult,
    UniverseConfig,
    bars_for,
    build_elite,
    build_overlay,
    combine,
    elite_candidates,
    fall_back,
    measure,
    measure_series,
    normalise_symbols,
    overlay_candidates,
    unknown_symbols_reason,
)
from tests.unit.factors.synthetic import START_MS, make_bars

N_BARS = 100  # 1h bars: covers every 72h window
NOW = START_MS + N_BARS * HOUR_MS  # the moment the last bar closes
CFG = UniverseConfig(elite_size=3, overlay_size=3)


def rules(
    symbol: str,
    *,
    status: str = "TRADING",
    contract: str = "PERPETUAL",
    quote: str = "USDT",
    tick: str = "0.0001",
    onboard_ms: int = START_MS - 400 * HOUR_MS,
) -> SymbolRules:
    zero = Decimal(0)
    return SymbolRules(
        symbol, symbol.removesuffix(quote), quote, status, contract, Decimal(tick), zero, Decimal(10**6),
        Decimal("0.001"), zero, Decimal(10**6), Decimal("0.001"), zero, Decimal(10**6), Decimal(5),
        onboard_date_ms=onboard_ms,
    )  # fmt: skip


def ticker(symbol: str, quote_volume: float = 50e6, trades: int = 100_000, change_pct: float = 1.0) -> Ticker24h:
    return Ticker24h(
        symbol, Decimal(100), Decimal(str(change_pct)), Decimal(101), Decimal(99), Decimal(1),
        Decimal(str(quote_volume)), trades, NOW - 24 * HOUR_MS, NOW,
    )  # fmt: skip


def calm(symbol: str, seed: int) -> Bars:
    return make_bars(symbol, N_BARS, seed=seed, volatility=0.004)


def edit(b: Bars, **arrays: np.ndarray) -> Bars:
    fields = {name: getattr(b, name) for name in ("open", "high", "low", "close", "volume", "quote_volume")}
    fields |= {n: getattr(b, n) for n in ("trades", "taker_buy_volume", "taker_buy_quote_volume")}
    fields |= arrays
    return Bars(b.symbol, b.interval, b.open_time, **fields)


def spiked(b: Bars) -> Bars:
    close = b.close.copy()
    close[60:] *= 1.08  # one 8 % bar among 0.4 % ones: far beyond 12x the median move
    return edit(b, close=close, high=np.maximum(b.high, close), open=np.minimum(b.open, close))


def jumped(b: Bars) -> Bars:
    """A volatile symbol (5 % bars) that rose about 30 % in one hour: not anomalous for it, but extreme."""
    wild = make_bars(b.symbol, N_BARS, seed=99, volatility=0.05)
    factor = np.where(np.arange(N_BARS) >= 95, 1.3, 1.0)
    return edit(
        wild, open=wild.open * factor, high=wild.high * factor, low=wild.low * factor, close=wild.close * factor
    )


def collapsed(b: Bars) -> Bars:
    quote = b.quote_volume.copy()
    quote[-6:] *= 0.05
    return edit(b, quote_volume=quote, taker_buy_quote_volume=quote / 2)


def pinned(b: Bars) -> Bars:
    close = b.close.copy()
    close[-4:] = close[:-4].max() * 1.001
    return edit(b, close=close, high=np.maximum(b.high, close), low=np.minimum(b.low, close))


def dead(b: Bars) -> Bars:
    quote = np.where(np.arange(N_BARS) % 5 < 3, 0.0, b.quote_volume)  # 60 % of hours without a trade
    return edit(b, quote_volume=quote, taker_buy_quote_volume=quote / 2)


def market() -> tuple[dict[str, SymbolRules], list[Ticker24h], dict[str, Bars]]:
    specs: dict[str, tuple[dict[str, Any], dict[str, Any], Callable[[Bars], Bars] | None]] = {
        # symbol: (ticker kwargs, rule kwargs, bars transform)
        "AUSDT": ({"quote_volume": 900e6, "trades": 900_000}, {}, None),
        "BUSDT": ({"quote_volume": 500e6, "trades": 800_000}, {}, None),
        "CUSDT": ({"quote_volume": 400e6, "trades": 100_000}, {}, None),
        "DUSDT": ({"quote_volume": 300e6, "trades": 50_000}, {}, None),  # ranks 4th: beyond elite_size
        "HALTUSDT": ({}, {"status": "SETTLING"}, None),
        "QTRUSDT": ({}, {"contract": "CURRENT_QUARTER"}, None),
        "BTCUSDC": ({}, {"quote": "USDC"}, None),
        "THINUSDT": ({"quote_volume": 1e6}, {}, None),
        "FEWUSDT": ({"trades": 500}, {}, None),
        "NEWUSDT": ({}, {"onboard_ms": NOW - 10 * HOUR_MS}, None),
        "SPIKEUSDT": ({}, {}, spiked),
        "DEADUSDT": ({}, {}, dead),
        "COARSEUSDT": ({}, {"tick": "0.5"}, None),
        "JUMPUSDT": ({}, {}, jumped),
        "FADEUSDT": ({}, {}, collapsed),
        "PINUSDT": ({}, {}, pinned),
        "NOBARSUSDT": ({}, {}, None),
    }
    all_rules, tickers, bars = {}, [], {}
    for i, (symbol, (t_kwargs, r_kwargs, transform)) in enumerate(specs.items()):
        all_rules[symbol] = rules(symbol, **r_kwargs)
        tickers.append(ticker(symbol, **t_kwargs))
        if symbol != "NOBARSUSDT":
            b = calm(symbol, seed=i)
            bars[symbol] = transform(b) if transform else b
    return all_rules, tickers, bars


def test_elite_ranks_and_explains_every_exclusion() -> None:
    all_rules, tickers, bars = market()
    pool = build_elite(all_rules, tickers, bars, now_ms=NOW, config=CFG)
    assert pool.symbols == ("AUSDT", "BUSDT", "CUSDT")
    assert not pool.fell_back
    assert pool.scores["AUSDT"] > pool.scores["BUSDT"] > pool.scores["CUSDT"]
    why = pool.excluded
    assert "ranked 4" in why["DUSDT"]
    assert "SETTLING" in why["HALTUSDT"]
    assert "CURRENT_QUARTER" in why["QTRUSDT"]
    assert "USDC" in why["BTCUSDC"]
    assert why["THINUSDT"] == "24h quote volume 1.0M < 20.0M USDT"
    assert "500 trades" in why["FEWUSDT"]
    assert "listed 10h ago" in why["NEWUSDT"]
    assert why["SPIKEUSDT"].startswith("anomaly")
    assert why["DEADUSDT"] == "quality 42 < 50 (42% of bars traded, 100% of bars present)"
    assert why["COARSEUSDT"].startswith("quality 0 < 50")
    assert why["COARSEUSDT"].endswith("tick size costs 100%)")  # a 0.5 tick on a price of 100
    assert why["JUMPUSDT"].startswith("extreme 1h move")
    assert why["FADEUSDT"].startswith("volume collapse")
    assert why["PINUSDT"] == "price pinned at its 72h high for 3h"
    assert why["NOBARSUSDT"] == "no recent closed bars to check"
    assert set(why) | set(pool.symbols) == {t.symbol for t in tickers}
    markdown = pool.to_markdown()
    assert "| 1 | AUSDT |" in markdown
    assert "PINUSDT" in markdown


def test_elite_candidates_are_the_ticker_screen() -> None:
    all_rules, tickers, _ = market()
    candidates = elite_candidates(all_rules, tickers, now_ms=NOW, config=CFG)
    assert candidates[:4] == ["AUSDT", "BUSDT", "CUSDT", "DUSDT"]
    assert not {"HALTUSDT", "THINUSDT", "FEWUSDT", "NEWUSDT", "BTCUSDC"} & set(candidates)


def test_windows_are_hours_converted_to_bars() -> None:
    assert bars_for(72, "1h") == 72
    assert bars_for(72, "1m") == 4320
    assert bars_for(1, "4h") == 1
    minute = make_bars("MUSDT", 300, seed=3, interval="1m", volatility=0.0005)
    stats = measure(minute, int(minute.open_time[-1]) + 60_000, CFG)
    assert stats is not None
    assert stats.move_1h == pytest.approx(minute.close[-1] / minute.close[-61] - 1)
    assert any("anomaly window 72h (300 of 4320 bars)" in s for s in stats.caveats)
    rules_m = {"MUSDT": rules("MUSDT")}
    pool = build_elite(
        rules_m, [ticker("MUSDT")], {"MUSDT": minute}, now_ms=int(minute.open_time[-1]) + 60_000, config=CFG
    )
    assert pool.symbols == ("MUSDT",)
    assert "used what exists" in pool.notes[0]
    four = make_bars("FUSDT", 40, seed=4, interval="4h")
    coarse = measure(four, int(four.open_time[-1]) + 4 * HOUR_MS, CFG)
    assert coarse is not None
    assert "1h windows measured over one 4h bar" in coarse.caveats
    assert coarse.move_1h == pytest.approx(four.close[-1] / four.close[-2] - 1)


def test_degenerate_bars_are_measured_without_error() -> None:
    flat = make_bars("FLATUSDT", N_BARS, seed=1)
    ones = np.ones(N_BARS)
    frozen = edit(
        flat, open=ones, high=ones, low=ones, close=ones, quote_volume=0 * ones, taker_buy_quote_volume=0 * ones
    )
    stats = measure(frozen, NOW, CFG)
    assert stats is not None
    assert stats.quality == 0.0
    assert stats.anomaly == 0.0
    holed = edit(flat, close=np.where(np.arange(N_BARS) % 7 == 0, np.nan, flat.close))
    assert measure(holed, NOW, CFG) is not None
    pool = build_elite({"FLATUSDT": rules("FLATUSDT")}, [ticker("FLATUSDT")], {"FLATUSDT": frozen}, now_ms=NOW)
    assert pool.excluded["FLATUSDT"].startswith("quality 0")


def test_forming_bar_is_not_measured() -> None:
    b = calm("XUSDT", seed=1)
    assert measure(b, NOW - 1, CFG) == measure(b.slice(0, N_BARS - 1), NOW - 1, CFG)
    assert measure(b.slice(0, 1), NOW, CFG) is None


def test_elite_falls_back_and_says_so() -> None:
    all_rules, tickers, bars = market()
    good = build_elite(all_rules, tickers, bars, now_ms=NOW, config=CFG)
    later = NOW + 24 * HOUR_MS
    failed = build_elite(all_rules, [], bars, now_ms=later, config=CFG, previous=good)
    assert failed.fell_back
    assert failed.symbols == good.symbols
    assert "no exchange info or 24h tickers" in failed.reason
    assert "24.0 h ago" in failed.reason
    nothing = build_elite(all_rules, tickers, {}, now_ms=later, config=CFG, previous=good)
    assert nothing.fell_back
    assert nothing.symbols == good.symbols
    assert "no symbol passed" in nothing.reason
    assert nothing.excluded["AUSDT"] == "no recent closed bars to check"  # why this build found nothing
    first = build_elite(all_rules, tickers, {}, now_ms=NOW, config=CFG)
    assert first.symbols == ()
    assert not first.fell_back
    assert "no previous elite pool" in first.reason
    assert fall_back("elite", failed, "fetch failed", later).symbols == good.symbols


def overlay_market() -> tuple[dict[str, SymbolRules], list[Ticker24h], dict[str, Bars]]:
    all_rules: dict[str, SymbolRules] = {}
    tickers: list[Ticker24h] = []
    bars: dict[str, Bars] = {}

    def add(symbol: str, b: Bars | None, *, onboard_ms: int = START_MS - 400 * HOUR_MS, **t: float) -> None:
        all_rules[symbol] = rules(symbol, onboard_ms=onboard_ms)
        tickers.append(ticker(symbol, **t))  # type: ignore[arg-type]
        if b is not None:
            bars[symbol] = b

    base = calm("XUSDT", seed=5)
    up = base.close.copy()
    up[-1] = up[-2] * 1.05
    add("RUNUSDT", edit(base, close=up, high=np.maximum(base.high, up)))  # +5 % in the last hour
    loud = base.quote_volume.copy()
    loud[-1] *= 10
    add("LOUDUSDT", edit(base, quote_volume=loud, taker_buy_quote_volume=loud / 2))  # volume x10
    last = np.arange(N_BARS) == N_BARS - 1
    bought = np.where(last, base.quote_volume * 0.9, base.taker_buy_quote_volume)
    add("BUYUSDT", edit(base, taker_buy_quote_volume=bought))  # 90 % taker buys in the last hour
    far = base.close.copy()
    far[-1] = far[-2] * 1.2
    add("CHASEUSDT", edit(base, close=far, high=np.maximum(base.high, far)))  # +20 % in 1h: too late
    add("DAYUSDT", calm("DAYUSDT", seed=6), change_pct=45.0)  # new, but +45 % in 24h: too late
    add("QUIETUSDT", calm("QUIETUSDT", seed=7))
    add("FRESHUSDT", None, onboard_ms=NOW - 5 * HOUR_MS)
    add("FRESHERUSDT", None, onboard_ms=NOW - 2 * HOUR_MS)
    add("SMALLUSDT", calm("SMALLUSDT", seed=8), quote_volume=1e6)
    all_rules["DAYUSDT"] = rules("DAYUSDT", onboard_ms=NOW - 20 * HOUR_MS)
    return all_rules, tickers, bars


def test_overlay_new_listings_then_movers_with_anti_chase() -> None:
    all_rules, tickers, bars = overlay_market()
    pool = build_overlay(all_rules, tickers, bars, now_ms=NOW, config=UniverseConfig(overlay_size=10))
    assert pool.symbols[:2] == ("FRESHERUSDT", "FRESHUSDT")  # newest listing first, no bars needed
    # strongest reading first: flow 0.8 / 0.2 = 4, volume 10 / (33 / 24) / 3 = 2.4, move 5 % / 3 % = 1.7
    assert pool.symbols[2:] == ("BUYUSDT", "LOUDUSDT", "RUNUSDT")
    why = pool.excluded
    assert why["CHASEUSDT"].startswith("already moved +20.0% in 1h")
    assert why["DAYUSDT"].startswith("already moved +45.0% in 24h")
    assert why["QUIETUSDT"].startswith("not new and not moving")
    assert why["SMALLUSDT"].startswith("24h quote volume")
    assert "2 new listings and 3 movers" in pool.reason
    assert overlay_candidates(all_rules, tickers, now_ms=NOW, config=CFG)[-1] != "SMALLUSDT"


def test_overlay_size_and_empty_hour() -> None:
    all_rules, tickers, bars = overlay_market()
    capped = build_overlay(all_rules, tickers, bars, now_ms=NOW, config=UniverseConfig(overlay_size=3))
    assert len(capped.symbols) == 3
    assert sum("ranked" in r for r in capped.excluded.values()) == 2
    quiet = build_overlay(
        {"QUIETUSDT": rules("QUIETUSDT")}, [ticker("QUIETUSDT")], {"QUIETUSDT": calm("QUIETUSDT", 7)}, now_ms=NOW
    )
    assert quiet.symbols == ()
    assert not quiet.fell_back
    assert quiet.reason == "no new listings or movers this hour"
    previous = build_overlay(all_rules, tickers, bars, now_ms=NOW)
    failed = build_overlay(all_rules, [], bars, now_ms=NOW + HOUR_MS, previous=previous)
    assert failed.fell_back
    assert failed.symbols == previous.symbols


def test_universe_is_overlay_first_without_duplicates() -> None:
    elite = PoolResult("elite", ("AUSDT", "BUSDT", "CUSDT"), NOW, "ok")
    overlay = PoolResult("overlay", ("NEWUSDT", "BUSDT"), NOW, "ok")
    universe = combine(elite, overlay)
    assert universe.symbols == ("NEWUSDT", "BUSDT", "AUSDT", "CUSDT")


def test_pool_result_round_trip_and_refresh() -> None:
    all_rules, tickers, bars = market()
    pool = build_elite(all_rules, tickers, bars, now_ms=NOW, config=CFG)
    assert PoolResult.from_dict(pool.to_dict()) == pool
    assert not pool.is_due(NOW + 23 * HOUR_MS, CFG)
    assert pool.is_due(NOW + 24 * HOUR_MS, CFG)
    overlay = PoolResult("overlay", (), NOW, "quiet")
    assert overlay.is_due(NOW + HOUR_MS, CFG)
    with pytest.raises(ValueError, match="kind"):
        PoolResult.from_dict({**pool.to_dict(), "kind": "other"})


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        UniverseConfig(pin_hours=0)
    with pytest.raises(ValueError, match="tick"):
        UniverseConfig(fine_tick_fraction=0.01)


def test_time_scaled_config_counts_bars_of_a_compressed_market() -> None:
    scaled = UniverseConfig().time_scaled(1 / 60)
    assert scaled.anomaly_window_hours == pytest.approx(72 / 60)
    assert scaled.elite_size == UniverseConfig().elite_size
    with pytest.raises(ValueError, match="positive"):
        UniverseConfig().time_scaled(0)


def test_symbols_given_by_a_person_are_normalised() -> None:
    assert normalise_symbols([" btcusdt", "SOLUSDT", "", "BTCUSDT ", "  "]) == ["BTCUSDT", "SOLUSDT"]


def test_every_symbol_that_is_not_a_trading_perpetual_is_named_with_similar_ones() -> None:
    """Hole 9 of issue 16: one unknown symbol failed the whole run halfway; it is named before the run starts."""
    known = {s: rules(s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "OPUSDT", "NEOUSDT", "PEPEUSDT", "XRPUSDT")} | {
        "LUNAUSDT": rules("LUNAUSDT", status="SETTLING"),
        "BTCUSDT_260626": rules("BTCUSDT_260626", contract="CURRENT_QUARTER"),
    }
    assert unknown_symbols_reason(["BTCUSDT", "SOLUSDT"], known) is None
    assert unknown_symbols_reason(["BTCUSDT", "NOPEUSDT"], known) == (
        "NOPEUSDT is not a trading USDT perpetual on this exchange; similar: OPUSDT, NEOUSDT, PEPEUSDT"
    )
    assert unknown_symbols_reason(["QQQQUSDT"], known) == "QQQQUSDT is not a trading USDT perpetual on this exchange"
    assert unknown_symbols_reason(["SOLUSTD", "LUNAUSDT", "BTCUSDT_260626"], known) == (
        "SOLUSTD, LUNAUSDT (SETTLING PERPETUAL USDT), BTCUSDT_260626 (TRADING CURRENT_QUARTER USDT) are not trading "
        "USDT perpetuals on this exchange; similar: SOLUSDT"
    )


def ohlcv_only(b: Bars) -> Bars:
    """The bars as imported history holds them: quote volume, trades and taker buys unknown; the base volume such
    that volume x typical price is the quote volume the bars had."""
    unknown = np.full(len(b), np.nan)
    volume = b.quote_volume / ((b.high + b.low + b.close) / 3)
    return edit(
        b, volume=volume, quote_volume=unknown, trades=unknown, taker_buy_volume=unknown, taker_buy_quote_volume=unknown
    )


def test_unknown_quote_volume_is_estimated_from_volume_and_price_and_marked_so() -> None:
    known = calm("AUSDT", seed=1)
    stats, exact = measure(ohlcv_only(known), NOW, CFG), measure(known, NOW, CFG)
    assert stats is not None
    assert exact is not None
    assert (stats.quote_estimated, exact.quote_estimated) == (True, False)
    assert stats.flow_imbalance is None  # the taker side is not estimated: unknown
    assert stats.volume_ratio == pytest.approx(exact.volume_ratio)
    assert stats.quality == exact.quality

    all_rules, tickers, bars = market()
    history = {s: ohlcv_only(b) for s, b in bars.items()}
    elite = build_elite(all_rules, tickers, history, now_ms=NOW, config=CFG)
    assert elite.symbols == build_elite(all_rules, tickers, bars, now_ms=NOW, config=CFG).symbols
    assert "quote volume estimated from volume x price for 3 selected symbols (AUSDT, BUSDT, CUSDT)" in elite.notes[-1]
    assert elite.excluded["FADEUSDT"].endswith("(quote volume estimated from volume x price)")
    assert "quote volume estimated" in elite.to_markdown()
    overlay = build_overlay(all_rules, tickers, history, now_ms=NOW, config=CFG)
    assert "flow imbalance unknown" in overlay.excluded["AUSDT"]
    assert overlay.excluded["AUSDT"].endswith("(quote volume estimated from volume x price)")


# ---------------------------------------------------------------------------------------------- the series


@st.composite
def rough_bars(draw: st.DrawFn) -> Bars:
    """A history with what real and imported bars hold: unknown volumes (quote, base or taker), missing hours, bad
    closes, spikes, flat stretches, a price pinned at its high, zero-volume hours."""
    n = draw(st.integers(0, 160))
    interval = draw(st.sampled_from(["1h", "1h", "15m", "4h", "1m"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def some(share: float) -> np.ndarray:
        return rng.random(n) < share * draw(st.sampled_from([0.0, 0.0, 0.05, 0.3]))

    step = interval_ms(interval)
    hours = START_MS + step * np.cumsum(np.where(some(1.0), rng.integers(2, 5, n), 1))
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, draw(st.sampled_from([0.0, 0.002, 0.02])), n)))
    close = np.where(some(1.0), close * rng.choice([0.7, 1.3], n), close)  # spikes
    if n > 5 and draw(st.booleans()):
        close[-rng.integers(1, 6) :] = close.max()  # pinned at the high
    high = close * (1 + rng.uniform(0, 0.01, n))
    low = close * (1 - rng.uniform(0, 0.01, n))
    volume = rng.uniform(1e3, 1e4, n)
    quote = np.where(some(1.0), 0.0, volume * close)
    taker = quote * rng.uniform(0.2, 0.8, n)
    return Bars(
        "XUSDT",
        interval,
        hours.astype(np.int64),
        close,
        np.where(some(0.5), np.nan, high),
        np.where(some(0.5), 0.0, low),
        np.where(some(0.5), np.nan, np.where(some(0.5), -1.0, close)),
        np.where(some(1.0), np.nan, volume),
        np.where(some(1.0), np.nan, quote),  # unknown quote volume: estimated from volume x price
        np.full(n, 10.0),
        volume / 2,
        np.where(some(1.0), np.nan, taker),
    )


def assert_series_is_measure(b: Bars, config: UniverseConfig, max_bars: int | None) -> None:
    series = measure_series(b, config, max_bars=max_bars)
    assert len(series) == len(b)
    step = interval_ms(b.interval)
    for i in range(len(b)):
        measured = b if max_bars is None else b.slice(max(i + 1 - max_bars, 0), i + 1)
        expected = measure(measured, int(b.open_time[i]) + step, config)
        assert repr(series.at(i)) == repr(expected), i  # repr: every float to its last bit, every text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    b=rough_bars(),
    scale=st.sampled_from([1.0, 1.0, 0.25, 1 / 60]),
    max_bars=st.none() | st.integers(1, 100),
)
def test_the_series_is_measure_at_every_bar_close(b: Bars, scale: float, max_bars: int | None) -> None:
    assert_series_is_measure(b, UniverseConfig().time_scaled(scale), max_bars)


@pytest.mark.parametrize("max_bars", [None, 75])
def test_the_series_is_measure_over_a_long_rough_history(max_bars: int | None) -> None:
    """Every window full and every branch taken: a spike (anomaly), a hole in the volumes longer than the windows,
    unknown quote volumes, missing hours, a collapse, a pinned close."""
    b = make_bars("XUSDT", 500, seed=11, volatility=0.004)
    close, quote, volume = b.close.copy(), b.quote_volume.copy(), b.volume.copy()
    close[200:] *= 1.08
    close[420:424] = close[:420].max() * 1.001
    quote[100:110] = np.nan
    volume[100:108] = np.nan  # eight bars without any volume: not usable
    quote[300:] *= np.where(np.arange(200) > 150, 0.05, 1.0)
    keep = np.ones(500, dtype=bool)
    keep[250:260] = False  # ten missing hours
    b = edit(b, close=close, high=np.maximum(b.high, close), quote_volume=quote, volume=volume)
    b = Bars(b.symbol, b.interval, b.open_time[keep], *(getattr(b, f)[keep] for f in BAR_FIELDS))
    series = measure_series(b, CFG, max_bars=max_bars)
    stats = [series.at(i) for i in range(len(b))]
    assert any(s is not None and s.anomaly >= CFG.max_anomaly for s in stats)
    assert any(s is not None and s.pinned == "high" for s in stats)
    assert any(s is not None and s.volume_ratio < CFG.collapse_ratio for s in stats)
    assert any(s is not None and "of bars present" in s.quality_detail and s.quality < 100 for s in stats)
    assert_series_is_measure(b, CFG, max_bars)


def test_the_series_refuses_bars_out_of_order() -> None:
    b = calm("XUSDT", seed=1)
    backwards = Bars(b.symbol, b.interval, b.open_time[::-1].copy(), *(getattr(b, f)[::-1] for f in BAR_FIELDS))
    with pytest.raises(ValueError, match="time order"):
        measure_series(backwards, CFG)


def test_pools_from_precomputed_stats_are_the_pools_from_bars() -> None:
    """The backtest hands the pools stats from measure_series; the pools are the ones the live path builds."""
    all_rules, tickers, bars = market()
    stats = {s: measure_series(b, CFG).at(-1) for s, b in bars.items()}
    assert build_elite(all_rules, tickers, {}, now_ms=NOW, config=CFG, stats=stats) == build_elite(
        all_rules, tickers, bars, now_ms=NOW, config=CFG
    )
    rules_o, tickers_o, bars_o = overlay_market()
    stats_o = {s: measure_series(b, CFG).at(-1) for s, b in bars_o.items()}
    assert build_overlay(rules_o, tickers_o, {}, now_ms=NOW, config=CFG, stats=stats_o) == build_overlay(
        rules_o, tickers_o, bars_o, now_ms=NOW, config=CFG
    )


def test_windows_count_bars_below_an_hour() -> None:
    """Below an hour a bar stands for an hour: every window, listing age and refresh period becomes bars."""
    config = UniverseConfig()
    assert config.for_interval("1h") == config
    assert config.for_interval("4h") == config
    fast = config.for_interval("1m")
    assert fast.move_hours * 60 == 1.0
    assert fast.new_listing_hours * 60 == config.new_listing_hours
    assert bars_for(fast.anomaly_window_hours, "1m") == bars_for(config.anomaly_window_hours, "1h") == 72
    assert fast.extreme_move == config.extreme_move
    assert fast.elite_size == config.elite_size
