"""No entry without a monitor: `ats trade` (the real command, in its own process) is refused while no monitor runs,
and trades once the real `ats monitor` process leads the account."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from ats.lifecycle import Phase
from db.models import PositionRow
from tests.integration.flows.conftest import FlowEnv
from tests.integration.monitor.processes import ATS_CLI, ROOT, MonitorProcess, monitor_env, wait_role

TRADE_TIMEOUT_S = 120
PROTECTED_WAIT_S = 30.0


def trade(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ATS_CLI, "trade", "SOLUSDT", "--side", "LONG", "--min-score", "0", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TRADE_TIMEOUT_S,
        check=False,
    )


def test_ats_trade_is_refused_without_a_monitor_and_accepted_with_one(
    flow_env: FlowEnv, prefect_server: str, tmp_path: Path
) -> None:
    flow_env.monitor.stop()  # the tests' stand-in: here the real one, or none
    env = monitor_env(flow_env.sim.rest_url, flow_env.sim.ws_url, flow_env.database, tmp_path)
    env["PREFECT_API_URL"] = prefect_server  # the session's server (no temporary one to start)

    refused = trade(env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused: no monitor is protecting positions" in refused.stderr
    assert "--without-monitor" in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    with flow_env.database.session() as session:
        assert session.scalars(select(PositionRow)).all() == []
    assert flow_env.server.engine.orders == {}  # nothing reached the exchange

    monitor = MonitorProcess(env, tmp_path / "monitor.log", fast=True)
    monitor.start()
    try:
        wait_role(flow_env.database, monitor, "active", timeout_s=30)
        accepted = trade(env)
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr + monitor.log_tail()
        assert "SOLUSDT LONG" in accepted.stdout
        assert "no monitor is protecting positions" not in accepted.stdout + accepted.stderr
        # Opened; its protection acknowledged by now or soon after, by the placement or the monitor.
        deadline = time.monotonic() + PROTECTED_WAIT_S
        while (state := _state(flow_env, "SOLUSDT")) != Phase.OPEN.value and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state == Phase.OPEN.value, monitor.log_tail()
    finally:
        assert monitor.terminate() == 0, monitor.log_tail()


def _state(env: FlowEnv, symbol: str) -> str | None:
    with env.database.session() as session:
        return session.scalar(
            select(PositionRow.state).where(PositionRow.symbol == symbol, PositionRow.closed_at.is_(None))
        )
