"""`ats deploy`: set up the Prefect server for unattended operation (work pool, deployments, automation)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, console, fail


@app.command("deploy")
def deploy(
    project_dir: Annotated[
        Path,
        typer.Option(
            help="The application directory: it holds prefect.yaml and flows/, and the worker runs flows from it.",
            file_okay=False,
        ),
    ] = Path(),
    zombie_after: Annotated[
        int,
        typer.Option(
            min=45,
            help="Seconds without a heartbeat (flows send one every 30 s) before a running flow run is marked "
            "Crashed and its concurrency slot freed.",
        ),
    ] = 120,  # four missed heartbeats at 30 s
) -> None:
    """Set up the Prefect server at PREFECT_API_URL to run the system by itself; safe to run again.

    Creates the ats-process work pool and its emergency queue (close-all runs from it first), deploys every
    deployment of prefect.yaml (schedules included) and creates the automation that marks runs whose process died
    as Crashed, so a killed worker never blocks the next trading cycle.
    """
    from prefect.settings import get_current_settings

    from tasks.deployment import DeployError, set_up_prefect

    api_url = get_current_settings().api.url
    if not api_url:
        fail("PREFECT_API_URL is not set: `ats deploy` sets up a running Prefect server (see the README)")
    directory = project_dir.resolve()
    try:
        report = asyncio.run(set_up_prefect(directory, zombie_after))
    except DeployError as exc:
        fail(str(exc), code=1)
    console.print(
        f"work pool [bold]{report.work_pool}[/] with queue [bold]{report.emergency_queue}[/] (first priority)"
    )
    console.print(f"deployed from {directory}: {', '.join(report.deployments) or 'nothing'}")
    console.print(f"automation {report.automation}: a run without a heartbeat for {zombie_after} s is marked Crashed")
    console.print(f"Prefect at {api_url} is ready; start a worker: prefect worker start --pool {report.work_pool}")
