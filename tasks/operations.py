"""What the monitor's Telegram bot asks of the system (ats.operator.Operations), done the way the CLI does it:
the account as `ats status` reads it, today as the daily report tells it, and the emergency stop as
`ats close-all` runs it. `ats monitor` hands one to the monitor, which may not import tasks itself.
"""

from __future__ import annotations

import logging

from ats.clock import Clock, utc_day_start_ms
from ats.config import Settings
from ats.emergency import CloseAllReport
from ats.exchange.binance import BinanceFutures
from ats.notify import DailyReport
from ats.operator import AccountStatus
from db.rate_limits import PostgresBudgetStore
from db.session import Database
from tasks.account import gather_day, read_account
from tasks.emergency import close_everything, open_emergency
from tasks.runtime import Runtime

log = logging.getLogger("ats.operations")


class RuntimeOperations:
    """Each call opens its own exchange client (its request budget shared through the database) and closes it."""

    def __init__(self, settings: Settings, database: Database, clock: Clock) -> None:
        self._settings = settings
        self._database = database
        self._clock = clock

    def _runtime(self) -> Runtime:
        exchange = BinanceFutures.from_settings(
            self._settings, clock=self._clock, budget_store=PostgresBudgetStore(self._database.engine)
        )
        return Runtime(self._settings, self._database, exchange, self._clock)

    async def status(self) -> AccountStatus:
        rt = self._runtime()
        try:
            await rt.exchange.sync_time()
            result: AccountStatus = await read_account.fn(rt)
            return result
        finally:
            await rt.exchange.aclose()

    async def daily(self) -> DailyReport:
        rt = self._runtime()
        try:
            await rt.exchange.sync_time()
            stats = await gather_day.fn(rt, utc_day_start_ms(self._clock.now_ms()))
            return stats.report
        finally:
            await rt.exchange.aclose()

    async def close_all(self, reason: str, source: str) -> CloseAllReport:
        async with open_emergency(self._settings, source=source, log=log) as em:
            return await close_everything(em, reason, halt=True)
