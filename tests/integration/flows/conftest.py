"""The flows on the real Prefect engine against the simulated exchange (its own thread) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import pytest
from prefect import Task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import Artifact, FlowRun, State, TaskRun
from sqlalchemy import select

import tasks.market
import tasks.placement
from db.models import PositionRow
from db.session import Database
from sim.server import SimControl, SimServer, SimServerThread
from tasks.runtime import close_databases, retry_when_transient
from tests.fixtures.monitor import MonitorStandIn

BAR_S = 3600


@dataclass
class FlowEnv:
    """The simulated exchange, its admin client and the database the flows use."""

    sim: SimServerThread
    database: Database
    monitor: MonitorStandIn

    @property
    def control(self) -> SimControl:
        return self.sim.control

    @property
    def server(self) -> SimServer:
        assert self.sim.server is not None
        return self.sim.server

    def open_positions(self) -> list[PositionRow]:
        with self.database.session() as session:
            return list(
                session.scalars(select(PositionRow).where(PositionRow.closed_at.is_(None)).order_by(PositionRow.id))
            )

    def entry_orders(self, client_order_id: str) -> int:
        """How many orders the exchange holds with this client id (filled ones included)."""
        return sum(1 for o in self.server.engine.orders.values() if o.client_order_id == client_order_id)


@pytest.fixture(autouse=True)
def _quick_exchange_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks that talk to the exchange retry after 1, 5 and 20 s in production; here after a tenth of a second."""
    for module in (tasks.market, tasks.placement):
        for value in vars(module).values():
            if isinstance(value, Task) and value.retry_condition_fn is retry_when_transient:
                monkeypatch.setattr(value, "retry_delay_seconds", [0.1] * value.retries)


@pytest.fixture
def exchange_env(
    sim_thread: SimServerThread,
    session_database: Database,
    database_url_env: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FlowEnv]:
    """ATS_* pointing at the sim and an emptied database; the sim's clock kept away from a bar close; a monitor
    stand-in leading the account (entries are refused without one: tests/integration/flows/test_guard.py)."""
    database_url_env()
    monkeypatch.setenv("ATS_EXCHANGE__REST_URL", sim_thread.rest_url)
    monkeypatch.setenv("ATS_EXCHANGE__WS_URL", sim_thread.ws_url)
    monkeypatch.setenv("ATS_EXCHANGE__TIMEOUT_S", "2")
    # The sim's market only moves when told to: a test that ran across a bar close would see the newest bar as
    # missing. Start well inside a bar.
    server_time = int(sim_thread.control.state()["server_time"])
    left_s = BAR_S - (server_time // 1000) % BAR_S
    if left_s < 300:
        sim_thread.control.advance(left_s + 30)
    close_databases()
    with MonitorStandIn(session_database) as monitor:
        yield FlowEnv(sim_thread, session_database, monitor)
    close_databases()


@pytest.fixture
def flow_env(prefect_server: str, exchange_env: FlowEnv) -> FlowEnv:
    """`exchange_env` with the session's Prefect server: flows run on the real engine."""
    return exchange_env


async def run(flow: Any, **parameters: Any) -> State[Any]:
    """Run a flow on the Prefect engine and return its final state (never raises for a failed run)."""
    return await cast(Awaitable[State[Any]], flow(**parameters, return_state=True))


def run_id(state: State[Any]) -> UUID:
    """The id of the flow run that ended in `state` (a flow run's final state always names it)."""
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    return flow_run_id


async def subflow_runs(parent: UUID) -> dict[str, FlowRun]:
    """The child flow runs of a run, by flow name."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent]))
        )
        names = {f.id: f.name for f in [await client.read_flow(r.flow_id) for r in runs]}
    return {names[r.flow_id]: r for r in runs}


async def artifacts_of(flow_run_id: UUID) -> list[Artifact]:
    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


async def task_runs_of(flow_run_id: UUID) -> list[TaskRun]:
    async with get_client() as client:
        return await client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
        )
