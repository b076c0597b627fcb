"""Market data tasks: exchange rules, 24h tickers, closed bars kept in PostgreSQL, and the Elite/Overlay pools.

Bars are fetched incrementally: for each symbol only the closed bars after the newest one stored (never the
forming bar), so in steady state a symbol costs at most one small klines request per cycle, and none when it
is already up to date. Pools are rebuilt when their refresh period has passed (Elite 24 h, Overlay 1 h) and
otherwise reused from PostgreSQL; a build that fails falls back to the last good pool and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prefect import task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from ats.domain import Bars, SymbolRules, interval_ms
from ats.exchange.base import Ticker24h
from ats.exchange.errors import ExchangeError
from ats.factors import last_closed_open_time
from ats.universe import (
    PoolResult,
    Universe,
    UniverseConfig,
    build_elite,
    build_overlay,
    combine,
    elite_candidates,
    normalise_symbols,
    overlay_candidates,
    unknown_symbols_reason,
)
from db import market
from tasks.runtime import EXCHANGE_RETRY_DELAYS_S, RunFailed, Runtime, retry_when_transient, run_logger

HISTORY_BARS = 480  # closed bars kept ready per symbol: the factor windows reach ~170 bars back, plus EMA warm-up
KEEP_BARS = 2_000  # bars older than this many intervals are pruned from the database
CONTEXT_SYMBOLS = ("BTCUSDT", "ETHUSDT")  # the market context of the independence factor, always kept fresh
FETCH_CONCURRENCY = 8


# ---------------------------------------------------------------------------------------------- pure planning


def fetch_window(
    latest_open_ms: int | None, last_closed_open_ms: int, step_ms: int, history: int
) -> tuple[int, int] | None:
    """(start_ms, count) of the closed bars a symbol is missing, or None when it is up to date.

    Without stored bars (or with a gap longer than the history) the whole history window is fetched again.
    """
    oldest_wanted = last_closed_open_ms - (history - 1) * step_ms
    if latest_open_ms is None or latest_open_ms < oldest_wanted:
        return oldest_wanted, history
    if latest_open_ms >= last_closed_open_ms:
        return None
    return latest_open_ms + step_ms, (last_closed_open_ms - latest_open_ms) // step_ms


@dataclass(frozen=True, slots=True)
class PoolsDue:
    """Which pools this run rebuilds."""

    elite: bool
    overlay: bool


def pool_config(rt: Runtime) -> UniverseConfig:
    """The pool rules for the configured bar interval (scaled below an hour, see UniverseConfig.for_interval)."""
    return rt.settings.universe.for_interval(rt.settings.bar_interval)


def pools_due(
    elite: PoolResult | None, overlay: PoolResult | None, now_ms: int, config: UniverseConfig, interval: str
) -> PoolsDue:
    """A pool is rebuilt when there is none yet, it fell back, or its refresh period has (about) passed.

    "About": cycles run once per bar a little after its close, so a pool built one period ago to within half a
    bar is due (an hourly Overlay built at 10:01:05 is rebuilt at 11:01:02, not an hour later).
    """
    grace = interval_ms(interval) // 2

    def due(previous: PoolResult | None) -> bool:
        return previous is None or previous.is_due(now_ms + grace, config)

    return PoolsDue(elite=due(elite), overlay=due(overlay))


def symbols_for_pools(
    rules: Mapping[str, SymbolRules],
    tickers: Sequence[Ticker24h],
    now_ms: int,
    config: UniverseConfig,
    *,
    elite: PoolResult | None,
    due: PoolsDue,
) -> list[str]:
    """The symbols whose bars this run needs: Overlay candidates, Elite candidates (when rebuilding the Elite)
    or the current Elite, and BTC/ETH for the market context."""
    wanted = overlay_candidates(rules, tickers, now_ms=now_ms, config=config)
    if due.elite or elite is None:
        wanted += elite_candidates(rules, tickers, now_ms=now_ms, config=config)
    else:
        wanted += list(elite.symbols)
    wanted += [s for s in CONTEXT_SYMBOLS if s in rules]
    return list(dict.fromkeys(wanted))


# ---------------------------------------------------------------------------------------------- exchange info


async def fetch_rules(rt: Runtime) -> dict[str, SymbolRules]:
    """Every symbol's current rules and filters from exchangeInfo, also kept in the symbols table."""
    rules = await rt.exchange.exchange_info()
    with rt.database.session() as session:
        market.upsert_symbols(session, rules)
    return rules


