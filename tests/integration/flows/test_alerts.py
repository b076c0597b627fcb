"""Failures reach a person: a run that fails says so through the outbox, and the watchdog flow tells of what no run
can tell of itself (no monitor, a run that crashed without running its hooks), each once."""

from __future__ import annotations

import asyncio
import time

from prefect.client.orchestration import get_client
from prefect.states import Crashed, Running
from sqlalchemy import select

from db.models import FlowRunRow, NotificationRow
from flows.build_pools import build_pools
from flows.trading_cycle import trading_cycle
from flows.watchdog import watchdog
from tests.integration.flows.conftest import FlowEnv, run

STOP_WAIT_S = 30.0


def alerts(env: FlowEnv) -> list[NotificationRow]:
    with env.database.session() as session:
        return list(
            session.scalars(select(NotificationRow).where(NotificationRow.kind == "alert").order_by(NotificationRow.id))
        )


async def test_the_exchange_stopping_during_a_cycle_fails_it_and_the_reason_reaches_the_outbox(
    flow_env: FlowEnv,
) -> None:
    # The 24h tickers answer slowly, so the cycle is inside build-pools when the exchange goes away.
    flow_env.server.faults.add("latency", path="/fapi/v1/ticker/24hr", count=1, latency_ms=1500)
    cycle = asyncio.create_task(run(trading_cycle))
    deadline = time.monotonic() + STOP_WAIT_S
    while flow_env.server.faults.rules and time.monotonic() < deadline:  # noqa: ASYNC110  (the sim's own state)
        await asyncio.sleep(0.05)
    assert not flow_env.server.faults.rules, "the cycle never asked for the tickers"
    await asyncio.to_thread(flow_env.sim.stop)

    state = await cycle
    assert state.is_failed()
    assert state.message is not None
    assert state.message.startswith("build-pools failed: exchange unreachable")
    told = alerts(flow_env)
    assert len(told) == 1
    run_id = str(state.state_details.flow_run_id)
    assert told[0].text.startswith("⚠️ <b>Alert</b>: trading-cycle failed")
    assert state.message in told[0].text.replace("&#x27;", "'")
    assert run_id in told[0].text  # a link to the run's page in the Prefect UI, which holds its id
    assert told[0].status == "sent"  # delivered at once (to the log here: no Telegram configured)
    with flow_env.database.session() as session:
        recorded = session.get(FlowRunRow, run_id)
        assert recorded is not None
        assert (recorded.flow, recorded.state, recorded.subflow) == ("trading-cycle", "FAILED", False)
        pools = session.scalars(select(FlowRunRow).where(FlowRunRow.flow == "build-pools")).one()
        assert (pools.state, pools.subflow) == ("FAILED", True)  # recorded; told by its parent only


async def test_the_watchdog_tells_of_a_missing_monitor_and_of_a_run_that_crashed_without_its_hooks(
    flow_env: FlowEnv,
) -> None:
    flow_env.monitor.stop()
    # A run whose process died: the zombie automation marks it Crashed on the server; no hook of it ever ran.
    async with get_client() as client:
        dead = await client.create_flow_run(build_pools, name="killed mid-run")
        await client.set_flow_run_state(dead.id, Running())
        await client.set_flow_run_state(dead.id, Crashed(message="No heartbeat for 120 s"))

    first = await run(watchdog, lookback_minutes=10)
    assert first.is_completed(), first.message
    report = await first.aresult()
    assert report.failing == ["no monitor is running"]
    texts = [row.text for row in alerts(flow_env)]
    assert sum(t.startswith("⚠️ <b>Alert</b>: no monitor is running") for t in texts) == 1
    crashed = [t for t in texts if "build-pools crashed" in t and str(dead.id) in t]
    assert len(crashed) == 1
    assert "No heartbeat for 120 s" in crashed[0]
    # (The session's Prefect server also holds earlier tests' failed runs: they are told too, each once.)
    assert report.runs_alerted >= 1

    again = await (await run(watchdog, lookback_minutes=10)).aresult()
    assert (again.runs_alerted, again.failing, again.recovered) == (0, [], [])
    assert len(alerts(flow_env)) == len(texts)  # each told once
