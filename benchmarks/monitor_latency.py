"""Monitor speed against the simulated exchange on loopback and the local PostgreSQL.

- tick filter: the cost of deciding that a mark-price tick cannot change a position (no database involved);
- TP1 -> breakeven: from the price crossing TP1 on the exchange to the breakeven stop acknowledged and the old
  stop cancelled (user stream, lifecycle transitions, two algo-order round trips, database commits);
- tick to action: the monitor's own histogram for the ticks that reached the lifecycle during supervision
  closes (a stop that did not fire);
- failover: from SIGKILL or SIGSTOP of the active `ats monitor` to the standby's heartbeat saying active (the
  leader's lease expired), and to its /readyz answering 200 (streams up, first reconciliation done); from SIGCONT
  of the frozen one to it standing by again.

Needs PostgreSQL (ATS_TEST_DATABASE_URL, else 127.0.0.1:5432); a scratch database is created and dropped.
Prints one JSON object. Run from the repository root: `.venv/bin/python benchmarks/monitor_latency.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
import timeit
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ats.domain import Direction
from ats.lifecycle import Phase, Role
from db import migrate
from db.session import Database
from monitor.view import Watch
from sim.server import SimConfig, SimServer, SimServerThread
from tests.fixtures.db import DEFAULT_SERVER, DatabaseFactory, truncate_all
from tests.integration.monitor.harness import Desk, breakeven_up, client, start_monitor
from tests.integration.monitor.processes import MonitorProcess, detail, monitor_env, wait_role
from tests.unit.lifecycle.harness import Driver

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "LTCUSDT", "XRPUSDT", "LINKUSDT", "DOTUSDT")
FAILOVERS = 3  # of each kind
LEASE_S = 10.0  # the default ATS_MONITOR__LEASE_S


def _summary(values: list[float], digits: int = 1) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), digits),
        "p95": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], digits),
        "n": len(ordered),
    }


def tick_filter_ns() -> float:
    driver = Driver()
    driver.open_fully()
    watch = Watch.of(driver.p)
    assert watch is not None
    mark = Decimal("99.37")
    runs = 200_000
    return round(timeit.timeit(lambda: watch.wants_mark(mark, 1_000_000), number=runs) / runs * 1e9, 1)


async def in_process(database: Database) -> dict[str, Any]:
    async with SimServer(SimConfig(seed=3, mode="manual", port=0)) as sim:
        exchange = client(sim.rest_url, sim.api_key, sim.api_secret)
        running = await start_monitor(sim.rest_url, sim.ws_url, sim.api_key, sim.api_secret, database)
        desk = Desk(exchange, database)
        try:
            breakeven_ms = []
            for symbol in SYMBOLS:
                key = await desk.open(symbol, Direction.LONG)
                p = await desk.wait(key, lambda p: p.phase is Phase.OPEN, "protected")
                assert p.levels is not None
                started = time.perf_counter()
                await sim.set_price(symbol, p.levels.tp1 + p.policy.rules.tick_size)
                await desk.wait(key, breakeven_up, "breakeven", timeout_s=20)
                breakeven_ms.append((time.perf_counter() - started) * 1000)
            for symbol in SYMBOLS:  # supervision: the stop vanishes behind the monitor's back
                p = next(x for x in desk.journal.open_positions() if x.symbol == symbol)
                sim.stall_websockets(30, path="/private/*")
                stop = p.current_order(Role.STOP)
                assert stop is not None
                assert p.stop_price is not None
                sim.engine.cancel_algo({"clientAlgoId": stop.client_id})
                below = p.stop_price * Decimal("0.97")
                for _ in range(7):
                    await sim.set_price(symbol, below)
                    await sim.advance(1)
                await desk.wait(p.key, lambda p: p.phase is Phase.CLOSED, "closed by supervision", timeout_s=20)
                sim.stall_websockets(0, path="/private/*")
            (histogram,) = running.metrics.tick_to_action.collect()
            samples = histogram.samples
            count = next(s.value for s in samples if s.name.endswith("_count"))
            total = next(s.value for s in samples if s.name.endswith("_sum"))
            return {
                "tp1_to_breakeven_ms": _summary(breakeven_ms),
                "tick_to_action_mean_ms": round(total / count * 1000, 1),
                "ticks_reaching_the_lifecycle": int(count),
            }
        finally:
            await running.shutdown()
            await exchange.aclose()


def failover(database: Database, data_dir: Path) -> dict[str, Any]:
    """SIGKILL, then SIGSTOP, of the active monitor: how long until the standby is active (the lease expired) and
    ready; for a frozen leader, how long after SIGCONT it stands by again (having sent nothing)."""
    with SimServerThread(SimConfig(seed=3, mode="manual", port=0)) as sim:
        env = monitor_env(sim.rest_url, sim.ws_url, database, data_dir, ATS_MONITOR__LEASE_S=str(LEASE_S))
        figures: dict[str, dict[str, list[float]]] = {"killed": {}, "frozen": {}}
        leader = MonitorProcess(env, data_dir / "monitor-0.log")
        leader.start()
        wait_role(database, leader, "active", timeout_s=30)
        for n, way in enumerate(["killed"] * FAILOVERS + ["frozen"] * FAILOVERS):
            standby = MonitorProcess(env, data_dir / f"monitor-{n + 1}.log")
            standby.start()
            wait_role(database, standby, "standby", timeout_s=30)
            port = detail(database, standby, "health_port")
            found = figures[way]
            started = time.monotonic()
            if way == "killed":
                leader.kill()
            else:
                os.kill(leader.pid, signal.SIGSTOP)
            wait_role(database, standby, "active", timeout_s=60)
            found.setdefault("standby_active_s", []).append(time.monotonic() - started)
            while httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code != 200:
                time.sleep(0.02)
            found.setdefault("standby_ready_s", []).append(time.monotonic() - started)
            if way == "frozen":
                woken = time.monotonic()
                os.kill(leader.pid, signal.SIGCONT)
                wait_role(database, leader, "standby", timeout_s=60)
                found.setdefault("woken_standing_by_s", []).append(time.monotonic() - woken)
                leader.terminate()
            leader = standby
        leader.terminate()
        return {
            "lease_s": LEASE_S,
            **{way: {name: _summary(values, 2) for name, values in found.items()} for way, found in figures.items()},
        }


def main() -> None:
    logging.getLogger().setLevel(logging.ERROR)  # the sim's clock jumps make the client resync, noisily
    server = os.environ.get("ATS_TEST_DATABASE_URL", DEFAULT_SERVER)
    factory = DatabaseFactory(server)
    database = Database(factory.create())
    try:
        migrate.upgrade(database.engine)
        results: dict[str, Any] = {"tick_filter_ns": tick_filter_ns()}
        results.update(asyncio.run(in_process(database)))
        truncate_all(database)
        with tempfile.TemporaryDirectory(prefix="ats-bench-monitor-") as tmp:
            results["failover"] = failover(database, Path(tmp))
        print(json.dumps(results, indent=2))
    finally:
        database.dispose()
        factory.drop_all()


if __name__ == "__main__":
    main()
