"""prefect.yaml is what `prefect deploy --all` reads: check it with Prefect's own models and conversions.

Every entrypoint imports and names the flow it claims, parameters exist in the flow's signature and pass its
schema, schedules convert the way the deploy command converts them, concurrency uses a known strategy, and
every flow in flows/ is deployed on the process work pool.
"""

from __future__ import annotations

import importlib
import inspect
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import Flow
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

ROOT = Path(__file__).resolve().parents[2]
RAW: dict[str, Any] = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS: list[dict[str, Any]] = RAW["deployments"]
IDS = [f"{d['flow_name']}/{d['name']}" for d in DEPLOYMENTS]


def _flow(entrypoint: str) -> Flow[Any, Any]:
    path, attribute = entrypoint.split(":")
    assert not Path(path).is_absolute(), f"{path} must be relative to the project"
    assert (ROOT / path).is_file(), f"{path} is not a file of the project"
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, attribute)
    assert isinstance(flow, Flow), f"{entrypoint} is not a Prefect flow"
    return flow


def test_the_deploy_command_accepts_the_file() -> None:
    model = PrefectYamlModel.model_validate(RAW)
    assert len(model.deployments) == len(DEPLOYMENTS) > 0
    assert len(set(IDS)) == len(IDS), "deployment names must be unique per flow"


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_entrypoint_imports_the_named_flow(deployment: dict[str, Any]) -> None:
    flow = _flow(deployment["entrypoint"])
    assert flow.name == deployment["flow_name"]
    assert flow.description, f"{flow.name} needs a docstring: the UI shows it"


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_parameters_match_the_flow_signature(deployment: dict[str, Any]) -> None:
    flow = _flow(deployment["entrypoint"])
    signature = inspect.signature(flow.fn)
    parameters = deployment.get("parameters") or {}
    unknown = set(parameters) - set(signature.parameters)
    assert not unknown, f"{flow.name} has no parameter {', '.join(sorted(unknown))}"
    required = {n for n, p in signature.parameters.items() if p.default is inspect.Parameter.empty}
    assert required <= set(parameters), f"{flow.name} needs {', '.join(sorted(required - set(parameters)))}"
    flow.validate_parameters(parameters)
    schema = flow.parameters.model_dump()["properties"]
    for name in signature.parameters:
        assert schema[name].get("description"), f"{flow.name}.{name} needs a description (Args: in the docstring)"


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_schedules_convert_as_the_deploy_command_converts_them(deployment: dict[str, Any]) -> None:
    for config in deployment.get("schedules") or []:
        converted = _schedule_config_to_deployment_schedule(config)
        schedule = converted["schedule"]
        assert isinstance(schedule, CronSchedule | IntervalSchedule)
        assert schedule.timezone == "UTC"
        assert converted["active"] is True


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=IDS)
def test_every_deployment_is_described_tagged_and_on_the_process_pool(deployment: dict[str, Any]) -> None:
    assert deployment["work_pool"]["name"] == "ats-process"
    assert deployment.get("description")
    assert "ats" in deployment.get("tags", [])
    limit = deployment.get("concurrency_limit")
    if limit is not None:
        assert limit["limit"] >= 1
        ConcurrencyLimitStrategy(limit["collision_strategy"])


def test_the_trading_cycle_runs_alone_a_minute_after_each_hour() -> None:
    (cycle,) = [d for d in DEPLOYMENTS if d["flow_name"] == "trading-cycle"]
    assert cycle["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    (schedule,) = cycle["schedules"]
    assert schedule["cron"] == "1 * * * *"
    (reconcile,) = [d for d in DEPLOYMENTS if d["flow_name"] == "reconcile"]
    converted = _schedule_config_to_deployment_schedule(reconcile["schedules"][0])["schedule"]
    assert isinstance(converted, IntervalSchedule)
    assert converted.interval == timedelta(minutes=5)


def test_every_flow_of_the_project_is_deployed() -> None:
    deployed = {d["flow_name"] for d in DEPLOYMENTS}
    found = set()
    for path in sorted((ROOT / "flows").glob("*.py")):
        module = importlib.import_module(f"flows.{path.stem}")
        found |= {
            obj.name for obj in vars(module).values() if isinstance(obj, Flow) and obj.fn.__module__ == module.__name__
        }
    assert found == deployed
