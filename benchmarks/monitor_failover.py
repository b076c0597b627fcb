"""Monitor failover: from SIGKILL or SIGSTOP of the active `ats monitor` to the standby's heartbeat saying active
(the leader's lease expired), and to its /readyz answering 200 (streams up, first reconciliation done); from SIGCONT
of the frozen one to it standing by again. No open positions (benchmarks/monitor_restart.py restarts with 20).

Needs PostgreSQL (ATS_TEST_DATABASE_URL, else 127.0.0.1:5432); a scratch database is created and dropped.
Prints one JSON object. Run from the repository root: `.venv/bin/python benchmarks/monitor_failover.py`.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import load_average

from db import migrate
from db.session import Database
from sim.server import SimConfig, SimServerThread
from tests.fixtures.db import DEFAULT_SERVER, DatabaseFactory
from tests.integration.monitor.processes import MonitorProcess, detail, monitor_env, wait_role

FAILOVERS = 3  # of each kind
LEASE_S = 10.0  # the default ATS_MONITOR__LEASE_S


def _summary(values: list[float], digits: int = 1) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), digits),
        "p95": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], digits),
        "n": len(ordered),
    }


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
    server = os.environ.get("ATS_TEST_DATABASE_URL", DEFAULT_SERVER)
    factory = DatabaseFactory(server)
    database = Database(factory.create())
    try:
        migrate.upgrade(database.engine)
        load_before = load_average()
        with tempfile.TemporaryDirectory(prefix="ats-bench-monitor-") as tmp:
            results = {"failover": failover(database, Path(tmp))}
        results["load_average"] = {"before": load_before, "after": load_average()}
        print(json.dumps(results, indent=2))
    finally:
        database.dispose()
        factory.drop_all()


if __name__ == "__main__":
    main()
