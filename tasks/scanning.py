"""Scan tasks: one vectorised scoring pass over the universe with the extras the exchange can give, and the
scan's records (every factor of every symbol, the signals, their notifications).

The extras are fetched where they matter: the premium index for every symbol in one request, then open-interest
history and the order book for the strongest candidates of a first pass, after which everything is scored
again. A failed extra is left out (the factor engine reports the factor as unavailable), never guessed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from prefect import task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from ats.domain import Bars, Signal, interval_ms
from ats.exchange.errors import ExchangeError
from ats.factors import (
    FactorConfig,
    MarketContext,
    ScanResult,
    SymbolExtras,
    book_snapshot,
    open_interest_series,
    premium_snapshot,
    scan,
)
from ats.notify import signal_dedupe_key, signal_note, signal_plan
from db import market
from db.journal import enqueue_notification
from tasks.market import CONTEXT_SYMBOLS
from tasks.runtime import RunFailed, Runtime, run_logger

TOP_CANDIDATES = 12  # symbols whose order book and open-interest history are fetched for the final pass
DEPTH_LEVELS = 20
OI_PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")  # what openInterestHist accepts
MAX_OI_POINTS = 500
EXTRAS_CONCURRENCY = 6


def oi_period(interval: str) -> str:
    """The open-interest history period matching the bar interval (the finest one for shorter bars)."""
    return interval if interval in OI_PERIODS else "5m"


def oi_points(interval: str, config: FactorConfig) -> int:
    """Snapshots covering the OI factor's lookback plus its change window, at the period used."""
    bars = config.oi_lookback + config.oi_window + 2
    per_bar = max(interval_ms(interval) // interval_ms(oi_period(interval)), 1)
    return min(bars * per_bar, MAX_OI_POINTS)


def context_of(bars: Mapping[str, Bars]) -> MarketContext:
    return MarketContext(btc=bars.get(CONTEXT_SYMBOLS[0]), eth=bars.get(CONTEXT_SYMBOLS[1]))


def top_symbols(result: ScanResult, count: int) -> list[str]:
    """The strongest scored symbols with a direction: where depth and open interest are worth a request."""
    return [row.symbol for row in result.ranked()[:count]]


@dataclass(frozen=True, slots=True)
class Scored:
    """A scan and what went into it."""

    result: ScanResult
    with_premium: int
    with_book: int
    with_open_interest: int
    failures: dict[str, str] = field(default_factory=dict)  # "SYMBOL depth" -> why it is missing


@task(name="score-universe", cache_policy=NONE)
async def score_universe(rt: Runtime, bars: Mapping[str, Bars], symbols: Sequence[str], now_ms: int) -> Scored:
    """Premium for all, a first pass, depth and open interest for the top candidates, then the final pass."""
    config = FactorConfig()
    interval = rt.settings.bar_interval
    logger = run_logger()
    failures: dict[str, str] = {}
    extras: dict[str, SymbolExtras] = {}
    try:
        premiums = {p.symbol: p for p in await rt.exchange.premium_index()}
    except ExchangeError as exc:
        premiums = {}
        failures["premium index"] = str(exc)
    for symbol in symbols:
        if symbol in premiums:
            extras[symbol] = SymbolExtras(premium=premium_snapshot(premiums[symbol]))
    series = [bars[s] for s in symbols]
    context = context_of(bars)
    first = scan(series, as_of_ms=now_ms, extras=extras, context=context, config=config)
    top = top_symbols(first, TOP_CANDIDATES)
    gate = asyncio.Semaphore(EXTRAS_CONCURRENCY)
    period, points = oi_period(interval), oi_points(interval, config)

    async def enrich(symbol: str) -> None:
        current = extras.get(symbol, SymbolExtras())
        async with gate:
            try:
                current = replace(current, book=book_snapshot(await rt.exchange.depth(symbol, DEPTH_LEVELS)))
            except ExchangeError as exc:
                failures[f"{symbol} depth"] = str(exc)
            try:
                history = await rt.exchange.open_interest_hist(symbol, period, limit=points)
                if history:
                    current = replace(current, open_interest=open_interest_series(history, period))
            except ExchangeError as exc:
                failures[f"{symbol} open interest"] = str(exc)
        extras[symbol] = current

    await asyncio.gather(*(enrich(s) for s in top))
    result = scan(series, as_of_ms=now_ms, extras=extras, context=context, config=config)
    scored = Scored(
        result,
        with_premium=sum(1 for e in extras.values() if e.premium is not None),
        with_book=sum(1 for e in extras.values() if e.book is not None),
        with_open_interest=sum(1 for e in extras.values() if e.open_interest is not None),
        failures=failures,
    )
    logger.info(
        f"scored {len(symbols)} symbols ({len(result.ranked())} with a direction, {len(result.insufficient)} "
        f"without enough data); extras: premium {scored.with_premium}, depth {scored.with_book}, "
        f"open interest {scored.with_open_interest}" + (f"; {len(failures)} extras missing" if failures else "")
    )
    return scored


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    """What a scan stored: its id, the bar it scored, and the signals at or above min_score (new or not).

    A dry run's signals are not stored (`signal_ids` is empty): nothing a later place-orders could act on.
    """

    scan_id: int
    bar_open_time_ms: int
    universe_size: int
    signal_ids: list[int]
    new_signals: int
    signals: list[Signal]
    dry_run: bool = False


@task(name="record-scan", cache_policy=NONE)
async def record_scan(
    rt: Runtime, result: ScanResult, *, min_score: float, started_ms: int, bar_open_time_ms: int, dry_run: bool = False
) -> ScanOutcome:
    """Store the scan, every factor of every symbol, the signals (once per bar) and their notifications.

    A dry run stores the scan and its factors (history nobody acts on) but neither the signals (a later
    place-orders would act on them) nor their notifications."""
    account, settings = rt.account, rt.settings
    signals = result.signals(min_score)
    ids: list[int] = []
    created = 0
    with rt.database.session() as session:
        scan_id = market.start_scan(
            session,
            interval=rt.settings.bar_interval,
            min_score=min_score,
            started_ms=started_ms,
            flow_run_id=flow_run.id,
        )
        market.store_scan_results(session, scan_id, result.rows)
        recorded = [] if dry_run else signals
        rules = market.stored_rules(session, [s.symbol for s in recorded])
        for signal in recorded:
            signal_id, new = market.record_signal(session, account, signal, scan_id=scan_id, source="scan")
            ids.append(signal_id)
            if new:
                created += 1
                key = signal_dedupe_key(signal.symbol, signal.bar_open_time_ms)
                symbol_rules = rules.get(signal.symbol)
                plan = (
                    None
                    if symbol_rules is None
                    else signal_plan(signal, symbol_rules, settings.levels, settings.limits)
                )
                note = signal_note(signal, plan=plan)
                enqueue_notification(session, account, key, note, language=settings.language)
        market.finish_scan(
            session,
            scan_id,
            finished_ms=rt.now_ms(),
            bar_open_time_ms=bar_open_time_ms,
            universe_size=len(result.rows),
            signal_count=len(signals),
        )
    told = "dry run: not recorded, not announced" if dry_run else f"{created} new"
    run_logger().info(f"scan {scan_id} stored: {len(result.rows)} symbols, {len(signals)} signals ({told})")
    return ScanOutcome(scan_id, bar_open_time_ms, len(result.rows), ids, created, signals, dry_run)


@task(name="record-manual-signal", cache_policy=NONE)
async def record_manual_signal(rt: Runtime, signal: Signal) -> int:
    """Store a user's signal (source 'manual'); a refused signal of the same bar and side may be tried again,
    one that already led to a position may not (its client ids are taken)."""
    with rt.database.session() as session:
        signal_id, new = market.record_signal(session, rt.account, signal, scan_id=None, source="manual")
        if not new:
            status = market.signal_status(session, signal_id)
            if status == "refused":
                market.set_signal_status(session, signal_id, "new", code=None, reason=None)
            elif status != "new":
                raise RunFailed(
                    f"{signal.symbol} {signal.direction.value} was already traded on this bar (signal {signal_id} is "
                    f"{status}); try again after the next bar closes"
                )
    return signal_id
