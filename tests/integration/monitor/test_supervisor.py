"""Leader election in-process: health endpoints by role, and a leader whose lock connection dies steps down at
once (another process may hold the lock by then) and leads again when the lock is free."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text

from ats.clock import WallClock
from ats.sim.server import SimServer
from db.session import Database
from monitor.metrics import MonitorMetrics
from monitor.supervisor import Supervisor
from monitor.worker import Monitor
from tests.integration.monitor.harness import ACCOUNT, build_monitor, sim_settings, wait_for


async def _status(port: int, path: str) -> int:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"http://127.0.0.1:{port}{path}", timeout=2)).status_code


async def test_a_leader_that_loses_its_lock_steps_down_and_leads_again(sim: SimServer, db: Database) -> None:
    settings = sim_settings(sim.rest_url, sim.ws_url)
    metrics = MonitorMetrics()
    built: list[Monitor] = []

    async def build() -> Monitor:
        built.append(build_monitor(settings, sim.api_key, sim.api_secret, db, metrics))
        return built[-1]

    supervisor = Supervisor(
        account=ACCOUNT,
        database=db,
        build=build,
        metrics=metrics,
        clock=WallClock(),
        health_host="127.0.0.1",
        health_port=0,
        heartbeat_s=0.3,
        standby_poll_s=0.1,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    try:
        await wait_for(lambda: metrics.state.last_reconcile_ms, what="the first reconciliation")
        port = supervisor.health_port
        assert await _status(port, "/livez") == 200
        await wait_for(lambda: not metrics.state.problems, what="ready")
        assert await _status(port, "/readyz") == 200
        assert await _status(port, "/nope") == 404

        with db.engine.connect() as conn:  # the lock's connection dies (a network cut, a DBA, a failover)
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar()
        assert killed == 1
        await wait_for(lambda: len(built) == 2, what="stepping down and leading again")
        await wait_for(lambda: metrics.state.role == "active", what="active again")
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=15)
    assert metrics.state.role == "stopped"