@task(
    name="sync-time",
    cache_policy=NONE,
    retries=len(EXCHANGE_RETRY_DELAYS_S),
    retry_delay_seconds=EXCHANGE_RETRY_DELAYS_S,
    retry_condition_fn=retry_when_transient,
)
async def sync_time(rt: Runtime) -> int:
    """Measure the exchange's clock (bars close by it); returns the server time in ms."""
    await rt.exchange.sync_time()
    return rt.now_ms()


@task(
    name="sync-symbols",
    cache_policy=NONE,
    retries=len(EXCHANGE_RETRY_DELAYS_S),
    retry_delay_seconds=EXCHANGE_RETRY_DELAYS_S,
    retry_condition_fn=retry_when_transient,
)
async def sync_symbols(rt: Runtime) -> dict[str, SymbolRules]:
    """exchangeInfo -> the symbols table (rules and filters of every symbol)."""
    rules = await fetch_rules(rt)
    tradable = sum(1 for r in rules.values() if r.is_tradable_perpetual)
    run_logger().info(f"exchange info: {len(rules)} symbols, {tradable} trading USDT perpetuals")
    return rules


@task(
    name="fetch-tickers",
    cache_policy=NONE,
    retries=len(EXCHANGE_RETRY_DELAYS_S),
    retry_delay_seconds=EXCHANGE_RETRY_DELAYS_S,
    retry_condition_fn=retry_when_transient,
)
async def fetch_tickers(rt: Runtime) -> list[Ticker24h]:
    """24h tickers of every symbol (one request): quote volume and trade count rank the pools."""
    tickers = await rt.exchange.tickers_24h()
    run_logger().info(f"24h tickers: {len(tickers)}")
    return tickers


async def requested_symbols(rt: Runtime, symbols: Sequence[str]) -> list[str]:
    """The symbols a run was given, normalised and checked against exchangeInfo before the run does anything:
    one that is not a trading USDT perpetual fails it at once, every such one named (RunFailed)."""
    wanted = normalise_symbols(symbols)
    if not wanted:
        raise RunFailed("no symbol given")
    reason = unknown_symbols_reason(wanted, await sync_symbols(rt))
    if reason:
        raise RunFailed(reason)
    return wanted


# ---------------------------------------------------------------------------------------------- bars


@dataclass(frozen=True, slots=True)
class BarRefresh:
    """What one refresh did: requests sent, bars stored, and the symbols it could not update (with why)."""

    symbols: int
    requests: int
    stored: int
    up_to_date: int
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        text = (
            f"bars: {self.symbols} symbols, {self.up_to_date} already up to date, {self.requests} requests, "
            f"{self.stored} bars stored"
        )
        if self.failed:
            text += f", {len(self.failed)} failed ({', '.join(sorted(self.failed))})"
        return text


@task(
    name="refresh-bars",
    cache_policy=NONE,
    retries=len(EXCHANGE_RETRY_DELAYS_S),
    retry_delay_seconds=EXCHANGE_RETRY_DELAYS_S,
    retry_condition_fn=retry_when_transient,
)
async def refresh_bars(rt: Runtime, symbols: Sequence[str], now_ms: int) -> BarRefresh:
    """Fetch each symbol's missing closed bars (one request per symbol at most in steady state) and store them.

    A symbol whose request fails (unknown to the exchange, a bad answer) is skipped and reported; when every
    request fails the exchange is down and the error is raised, so the run fails with that reason instead of
    scoring stale bars.
    """
    interval = rt.settings.bar_interval
    step = interval_ms(interval)
    last_closed = last_closed_open_time(now_ms, interval)
    with rt.database.session() as session:
        latest = market.latest_bar_times(session, interval, symbols)
    plans = {s: w for s in symbols if (w := fetch_window(latest.get(s), last_closed, step, HISTORY_BARS))}
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)
    failures: dict[str, str] = {}
    fetched: list[Bars] = []
    first_error: Exception | None = None

    async def fetch(symbol: str, start_ms: int, count: int) -> None:
        nonlocal first_error
        async with gate:
            try:
                bars = await rt.exchange.klines(symbol, interval, start_ms=start_ms, end_ms=last_closed, limit=count)
            except ExchangeError as exc:  # one symbol's bars missing is reported; all of them failing is raised
                failures[symbol] = str(exc)
                first_error = first_error or exc
                return
        fetched.append(bars)

    await asyncio.gather(*(fetch(s, start, count) for s, (start, count) in plans.items()))
    if plans and first_error is not None and len(failures) == len(plans):
        raise first_error
    with rt.database.session() as session:
        stored = market.store_bars(session, fetched)
        market.prune_bars(session, interval, before_ms=last_closed - KEEP_BARS * step)
    result = BarRefresh(len(symbols), len(plans), stored, len(symbols) - len(plans), failures)
    run_logger().info(result.summary())
    return result


