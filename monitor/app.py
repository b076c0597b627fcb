"""The monitor process: wires the configuration to PostgreSQL, the exchange, the streams and the notifier.

`ats monitor` calls `serve(settings)`. Ctrl+C or SIGTERM stops it gracefully: the work in progress finishes, the
streams close and the leader lock is released so a standby takes over at once. Protective orders stay on the
exchange.
"""

from __future__ import annotations

import asyncio
import functools
import signal

from ats.clock import WallClock
from ats.config import Settings
from ats.exchange.binance import BinanceFutures
from ats.exchange.streams import BinanceMarketStream, BinanceUserStream
from ats.log import get_logger
from ats.notify import make_notifier
from db.journal import PostgresJournal
from db.outbox import deliver_pending
from db.rate_limits import PostgresBudgetStore
from db.session import Database
from monitor.metrics import MonitorMetrics
from monitor.supervisor import Supervisor
from monitor.worker import ListenKeyTracker, Monitor, Tuning

log = get_logger(__name__)

MINUTE_MS = 60_000


async def serve(
    settings: Settings,
    *,
    health_host: str | None = None,
    health_port: int | None = None,
    stop: asyncio.Event | None = None,
    tuning: Tuning | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or `stop` is set): stand by, or monitor the account when leading."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    database = await asyncio.to_thread(Database.open, settings)
    clock = WallClock()
    metrics = MonitorMetrics()
    journal = PostgresJournal(database, settings.account)
    budget_store = PostgresBudgetStore(database.engine)
    notifier = make_notifier(settings.telegram)

    async def build() -> Monitor:
        exchange = BinanceFutures.from_settings(settings, clock=clock, budget_store=budget_store)
        listen_keys = ListenKeyTracker(exchange, clock)

        async def weight_used() -> int:
            state = await asyncio.to_thread(budget_store.snapshot, exchange.budget.scope)
            fresh = exchange.budget.now_ms() - state.window_start_ms < MINUTE_MS
            return state.used_weight if fresh else 0

        return Monitor(
            settings=settings,
            exchange=exchange,
            journal=journal,
            user_stream=BinanceUserStream.from_settings(settings, listen_keys, clock=clock),
            market_stream=BinanceMarketStream.from_settings(settings, clock=clock),
            clock=clock,
            metrics=metrics,
            listen_keys=listen_keys,
            outbox=functools.partial(deliver_pending, database, settings.account, notifier, clock),
            weight_used=weight_used,
            tuning=tuning,
        )

    supervisor = Supervisor(
        account=settings.account,
        database=database,
        build=build,
        metrics=metrics,
        clock=clock,
        health_host=settings.monitor.health_host if health_host is None else health_host,
        health_port=settings.monitor.health_port if health_port is None else health_port,
        heartbeat_s=settings.monitor.watchdog_interval_s,
    )
    try:
        await supervisor.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        database.dispose()
