"""History from the exchange's REST API into PostgreSQL (`ats data download`): klines, mark-price klines and
funding settlements of a date range, checked like imported files and stored the same way (db.history).

Bars are fetched and stored in chunks, so a long range shows progress and an interruption keeps what was stored
(a second run adds only what is missing). A symbol or kind the exchange refuses (an unknown symbol, an endpoint
it does not serve) is reported and the others go on; an exchange that cannot be reached stops the download.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from ats.clock import WallClock
from ats.data import FundingRates, Kind, MalformedData, funding_from_rest
from ats.domain import Bars, interval_ms
from ats.exchange.binance import BinanceFutures, budget_scope
from ats.exchange.budget import BudgetLimits, RequestBudget
from ats.exchange.errors import ExchangeError, ExchangeUnavailable
from db.history import Stored, store
from db.rate_limits import PostgresBudgetStore
from db.session import Database

CHUNK_BARS = 15_000  # bars fetched (ten requests of 1500) per transaction


def market_data_client(rest_url: str, database: Database, limits: BudgetLimits) -> BinanceFutures:
    """A client for public market data: no API key (nothing it sends is signed), and the request budget shared
    with every other process on this host that talks to the same exchange, so a long download cannot starve the
    trading cycle or the monitor of request weight."""
    clock = WallClock()
    budget = RequestBudget(
        PostgresBudgetStore(database.engine), scope=budget_scope(rest_url), clock=clock, limits=limits
    )
    return BinanceFutures(rest_url, SecretStr(""), SecretStr(""), clock=clock, budget=budget)


@dataclass(frozen=True, slots=True)
class Download:
    """One symbol's series of one kind: what storing it did, or why it could not be downloaded."""

    symbol: str
    kind: Kind
    interval: str | None
    stored: Stored | None
    error: str | None
    seconds: float

    def describe(self) -> str:
        what = {Kind.KLINES: "klines", Kind.MARK: "mark-price klines", Kind.FUNDING: "funding rates"}[self.kind]
        return f"{self.symbol} {self.interval} {what}" if self.interval else f"{self.symbol} {what}"


async def download_history(
    exchange: BinanceFutures,
    database: Database,
    *,
    symbols: Sequence[str],
    interval: str,
    start_ms: int,
    end_ms: int,
    kinds: Sequence[Kind],
    on_done: Callable[[Download], None],
) -> list[Download]:
    """Every symbol's series of every kind from start_ms to end_ms (open or settlement times, inclusive).

    Raises ExchangeUnavailable when the exchange cannot be reached: nothing more can be downloaded.
    """
    done: list[Download] = []
    for symbol in symbols:
        for kind in kinds:
            started = time.perf_counter()
            try:
                stored = await _download(exchange, database, symbol, kind, interval, start_ms, end_ms)
                error = None
            except ExchangeUnavailable:
                raise
            except (ExchangeError, MalformedData) as exc:
                stored, error = None, str(exc)
            item = Download(
                symbol,
                kind,
                None if kind is Kind.FUNDING else interval,
                stored,
                error,
                time.perf_counter() - started,
            )
            on_done(item)
            done.append(item)
    return done


async def _download(
    exchange: BinanceFutures, database: Database, symbol: str, kind: Kind, interval: str, start_ms: int, end_ms: int
) -> Stored:
    if kind is Kind.FUNDING:
        entries = await exchange.funding_rates(symbol, start_ms=start_ms, end_ms=end_ms)
        rates: FundingRates = funding_from_rest(symbol, entries, where=f"GET /fapi/v1/fundingRate {symbol}")
        with database.session() as session:
            return store(session, kind, rates, source="rest")
    fetch = exchange.klines if kind is Kind.KLINES else exchange.mark_price_klines
    step = interval_ms(interval)
    first = start_ms + (-start_ms) % step
    totals = Stored(0, 0, 0, 0)
    for chunk_start in range(first, end_ms + 1, CHUNK_BARS * step):
        chunk_end = min(chunk_start + (CHUNK_BARS - 1) * step, end_ms)
        count = (chunk_end - chunk_start) // step + 1
        bars: Bars = await fetch(symbol, interval, start_ms=chunk_start, end_ms=chunk_end, limit=count)
        if not len(bars):
            continue
        with database.session() as session:
            stored = store(session, kind, bars, source="rest")
        totals += stored
    return totals
