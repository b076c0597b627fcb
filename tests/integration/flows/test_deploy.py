"""`prefect deploy --all` accepts prefect.yaml as it is: run the real command against the session's server."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists

ROOT = Path(__file__).resolve().parents[3]


def prefect(*args: str, api_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


async def test_prefect_deploy_creates_every_deployment(prefect_server: str) -> None:
    async with get_client() as client:
        with suppress(ObjectAlreadyExists):
            await client.create_work_pool(WorkPoolCreate(name="ats-process", type="process"))
    deployed = prefect("--no-prompt", "deploy", "--all", api_url=prefect_server)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    assert deployed.stdout.count("successfully created") == 9

    async with get_client() as client:
        cycle = await client.read_deployment_by_name("trading-cycle/hourly")
        reconcile = await client.read_deployment_by_name("reconcile/every-5-minutes")
    assert cycle.work_pool_name == "ats-process"
    assert cycle.entrypoint == "flows/trading_cycle.py:trading_cycle"
    assert cycle.concurrency_options is not None
    assert cycle.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert cycle.global_concurrency_limit is not None
    assert cycle.global_concurrency_limit.limit == 1
    assert [s.schedule.model_dump().get("cron") for s in cycle.schedules] == ["1 * * * *"]
    assert cycle.parameter_openapi_schema["properties"]["min_score"]["description"]
    assert reconcile.schedules[0].schedule.model_dump()["interval"] == timedelta(minutes=5)
