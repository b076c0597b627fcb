"""`ats monitor`: the long-lived worker that protects open positions between trading cycles."""

from __future__ import annotations

import asyncio

import typer

from cli.app import VenueOption, app, fail, settings_or_exit


@app.command("monitor")
def monitor(
    health_host: str | None = typer.Option(
        None, "--health-host", help="Interface of /livez, /readyz and /metrics (default: ATS_MONITOR__HEALTH_HOST)."
    ),
    health_port: int | None = typer.Option(
        None,
        "--health-port",
        help="Port of the health endpoint; 0 picks a free one (default: ATS_MONITOR__HEALTH_PORT).",
    ),
    venue: VenueOption = None,
) -> None:
    """Watch open positions in real time: fills, stops, take-profits, supervision, reconciliation.

    Run one per account; a second instance waits as a hot standby and takes over if the first dies.
    Stop with Ctrl+C or SIGTERM: protective orders stay on the exchange.
    """
    from monitor.app import StartupError, serve

    settings = settings_or_exit(venue=venue)

    from tasks.operations import RuntimeOperations

    try:
        asyncio.run(serve(settings, health_host=health_host, health_port=health_port, operations=RuntimeOperations))
    except StartupError as exc:
        fail(str(exc), code=1)
