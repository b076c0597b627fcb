"""Leader election in-process: health endpoints by role, and a leader whose lease another process took steps down
at once (its fence refuses everything) and leads again under a new epoch when the lease is free; the watchdog's
checks in the monitor tell of an unready monitor with positions open, once, and of its recovery."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text

from ats.clock import WallClock
from ats.health import HealthPolicy
from ats.leadership import Fence, NotLeader
from db.lease import lease_holder
from db.outbox import deliver_pending
from db.session import Database
from monitor.metrics import MonitorMetrics
from monitor.supervisor import Supervisor
from monitor.worker import Monitor
from sim.server import SimServer
from tests.integration.monitor.harness import ACCOUNT, Desk, build_monitor, client, sim_settings, wait_for


async def _status(port: int, path: str) -> int:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"http://127.0.0.1:{port}{path}", timeout=2)).status_code


async def test_a_leader_whose_lease_is_taken_steps_down_at_once_and_leads_again_under_a_new_epoch(
    sim: SimServer, db: Database
) -> None:
    settings = sim_settings(sim.rest_url, sim.ws_url)
    metrics = MonitorMetrics()
    built: list[Monitor] = []

    async def build(fence: Fence) -> Monitor:
        built.append(build_monitor(settings, sim.api_key, sim.api_secret, db, metrics, fence))
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
        lease_s=4,
        language=settings.language,
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
        first = supervisor.fence.epoch
        assert first is not None
        assert _lease(db) == (supervisor.name, first)

        # Another process took the lease (this one was cut off from the database long enough, say).
        _set_lease(db, "holder = 'monitor:main:elsewhere:9', epoch = epoch + 1, expires_at = now() + interval '1 h'")
        await wait_for(lambda: metrics.state.role == "standby", what="stepping down")
        standby_epoch = supervisor.fence.epoch
        assert standby_epoch is None
        with pytest.raises(NotLeader):
            supervisor.fence.check("placing a stop")
        assert len(built) == 1

        _set_lease(db, "expires_at = now()")  # ... and that one stopped without releasing it
        await wait_for(lambda: len(built) == 2 and metrics.state.role == "active", what="leading again")
        assert supervisor.fence.epoch == first + 2
        assert _lease(db) == (supervisor.name, first + 2)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=15)
    assert metrics.state.role == "stopped"
    with db.session() as session:
        assert lease_holder(session, ACCOUNT) is None  # released on the way out: a standby need not wait


def _lease(db: Database) -> tuple[str, int]:
    with db.session() as session:
        row = session.execute(text("SELECT holder, epoch FROM monitor_lease WHERE account = :a"), {"a": ACCOUNT})
        holder, epoch = row.one()
    return holder, epoch


def _set_lease(db: Database, assignments: str) -> None:
    with db.session() as session:
        session.execute(text(f"UPDATE monitor_lease SET {assignments} WHERE account = :a"), {"a": ACCOUNT})  # noqa: S608


async def test_a_monitor_not_ready_with_a_position_open_says_so_once_and_says_when_it_recovers(
    sim: SimServer, db: Database
) -> None:
    settings = sim_settings(sim.rest_url, sim.ws_url)
    metrics = MonitorMetrics()
    desk = Desk(client(sim.rest_url, sim.api_key, sim.api_secret), db)
    delivered: list[str] = []

    async def deliver() -> int:
        sent = await deliver_pending(db, ACCOUNT, RecordingNotifier(delivered), WallClock())
        return sent

    async def build(fence: Fence) -> Monitor:
        return build_monitor(settings, sim.api_key, sim.api_secret, db, metrics, fence)

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
        health_policy=HealthPolicy(heartbeat_stale_s=10, unready_alert_s=1.0, cycle_overdue_s=None),
        health_check_s=0.3,
        deliver=deliver,
        language=settings.language,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    try:
        await wait_for(lambda: not metrics.state.problems and metrics.state.role == "active", what="ready")
        key = await desk.open("BTCUSDT")
        await desk.wait(key, lambda p: p.phase.value == "open", "protected")

        # The exchange goes away: REST answers 503 and the streams drop (they cannot come back without REST).
        sim.faults.add("unavailable", path="*")
        await sim.disconnect_websockets()
        await wait_for(lambda: any("not ready" in m for m in delivered), timeout_s=20, what="the not-ready alert")
        alert = next(m for m in delivered if "not ready" in m)
        assert alert.startswith("🚨 <b>Alert</b>: monitor not ready for ")
        assert "with 1 open position" in alert
        assert "user stream disconnected" in alert

        sim.faults.clear()
        await wait_for(lambda: any("ready again" in m for m in delivered), timeout_s=30, what="the recovery")
        assert sum("not ready" in m for m in delivered) == 1  # told once, however long it lasted
        assert any(m.startswith("✅ <b>Recovered</b>: the monitor is ready again\nafter ") for m in delivered)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=15)


class RecordingNotifier:
    """A notifier that keeps what it was asked to send (the outbox in front of it is the real one)."""

    def __init__(self, sent: list[str]) -> None:
        self._sent = sent

    async def send(self, message: str) -> None:
        self._sent.append(message)

    async def aclose(self) -> None:
        return None