def load_recent_bars(rt: Runtime, symbols: Iterable[str], now_ms: int, bars: int = HISTORY_BARS) -> dict[str, Bars]:
    """The last `bars` closed bars of each symbol from the database."""
    interval = rt.settings.bar_interval
    since = last_closed_open_time(now_ms, interval) - (bars - 1) * interval_ms(interval)
    with rt.database.session() as session:
        return market.load_bars(session, interval, list(symbols), since_ms=since)


def current_universe(rt: Runtime) -> Universe | None:
    """Overlay then Elite from the newest stored pools (None before the first build)."""
    interval = rt.settings.bar_interval
    with rt.database.session() as session:
        elite = market.latest_pool(session, "elite", interval)
        overlay = market.latest_pool(session, "overlay", interval)
    if elite is None and overlay is None:
        return None
    return combine(
        elite or PoolResult("elite", (), 0, "no Elite pool built yet"),
        overlay or PoolResult("overlay", (), 0, "no Overlay pool built yet"),
    )


# ---------------------------------------------------------------------------------------------- pools


@dataclass(frozen=True, slots=True)
class PoolsOutcome:
    """The universe to scan and how each pool came about, for the trading cycle and the artifact."""

    symbols: list[str]
    elite: PoolResult
    overlay: PoolResult
    elite_rebuilt: bool
    overlay_rebuilt: bool
    bars: BarRefresh

    @property
    def fell_back(self) -> bool:
        return self.elite.fell_back or self.overlay.fell_back


@dataclass(frozen=True, slots=True)
class PoolInputs:
    """The stored pools a build starts from."""

    elite: PoolResult | None  # newest (perhaps a fallback): decides whether a rebuild is due
    overlay: PoolResult | None
    good_elite: PoolResult | None  # newest that did not fall back: what a failed build falls back to
    good_overlay: PoolResult | None


def stored_pools(rt: Runtime) -> PoolInputs:
    interval = rt.settings.bar_interval
    with rt.database.session() as session:
        return PoolInputs(
            elite=market.latest_pool(session, "elite", interval),
            overlay=market.latest_pool(session, "overlay", interval),
            good_elite=market.latest_pool(session, "elite", interval, good_only=True),
            good_overlay=market.latest_pool(session, "overlay", interval, good_only=True),
        )


@task(name="select-pools", cache_policy=NONE)
async def select_pools(
    rt: Runtime,
    rules: Mapping[str, SymbolRules],
    tickers: Sequence[Ticker24h],
    stored: PoolInputs,
    due: PoolsDue,
    bars: BarRefresh,
    now_ms: int,
) -> PoolsOutcome:
    """Rebuild the pools that are due from tickers and stored bars, keep the others, store what was built."""
    config = pool_config(rt)
    interval = rt.settings.bar_interval
    wanted: list[str] = []
    if due.elite:
        wanted += elite_candidates(rules, tickers, now_ms=now_ms, config=config)
    if due.overlay:
        wanted += overlay_candidates(rules, tickers, now_ms=now_ms, config=config)
    history = load_recent_bars(rt, dict.fromkeys(wanted), now_ms)
    elite = stored.elite
    if due.elite or elite is None:
        elite = build_elite(rules, tickers, history, now_ms=now_ms, config=config, previous=stored.good_elite)
    overlay = stored.overlay
    if due.overlay or overlay is None:
        overlay = build_overlay(rules, tickers, history, now_ms=now_ms, config=config, previous=stored.good_overlay)
    run_id = flow_run.id
    with rt.database.session() as session:
        for pool, rebuilt, hours in (
            (elite, due.elite, config.elite_refresh_hours),
            (overlay, due.overlay, config.overlay_refresh_hours),
        ):
            if rebuilt:
                market.save_pool(session, pool, interval=interval, refresh_hours=hours, flow_run_id=run_id)
    logger = run_logger()
    for pool, rebuilt in ((elite, due.elite), (overlay, due.overlay)):
        how = "FELL BACK" if pool.fell_back else ("rebuilt" if rebuilt else "reused")
        logger.info(f"{pool.kind} pool {how}: {len(pool.symbols)} symbols; {pool.reason}")
    universe = combine(elite, overlay)
    return PoolsOutcome(list(universe.symbols), elite, overlay, due.elite, due.overlay, bars)
