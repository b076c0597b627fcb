"""The backtest flow on the real Prefect engine and PostgreSQL: its report and trades as keyed artifacts, and a
readable failure when nothing is stored for what was asked."""

from __future__ import annotations

from collections.abc import Callable

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from db import history
from db.session import Database
from flows.backtest import backtest
from tasks.runtime import close_databases
from tests.integration.flows.conftest import artifacts_of, run
from tests.unit.backtest.series import walk


async def test_the_flow_publishes_the_report_and_the_trades_and_explains_a_refusal(
    prefect_server: str, session_database: Database, database_url_env: Callable[[], str]
) -> None:
    database_url_env()
    close_databases()
    with session_database.session() as session:
        for n, (symbol, price) in enumerate({"BTCUSDT": 90_000.0, "AAAUSDT": 2.0}.items()):
            history.store_bars(session, walk(symbol, 900, n, price), source="file")

    state = await run(backtest, start="2025-01-25", end="2025-02-07", min_score=60.0, random_draws=2)
    assert state.is_completed(), state.message
    assert state.state_details.flow_run_id is not None
    keys = {a.key for a in await artifacts_of(state.state_details.flow_run_id)}
    assert {"backtest-report", "backtest-trades"} <= keys
    async with get_client() as client:
        (report,) = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["backtest-report"])), limit=1
        )
    assert "| model |" in str(report.data)
    assert "24h momentum" in str(report.data)

    refused = await run(backtest, start="2025-01-25", end="2025-02-07", symbols="ZZZUSDT")
    assert refused.is_failed()
    assert "ZZZUSDT" in (refused.message or "")
    assert "ats data import" in (refused.message or "")
    close_databases()
