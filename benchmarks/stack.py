"""What the monitor benchmarks share: a scratch database, the sim in its own process (`sim_process.py`), the real
`ats monitor` in its own process (default timings, as deployed) and a desk that opens positions the way the
order-placement task does.

Needs PostgreSQL (ATS_TEST_DATABASE_URL, else 127.0.0.1:5432); the scratch database is dropped at the end.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import common  # noqa: F401  (puts the repository first on the path)
import httpx
import psutil
from sim_process import WEIGHT_LIMIT, SimProcess

from ats.config import SIM_API_KEY, SIM_API_SECRET
from ats.domain import Direction
from ats.exchange.binance import BinanceFutures
from ats.lifecycle import OrderState, Phase, Position, Role
from db import migrate
from db.session import Database
from tests.fixtures.db import DEFAULT_SERVER, DatabaseFactory
from tests.integration.monitor.harness import Desk, client
from tests.integration.monitor.processes import MonitorProcess, detail, monitor_env, wait_role


@contextlib.contextmanager
def scratch_database() -> Iterator[Database]:
    factory = DatabaseFactory(os.environ.get("ATS_TEST_DATABASE_URL", DEFAULT_SERVER))
    database = Database(factory.create())
    try:
        migrate.upgrade(database.engine)
        yield database
    finally:
        database.dispose()
        factory.drop_all()


@dataclass
class Stack:
    database: Database
    sim: SimProcess
    exchange: BinanceFutures  # the desk's own client (its requests are told apart by time, not by caller)
    desk: Desk
    data_dir: Path

    def monitor(self, name: str = "monitor", **env: str) -> MonitorProcess:
        """The real `ats monitor` (not started), pointed at this stack's sim and database."""
        base = monitor_env(self.sim.rest_url, self.sim.ws_url, self.database, self.data_dir, **env)
        base.pop("ATS_MONITOR__LEASE_S")  # the deployed default, not the tests' short lease
        return MonitorProcess(base, self.data_dir / f"{name}.log")

    async def open_protected(self, symbol: str, direction: Direction = Direction.LONG) -> Position:
        """A position opened by the desk and protected by the monitor (stop and take-profits acknowledged)."""
        key = await self.desk.open(symbol, direction)
        return await self.desk.wait(key, protected, "protected", timeout_s=30)


def protected(p: Position) -> bool:
    stop = p.current_order(Role.STOP)
    return (
        p.phase is Phase.OPEN
        and stop is not None
        and stop.state is OrderState.ACTIVE
        and not any(o.state in (OrderState.REQUESTED, OrderState.CANCELING) for o in p.orders)
    )


@contextlib.asynccontextmanager
async def stack(
    *, seed: int = 3, replay_dir: Path | None = None, history_bars: int = 1500, realtime: bool = False
) -> AsyncIterator[Stack]:
    with (
        scratch_database() as database,
        SimProcess(seed=seed, replay_dir=replay_dir, history_bars=history_bars, realtime=realtime) as sim,
        tempfile.TemporaryDirectory(prefix="ats-bench-") as tmp,
    ):
        exchange = client(sim.rest_url, SIM_API_KEY, SIM_API_SECRET, weight_limit=WEIGHT_LIMIT)
        try:
            yield Stack(database, sim, exchange, Desk(exchange, database), Path(tmp))
        finally:
            await exchange.aclose()


def wait_ready(database: Database, process: MonitorProcess, timeout_s: float = 60.0) -> float:
    """Seconds until the monitor leads and its /readyz answers 200 (streams up, reconciled)."""
    started = time.monotonic()
    wait_role(database, process, "active", timeout_s=timeout_s)
    port = detail(database, process, "health_port")
    while httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code != 200:
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"monitor not ready after {timeout_s} s:\n{process.log_tail()}")
        time.sleep(0.01)
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)
