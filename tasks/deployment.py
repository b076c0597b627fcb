"""Set up a Prefect server for unattended operation (`ats deploy`), idempotently:

1. the `ats-process` work pool and its `emergency` queue (first priority: the close-all deployment runs from it);
2. every deployment of prefect.yaml, deployed from the application directory by Prefect's own
   `prefect --no-prompt deploy --all` (schedules, parameters, concurrency limits as the file says);
3. the automation that marks a flow run Crashed once its heartbeats stop (its process was killed, its host
   died), which frees the deployment's concurrency slot so the next scheduled run is not cancelled; flows send a
   heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (prefect.yaml sets 30 for the worker's runs).

Running it again updates what it created (an upgrade re-deploys the flows, a changed threshold updates the
automation) and never duplicates anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectAlreadyExists

WORK_POOL = "ats-process"
EMERGENCY_QUEUE = "emergency"
ZOMBIE_AUTOMATION = "ats: mark flow runs whose heartbeats stopped as Crashed"
DEPLOY_TIMEOUT_S = 600


class DeployError(RuntimeError):
    """The Prefect server could not be set up; the message says what failed."""


@dataclass(frozen=True, slots=True)
class DeployReport:
    work_pool: str
    emergency_queue: str
    deployments: list[str]  # flow/deployment names, as prefect deploy printed them
    automation: str  # "created" or "updated"


def zombie_automation(after_s: float) -> AutomationCore:
    """A flow run that went Running, or sent a heartbeat, and then nothing for `after_s` (no heartbeat, no final
    state) is Crashed.

    Prefect's own recipe starts counting at the first heartbeat only, so a run whose process died before sending
    one (killed within a second of starting) would stay Running forever; the server's own Running event starts
    the count here. The state change goes through Prefect's orchestration rules, which release the run's
    concurrency slot.
    """
    return AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description=(
            f"Created by `ats deploy`. A flow run that stops sending heartbeats for {after_s:g} s (its process or "
            "host died) is marked Crashed, so its concurrency slot frees and the watchdog reports it."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.Running", "prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=after_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {after_s:g} s: the run's process or host died (marked by ats deploy's "
                "automation)",
            )
        ],
    )


async def set_up_work_pool() -> None:
    async with get_client() as client:
        with contextlib.suppress(ObjectAlreadyExists):
            await client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
        try:
            await client.create_work_queue(name=EMERGENCY_QUEUE, work_pool_name=WORK_POOL, priority=1)
        except ObjectAlreadyExists:
            queue = await client.read_work_queue_by_name(EMERGENCY_QUEUE, work_pool_name=WORK_POOL)
            await client.update_work_queue(queue.id, priority=1, concurrency_limit=None, is_paused=False)


def deploy_all(project_dir: Path) -> list[str]:
    """`prefect --no-prompt deploy --all` in the application directory; the names of what it deployed."""
    if not (project_dir / "prefect.yaml").is_file():
        raise DeployError(f"no prefect.yaml in {project_dir}: run `ats deploy` from the application directory")
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=project_dir,
        capture_output=True,
        text=True,
        timeout=DEPLOY_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise DeployError(f"prefect deploy --all failed:\n{tail}")
    marker = "Deployment '"
    return [line.split(marker, 1)[1].split("'", 1)[0] for line in done.stdout.splitlines() if marker in line]


async def set_up_automations(zombie_after_s: float) -> str:
    """Create the zombie automation, or update it in place; returns which."""
    wanted = zombie_automation(zombie_after_s)
    async with get_client() as client:
        existing = await client.read_automations_by_name(ZOMBIE_AUTOMATION)
        if not existing:
            await client.create_automation(wanted)
            return "created"
        await client.update_automation(existing[0].id, wanted)
        for duplicate in existing[1:]:  # from a setup done by hand: one is enough
            await client.delete_automation(duplicate.id)
        return "updated"


async def check_server() -> None:
    async with get_client() as client:
        error = await client.api_healthcheck()
    if error is not None:
        raise DeployError(f"the Prefect server does not answer: {type(error).__name__}: {error}")


async def set_up_prefect(project_dir: Path, zombie_after_s: float) -> DeployReport:
    """All of it, in order; raises DeployError with what failed."""
    await check_server()
    await set_up_work_pool()
    deployed = await asyncio.to_thread(deploy_all, project_dir)
    automation = await set_up_automations(zombie_after_s)
    return DeployReport(WORK_POOL, EMERGENCY_QUEUE, deployed, automation)
