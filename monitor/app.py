"""The monitor process: wires the configuration to PostgreSQL, the exchange, the streams and the notifier.

`ats monitor` calls `serve(settings)`. Ctrl+C or SIGTERM stops it gracefully: the work in progress finishes, the
streams close and the leader lease is released so a standby takes over at once. Protective orders stay on the
exchange.
"""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import os
import signal
from collections.abc import Callable

from ats.clock import Clock, WallClock
from ats.config import ConfigError, Settings
from ats.exchange.binance import BinanceFutures
from ats.exchange.budget import roll
from ats.exchange.streams import BinanceMarketStream, BinanceUserStream
from ats.health import health_policy
from ats.leadership import Fence
from ats.log import get_logger, redact
from ats.notify import make_notifier
from ats.operator import Operations
from db.journal import PostgresJournal
from db.outbox import deliver_pending
from db.rate_limits import PostgresBudgetStore
from db.secrets import with_secret_blocks
from db.session import Database
from monitor.metrics import MonitorMetrics
from monitor.supervisor import Runnable, Supervisor
from monitor.systemd import SystemdNotifier
from monitor.telegram import TelegramBot, WithBot, commands_refusal
from monitor.worker import ListenKeyTracker, Monitor, Tuning

log = get_logger(__name__)


class StartupError(RuntimeError):
    """The monitor cannot start (e.g. the database is unreachable); the message says why, for an operator."""


async def serve(
    settings: Settings,
    *,
    health_host: str | None = None,
    health_port: int | None = None,
    stop: asyncio.Event | None = None,
    tuning: Tuning | None = None,
    operations: Callable[[Settings, Database, Clock], Operations] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or `stop` is set): stand by, or monitor the account when leading.

    With `operations` (how `ats monitor` makes tasks.operations.RuntimeOperations: monitor/ may not import tasks)
    and a Telegram token and chat id, the leader also answers the chat's commands (monitor.telegram).

    A second signal exits at once, skipping the cleanup: nothing is lost (the next start re-drives and
    reconciles), it only takes a standby a lease longer to take over.
    """
    try:
        settings = await with_secret_blocks(settings)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    faulthandler.enable()  # systemd's watchdog aborts a hung monitor (SIGABRT): the log shows where it hung

    def on_signal() -> None:
        if stop.is_set():
            log.warning("second stop signal: exiting now")
            os._exit(130)
        log.info("stop signal: finishing the work in progress (signal again to exit at once)")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        database = await asyncio.to_thread(Database.open, settings)
    except Exception as exc:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        raise StartupError(f"cannot open the database: {_reason(exc)}") from None
    clock = WallClock()
    metrics = MonitorMetrics()
    budget_store = PostgresBudgetStore(database.engine)
    notifier = make_notifier(settings.telegram, venue=settings.venue)
    deliver = functools.partial(deliver_pending, database, settings.account, notifier, clock)

    answering = commands_refusal(settings, operations is not None)
    if answering is not None:
        log.info(f"Telegram commands are not answered: {answering}")
    ops = operations(settings, database, clock) if operations is not None else None

    async def build(fence: Fence) -> Runnable:
        """One term's monitor: its orders and recorded transitions go through the term's fence."""
        exchange = BinanceFutures.from_settings(
            settings, clock=clock, budget_store=budget_store, write_guard=fence.check_write
        )
        listen_keys = ListenKeyTracker(exchange, clock)

        async def weight_used() -> int:
            state = await asyncio.to_thread(budget_store.snapshot, exchange.budget.scope)
            return roll(state, exchange.budget.now_ms()).used_weight

        monitor = Monitor(
            settings=settings,
            exchange=exchange,
            journal=PostgresJournal(database, settings.account, fence=fence, language=settings.language),
            user_stream=BinanceUserStream.from_settings(settings, listen_keys, clock=clock),
            market_stream=BinanceMarketStream.from_settings(settings, clock=clock),
            clock=clock,
            metrics=metrics,
            listen_keys=listen_keys,
            outbox=deliver,
            weight_used=weight_used,
            tuning=tuning,
        )
        if ops is None or answering is not None:
            return monitor
        return WithBot(monitor, TelegramBot(settings, database, ops, clock, fence=fence, deliver=deliver))

    supervisor = Supervisor(
        account=settings.account,
        database=database,
        build=build,
        metrics=metrics,
        clock=clock,
        health_host=settings.monitor.health_host if health_host is None else health_host,
        health_port=settings.monitor.health_port if health_port is None else health_port,
        heartbeat_s=settings.monitor.watchdog_interval_s,
        lease_s=settings.monitor.lease_s,
        health_policy=health_policy(settings),
        health_check_s=settings.watchdog.check_interval_s,
        deliver=deliver,
        systemd=SystemdNotifier.from_env(),
        language=settings.language,
    )
    try:
        await supervisor.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        database.dispose()


def _reason(exc: Exception) -> str:
    """An exception's message on one line, without the driver's background links."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("(Background")]
    return redact(" ".join(lines)[:400]) or type(exc).__name__
