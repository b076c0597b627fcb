"""The place-orders flow's own work, for the chaos bench: signals recorded, decided under the account's lock and
opened on the exchange by the same task bodies the flow runs (tasks.placement), without the Prefect engine.

A "cycle" here is what place-orders does after the scan: `read_exchange_account`, `record_entries` (the risk
decisions in one transaction under the placement lock, the daily loss headroom spent by the open risk of every
position) and `open_on_exchange` per approved entry, a transient failure followed by re-drives like the task's
retries. Each cycle has its own exchange client and its own database connection through the bench's PostgreSQL
proxy (so a database outage reaches it as it reaches the monitor). Cycles started together run in threads of
their own, as two flow runs on a worker do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import delete

from ats.clock import WallClock
from ats.config import RiskLimits
from ats.domain import Band, Direction, Signal, intent_key
from ats.factors import last_closed_open_time
from db import market
from db.models import RiskLedgerRow
from db.rate_limits import PostgresBudgetStore
from db.session import Database
from tasks.placement import Decided, open_on_exchange, read_exchange_account, record_entries
from tasks.runtime import TRANSIENT, Runtime
from tasks.scanning import record_manual_signal
from tests.integration.monitor.harness import ACCOUNT, client, sim_settings

BAR_MS = 3_600_000
RETRY_DELAYS_S = (0.2, 0.5, 1.0)  # open-position's retries, shortened


@dataclass(frozen=True, slots=True)
class CycleSetup:
    """Where a cycle trades and records: the exchange's URLs and keys, the database URL (through the proxy)."""

    rest_url: str
    ws_url: str
    api_key: str
    api_secret: str
    database_url: str
    limits: RiskLimits


@dataclass
class CycleResult:
    """What one cycle decided and opened, and how it ended (a cycle may fail: the database went away)."""

    approved: list[tuple[str, str]] = field(default_factory=list)  # (key, symbol)
    refused: dict[str, str] = field(default_factory=dict)  # symbol -> refusal code
    failure: str | None = None


def signal(symbol: str, direction: Direction, bar_ms: int, price: Decimal, strength: float = 80.0) -> Signal:
    return Signal(symbol, direction, strength, Band.of(strength), bar_ms, price)


def bar_of_run(server_time_ms: int, run: int) -> int:
    """The bar a run's signals belong to: the newest closed one, one bar later per run (as successive cycles),
    so that the intent keys of one run never meet another's."""
    return last_closed_open_time(server_time_ms, "1h") + run * BAR_MS


def key_of(s: Signal) -> str:
    return intent_key(ACCOUNT, s.symbol, s.bar_open_time_ms, s.direction)


def new_day(database: Database) -> None:
    """00:00 UTC for the risk ledger: nothing realised today, no halt (each run of a loss-cap scenario is a day)."""
    with database.session() as session:
        session.execute(delete(RiskLedgerRow).where(RiskLedgerRow.account == ACCOUNT))


def record_scan_signals(database: Database, signals: Sequence[Signal]) -> list[int]:
    """The scan's signals, stored as factor-scan stores them (once per symbol, bar and side)."""
    with database.session() as session:
        return [market.record_signal(session, ACCOUNT, s, scan_id=None, source="scan")[0] for s in signals]


def _runtime(setup: CycleSetup, database: Database) -> Runtime:
    settings = sim_settings(setup.rest_url, setup.ws_url).model_copy(update={"limits": setup.limits})
    exchange = client(
        setup.rest_url, setup.api_key, setup.api_secret, budget_store=PostgresBudgetStore(database.engine)
    )
    return Runtime(settings, database, exchange, WallClock())


async def _open(rt: Runtime, key: str, symbol: str, leverage: int) -> None:
    """open-position with its retries: the first attempt sends, a retry re-drives (looks up before it sends)."""
    try:
        await open_on_exchange.fn(rt, key, symbol, leverage)
    except TRANSIENT:
        for delay_s in RETRY_DELAYS_S:
            await asyncio.sleep(delay_s)
            try:
                await rt.executor("flow").redrive(key)
                return
            except TRANSIENT:
                continue


async def _cycle(
    setup: CycleSetup, signal_ids: list[int] | None, signals: Sequence[Signal], manual: bool
) -> CycleResult:
    result = CycleResult()
    database = Database(setup.database_url)
    rt = _runtime(setup, database)
    try:
        exchange = await read_exchange_account.fn(rt)
        if manual:  # manual-signal: the user's signal recorded, then placed alone
            signal_ids = [await record_manual_signal.fn(rt, s) for s in signals]
        decided: Decided = await record_entries.fn(
            rt,
            exchange,
            signal_ids=signal_ids,
            min_score=0.0,
            max_new=1 if manual else None,
            dry_run=False,
            require_monitor=False,  # the bench's monitor runs in this process, without a heartbeat
        )
        for decision in decided.decisions:
            if decision.key is not None and decision.order is not None:
                result.approved.append((decision.key, decision.signal.symbol))
            else:
                result.refused[decision.signal.symbol] = str(decision.code)
        approved = [(d.key, d.signal.symbol, d.order.leverage) for d in decided.decisions if d.key and d.order]
        await asyncio.gather(*(_open(rt, key, symbol, leverage) for key, symbol, leverage in approved))
    except Exception as error:  # the flow run fails with this; the monitor and reconciliation finish the work
        result.failure = f"{type(error).__name__}: {error}"[:200]
    finally:
        await rt.exchange.aclose()
        database.dispose()
    return result


async def run_cycle(setup: CycleSetup, signal_ids: list[int]) -> CycleResult:
    """place-orders over stored signals, in this event loop."""
    return await _cycle(setup, signal_ids, (), manual=False)


async def run_manual(setup: CycleSetup, s: Signal) -> CycleResult:
    """manual-signal's placement of one signal, in this event loop."""
    return await _cycle(setup, None, (s,), manual=True)


async def race(setup: CycleSetup, scans: Sequence[list[int]], manuals: Sequence[Signal]) -> list[CycleResult]:
    """Cycles over `scans` and manual signals `manuals`, all started together, each in its own thread and loop."""

    jobs = [asyncio.to_thread(asyncio.run, run_cycle(setup, ids)) for ids in scans]
    jobs += [asyncio.to_thread(asyncio.run, run_manual(setup, s)) for s in manuals]
    return list(await asyncio.gather(*jobs))
