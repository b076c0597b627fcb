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
import numpy as np
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

# `ats monitor` under cProfile (cProfile.run catches the SystemExit of a graceful stop and writes the statistics).
PROFILED_CLI = "import cProfile; from cli import main; cProfile.run('main()', {path!r})"


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

    def monitor(self, name: str = "monitor", *, profile: Path | None = None, **env: str) -> MonitorProcess:
        """The real `ats monitor` (not started), pointed at this stack's sim and database; under cProfile, writing
        its statistics to `profile` when it stops, if asked."""
        base = monitor_env(self.sim.rest_url, self.sim.ws_url, self.database, self.data_dir, **env)
        base.pop("ATS_MONITOR__LEASE_S")  # the deployed default, not the tests' short lease
        process = MonitorProcess(base, self.data_dir / f"{name}.log")
        if profile is not None:
            process._code = PROFILED_CLI.format(path=str(profile))  # the same command, profiled
        return process

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
    """User + system CPU time of a process so far (Linux: /proc/<pid>/stat, fields 14 and 15 in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


BARS = 800
HOUR_MS = 3_600_000


def write_klines(directory: Path, symbols: int, seed: int = 5) -> None:
    """Klines for a sim with more symbols than its synthetic catalogue to replay (a seeded random walk): one
    S<nnn>USDT-1h.csv per symbol, Binance's 12-column format, BARS bars ending at the last full hour."""
    rng = np.random.default_rng(seed)
    end = (int(time.time() * 1000) // HOUR_MS) * HOUR_MS
    opens = np.arange(end - BARS * HOUR_MS, end, HOUR_MS)
    for n in range(symbols):
        start = float(rng.uniform(1.0, 200.0))
        closes = start * np.exp(np.cumsum(rng.normal(0.0, 0.008, BARS)))
        previous = np.concatenate([[start], closes[:-1]])
        highs = np.maximum(previous, closes) * (1 + rng.uniform(0.0, 0.004, BARS))
        lows = np.minimum(previous, closes) * (1 - rng.uniform(0.0, 0.004, BARS))
        volumes = rng.uniform(20_000.0, 80_000.0, BARS)
        lines = [
            f"{t},{o:.4f},{h:.4f},{lo:.4f},{c:.4f},{v:.1f},{t + HOUR_MS - 1},{v * c:.2f},{int(v // 50)},"
            f"{v / 2:.1f},{v * c / 2:.2f},0"
            for t, o, h, lo, c, v in zip(opens, previous, highs, lows, closes, volumes, strict=True)
        ]
        (directory / f"S{n:03d}USDT-1h.csv").write_text("\n".join(lines) + "\n")
