"""Two `ats monitor` processes on one account: one leads, one stands by; killing the leader hands over once its
lease expires (4 s here); SIGTERM stops gracefully and releases it. Health and metrics are served throughout."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from db.session import Database
from sim.server import SimServerThread
from tests.integration.monitor.processes import MonitorProcess, detail, heartbeat, monitor_env, wait_role


def _get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2.0)


def _wait_ready(port: int, timeout_s: float) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = _get(port, "/readyz")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_the_standby_takes_over_when_the_leader_is_killed(
    sim_thread: SimServerThread, db: Database, tmp_path: Path
) -> None:
    env = monitor_env(sim_thread.rest_url, sim_thread.ws_url, db, tmp_path)
    first = MonitorProcess(env, tmp_path / "first.log")
    second = MonitorProcess(env, tmp_path / "second.log")
    try:
        first.start()
        wait_role(db, first, "active", timeout_s=20)
        second.start()
        wait_role(db, second, "standby", timeout_s=20)
        first_port, second_port = detail(db, first, "health_port"), detail(db, second, "health_port")
        assert _wait_ready(first_port, 15).status_code == 200
        standby = _get(second_port, "/readyz")
        assert standby.status_code == 200
        assert standby.json()["role"] == "standby"
        assert _get(second_port, "/livez").status_code == 200
        assert "ats_monitor_leader 1.0" in _get(first_port, "/metrics").text
        assert "ats_monitor_leader 0.0" in _get(second_port, "/metrics").text

        first.kill()
        took = wait_role(db, second, "active", timeout_s=10)
        assert took < 10
        ready = _wait_ready(second_port, 15)
        assert ready.status_code == 200, ready.text
        metrics = _get(second_port, "/metrics").text
        assert "ats_monitor_last_reconcile_timestamp_seconds" in metrics
        assert 'ats_monitor_stream_connected{stream="user"} 1.0' in metrics

        assert second.terminate() == 0
        row = heartbeat(db, second.pid)
        assert row is not None
        assert row.role == "stopped"
        assert "protective orders stay on the exchange" in second.log_tail()
    finally:
        first.kill()
        second.kill()
