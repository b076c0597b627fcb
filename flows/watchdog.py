"""watchdog: tell a person what the system cannot tell itself (a dead monitor, runs that died, missing cycles)."""

import asyncio
import functools
from dataclasses import dataclass
from datetime import timedelta

from ats.clock import WallClock, ms_to_datetime
from ats.config import load_settings
from ats.health import health_policy
from ats.messages import say_text
from db.health import check_health
from db.secrets import with_secret_blocks
from tasks.flow_runs import ats_flow, deliver_outbox, report_unfinished_runs
from tasks.runtime import prepare_logging, run_logger, shared_database

WATCHDOG_TIMEOUT_S = 50  # it runs every minute: a hung one must not hold the next


@dataclass(frozen=True, slots=True)
class WatchdogReport:
    failing: list[str]  # checks that started failing in this run
    recovered: list[str]  # checks that passed again in this run
    runs_alerted: int  # flow runs that did not complete, newly told of


@ats_flow("watchdog", timeout_s=WATCHDOG_TIMEOUT_S)
async def watchdog(lookback_minutes: int = 60) -> WatchdogReport:
    """Check what the system cannot check itself, and alert once per change (recovery included).

    - The monitor: a process holds the live leader lease with a fresh heartbeat, and has been ready (or not ready for
      less than a minute) while positions are open. The monitor runs these checks too; this run is what notices
      when the monitor itself is dead or hung.
    - Trading cycles: one completed within one bar interval plus five minutes.
    - Flow runs that ended Failed or Crashed in the last `lookback_minutes` (a run whose process was killed is
      marked Crashed by the zombie automation and has run no hook of its own), or a trading cycle dropped by the
      concurrency limit because the previous one was still running.

    Args:
        lookback_minutes: How far back flow runs are read from Prefect.
    """
    settings = await with_secret_blocks(load_settings())
    prepare_logging(settings)
    database = await asyncio.to_thread(shared_database, settings)
    now_ms = WallClock().now_ms()
    told = await asyncio.to_thread(
        functools.partial(check_health, language=settings.language),
        database,
        settings.account,
        health_policy(settings),
        now_ms,
    )
    since = ms_to_datetime(now_ms) - timedelta(minutes=lookback_minutes)
    alerted = await report_unfinished_runs(settings, since)
    if told:
        await deliver_outbox(settings, database)
    report = WatchdogReport(
        failing=[say_text(settings.language, c.note.title) for c in told if c.failing],
        recovered=[say_text(settings.language, c.note.title) for c in told if not c.failing],
        runs_alerted=alerted,
    )
    logger = run_logger()
    for title in report.failing:
        logger.error(f"alert: {title}")
    for title in report.recovered:
        logger.info(f"recovered: {title}")
    return report
