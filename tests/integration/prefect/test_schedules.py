"""Unattended operation proven by running it: a real Prefect server (PostgreSQL-backed, a fast scheduler loop),
`ats deploy` from prefect.yaml, a real process worker running the real trading cycle against the simulated
exchange.

The first act shows what the last round lacked: the scheduler creates the scheduled runs of every scheduled
deployment, and a worker picks one up and runs it to Completed. The second kills the worker (and the run's
process with it) in the middle of a cycle: the zombie automation marks the run Crashed, which frees the
deployment's concurrency slot, the next scheduled cycle runs to Completed, and the watchdog tells of the dead run.

Real time passes here (the scheduler, heartbeats and automations are the server's), bounded by generous timeouts;
nothing depends on how fast the machine is beyond those bounds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast
from uuid import UUID

import httpx
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.asyncutils import run_coro_as_sync
from sqlalchemy import select

from db import migrate
from db.models import NotificationRow
from db.session import Database
from sim.server import SimConfig, SimServerThread
from tests.fixtures.db import DatabaseFactory

# The limit covers the server start and real time passing; the group puts it first (tests/conftest.py), so under
# xdist it runs beside the rest of the suite rather than after it.
pytestmark = [pytest.mark.timeout(360), pytest.mark.xdist_group("prefect-stack")]

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")
SCHEDULED = (
    "trading-cycle/hourly-trading",
    "reconcile/repair-every-5-minutes",
    "daily-report/report-after-midnight",
    "account-status/hourly-snapshot",
)
CYCLE_EVERY_S = 15  # the trading cycle's schedule in these tests (hourly in prefect.yaml)
ZOMBIE_AFTER_S = 45  # heartbeats every 30 s: a run silent for 45 s is dead
SERVER_START_S = 120.0
WORKERS = ("cycle-worker", "killed-worker", "replacement-worker")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "PREFECT_"))}


@dataclass
class Stack:
    api_url: str
    sim: SimServerThread
    database: Database
    workdir: Path
    worker_env: dict[str, str]

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        """`prefect worker start` in its own process group (killing the group kills its flow runs too)."""
        log = (self.workdir / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "ats-process", "--name", name],
            env=self.worker_env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` (from /proc: a flow run's process may sit in a session of its own)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _kill_tree(process: subprocess.Popen[Any]) -> None:
    """SIGKILL to the worker and every process under it at once: nothing gets to report anything, as when the
    host dies (a worker killed alone lets its run's process report Crashed itself)."""
    for pid in [process.pid, *_descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)


def _stop(process: subprocess.Popen[Any], sig: int = signal.SIGINT) -> None:
    """Stop as the services do (a worker stops at once on SIGINT; the server on either)."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def stack(database_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A Prefect server as `prefect server start` runs it, set up by `ats deploy`; the sim; the system's database."""
    workdir = tmp_path_factory.mktemp("prefect-stack")
    workdir.chmod(0o755)
    prefect_db = database_factory.create_prefect()
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server_env = _base_env() | {
        "PREFECT_HOME": str(workdir / "server-home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
        "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
        "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "8",  # a few upcoming runs per deployment are plenty here
        "PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S",
        "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
        # Services nothing here relies on, off to spare the test machine's CPU.
        "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
        "PREFECT_API_EVENTS_STREAM_OUT_ENABLED": "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        cwd=workdir,
        stdout=(workdir / "server.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    sim = SimServerThread(SimConfig(seed=7, mode="manual", port=0))
    database = Database(database_factory.create())
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (workdir / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Prefect server did not start in time"
            time.sleep(0.5)
        sim.start()
        migrate.upgrade(database.engine)
        worker_env = _base_env() | {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(workdir / "worker-home"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "ATS_VENUE": "sim",
            "ATS_EXCHANGE__REST_URL": sim.rest_url,
            "ATS_EXCHANGE__WS_URL": sim.ws_url,
            "ATS_EXCHANGE__TIMEOUT_S": "3",
            "ATS_DATABASE_URL": database.engine.url.render_as_string(hide_password=False),
            "ATS_DATA_DIR": str(workdir / "ats-data"),
            "PYTHONPATH": str(ROOT),
        }
        deployed = subprocess.run(
            [sys.executable, "-c", "from cli import main; main()", "deploy", "--zombie-after", str(ZOMBIE_AFTER_S)],
            env=worker_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        for declared in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]:
            assert f"{declared['flow_name']}/{declared['name']}" in deployed.stdout, deployed.stdout
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield Stack(api_url, sim, database, workdir, worker_env)
    finally:
        _stop(server)
        sim.stop()
        database.dispose()


async def _deployment_id(name: str) -> UUID:
    async with get_client() as client:
        return (await client.read_deployment_by_name(name)).id


async def _runs(deployment: UUID) -> list[FlowRun]:
    async with get_client() as client:
        return await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=200,
        )


async def _events_of(run_id: UUID) -> list[tuple[str, str, str, str | None]]:
    """What the server heard about a flow run (for a failure's message)."""
    async with get_client() as client:
        response = await client._client.post(
            "/events/filter",
            json={"filter": {"any_resource": {"id": [f"prefect.flow-run.{run_id}"]}}, "limit": 50},
        )
    return [(e["occurred"], e["event"], e["id"], e.get("follows")) for e in response.json().get("events", [])]


def _wait_for(what: str, check: Callable[[], Coroutine[Any, Any, T | None]], timeout_s: float, stack: Stack) -> T:
    """Poll `check()` (an async callable) until it returns something truthy; fail with the logs when it does not."""
    deadline = time.monotonic() + timeout_s
    while True:
        found: T | None = run_coro_as_sync(check())
        if found:
            return found
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n}\n{stack.log_tail(n)}" for n in ("server", *WORKERS))
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}\n{logs}")
        time.sleep(0.5)


LIGHT_CYCLE = {"symbols": ["BTCUSDT", "ETHUSDT"]}  # what the schedule runs here: two symbols, not the pools


def _only_the_cycle_scheduled_every(seconds: int) -> None:
    """The trading cycle every few seconds, on two symbols; the other schedules paused (their runs are not what is
    tested here, and each run costs the test machine seconds of CPU)."""

    async def apply() -> None:
        async with get_client() as client:
            for name in (*SCHEDULED, "watchdog/watch-every-minute"):
                deployment = await client.read_deployment_by_name(name)
                for schedule in deployment.schedules:
                    if name == "trading-cycle/hourly-trading":
                        await client.update_deployment_schedule(
                            deployment.id,
                            schedule.id,
                            schedule=IntervalSchedule(interval=timedelta(seconds=seconds)),
                            parameters=LIGHT_CYCLE,
                        )
                    else:
                        await client.update_deployment_schedule(deployment.id, schedule.id, active=False)

    run_coro_as_sync(apply())


def test_schedules_fire_and_a_killed_worker_never_blocks_the_next_cycle(stack: Stack) -> None:
    """One test, two acts on one server (starting it costs more than either act)."""
    the_scheduler_creates_the_runs_and_a_worker_completes_a_scheduled_cycle(stack)
    a_killed_worker_leaves_no_run_running_and_the_next_scheduled_cycle_runs(stack)


def the_scheduler_creates_the_runs_and_a_worker_completes_a_scheduled_cycle(stack: Stack) -> None:
    async def scheduled_everywhere() -> bool:
        for name in (*SCHEDULED, "watchdog/watch-every-minute"):
            runs = await _runs(await _deployment_id(name))
            if not any(r.auto_scheduled and r.state_type is StateType.SCHEDULED for r in runs):
                return False
        return True

    assert _wait_for("scheduled runs of every scheduled deployment", scheduled_everywhere, 60, stack)

    async def set_up() -> None:
        """What `ats deploy` made of prefect.yaml: deployments as declared, the queue, the automation."""
        async with get_client() as client:
            deployments = await client.read_deployments()
            cycle = await client.read_deployment_by_name("trading-cycle/hourly-trading")
            reconcile = await client.read_deployment_by_name("reconcile/repair-every-5-minutes")
            close_all = await client.read_deployment_by_name("close-all/emergency-close-all")
            queue = await client.read_work_queue_by_name("emergency", work_pool_name="ats-process")
            automations = await client.read_automations_by_name(
                "ats: mark flow runs whose heartbeats stopped as Crashed"
            )
        assert len(deployments) == len(yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"])
        assert cycle.work_pool_name == "ats-process"
        assert cycle.entrypoint == "flows/trading_cycle.py:trading_cycle"
        assert cycle.concurrency_options is not None
        assert cycle.concurrency_options.collision_strategy.value == "CANCEL_NEW"
        assert cycle.global_concurrency_limit is not None
        assert cycle.global_concurrency_limit.limit == 1
        assert [s.schedule.model_dump().get("cron") for s in cycle.schedules] == ["1 * * * *"]
        assert cycle.parameter_openapi_schema is not None
        assert cycle.parameter_openapi_schema["properties"]["require_monitor"]["description"]
        assert reconcile.schedules[0].schedule.model_dump()["interval"] == timedelta(minutes=5)
        assert (close_all.work_queue_name, queue.priority) == ("emergency", 1)
        assert [a.enabled for a in automations] == [True]

    run_coro_as_sync(set_up())

    _only_the_cycle_scheduled_every(CYCLE_EVERY_S)
    cycle = run_coro_as_sync(_deployment_id("trading-cycle/hourly-trading"))
    worker = stack.start_worker("cycle-worker")
    try:

        async def completed_cycle() -> FlowRun | None:
            done = [r for r in await _runs(cycle) if r.auto_scheduled and r.state_type is StateType.COMPLETED]
            return done[0] if done else None

        done = _wait_for("a scheduled trading cycle Completed by the worker", completed_cycle, 120, stack)
        assert done.state is not None
        # No monitor runs here: the cycle completes and says every entry was refused (no red Failed).
        assert done.state.message is None or done.state.message.startswith("refused: ")
    finally:
        _stop(worker)
        _only_the_cycle_scheduled_every(3600)  # nothing more to run

        async def idle() -> bool:
            return not [r for r in await _runs(cycle) if r.state_type in (StateType.PENDING, StateType.RUNNING)]

        _wait_for("the cycle's runs to end", idle, 60, stack)


def a_killed_worker_leaves_no_run_running_and_the_next_scheduled_cycle_runs(stack: Stack) -> None:
    # The victim is a quick run (as from the UI): the scheduler inserts the runs of a seconds-apart schedule with
    # no event of their own, so Prefect holds their first events back for 15 minutes, and the automation would
    # wait as long; hourly runs are inserted an hour ahead and are not affected.
    _only_the_cycle_scheduled_every(3600)
    cycle = run_coro_as_sync(_deployment_id("trading-cycle/hourly-trading"))
    # The exchange's clock hangs (each request times out and is retried): the cycle stays Running for a while.
    stack.sim.server.faults.add("latency", path="/fapi/v1/time", latency_ms=60_000)  # type: ignore[union-attr]
    worker = stack.start_worker("killed-worker")
    try:
        victim = cast(FlowRun, run_deployment("trading-cycle/hourly-trading", parameters=LIGHT_CYCLE, timeout=0))

        async def running() -> bool:
            async with get_client() as client:
                return (await client.read_flow_run(victim.id)).state_type is StateType.RUNNING

        _wait_for("the cycle Running", running, 120, stack)
    finally:
        _kill_tree(worker)
    stack.sim.server.faults.clear()  # type: ignore[union-attr]
    killed_at = time.monotonic()
    _only_the_cycle_scheduled_every(CYCLE_EVERY_S)

    replacement = stack.start_worker("replacement-worker")
    try:

        async def crashed() -> FlowRun | None:
            async with get_client() as client:
                run = await client.read_flow_run(victim.id)
            return run if run.state_type is StateType.CRASHED else None

        try:
            dead = _wait_for("the killed run marked Crashed", crashed, ZOMBIE_AFTER_S + 60, stack)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nevents of the run: {run_coro_as_sync(_events_of(victim.id))}") from None
        assert dead.state is not None
        assert dead.state.message is not None
        assert "No heartbeat" in dead.state.message
        assert time.monotonic() - killed_at < ZOMBIE_AFTER_S + 60

        async def later_cycle_completed() -> FlowRun | None:
            later = [
                r
                for r in await _runs(cycle)
                if r.auto_scheduled
                and r.state_type is StateType.COMPLETED
                and r.start_time is not None
                and dead.end_time is not None
                and r.start_time > dead.end_time
            ]
            return later[0] if later else None

        assert _wait_for("the next scheduled cycle Completed", later_cycle_completed, 120, stack)

        # The killed run ran no hook of its own: the watchdog deployment finds it Crashed and tells of it, and of
        # the scheduled cycles the concurrency limit dropped while the dead run held the slot.
        watched = cast(FlowRun, run_deployment("watchdog/watch-every-minute", timeout=120))
        assert watched.state is not None
        assert watched.state.is_completed(), watched.state.message
    finally:
        _stop(replacement)
    with stack.database.session() as session:
        texts = session.scalars(select(NotificationRow.text).where(NotificationRow.kind == "alert")).all()
    crashed_alerts = [t for t in texts if t.startswith("⚠️ <b>Alert</b>: trading-cycle crashed") and str(victim.id) in t]
    assert len(crashed_alerts) == 1, texts
    assert "No heartbeat" in crashed_alerts[0]
    assert any(t.startswith("⚠️ <b>Alert</b>: trading-cycle was cancelled") for t in texts), texts
