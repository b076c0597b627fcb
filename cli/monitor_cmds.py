"""`ats monitor`: the long-lived worker that protects open positions between trading cycles."""

from __future__ import annotations

import asyncio
import logging

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

    # The Telegram commands' operations come from tasks/, which imports Prefect, and Prefect's logging setup on import
    # replaces the root logger's handlers: imported after our logging, it silenced the monitor's whole log. So it
    # comes first, and the monitor (no flow run) keeps only its own handler (else every line would print twice).
    from tasks.operations import RuntimeOperations

    settings = settings_or_exit(venue=venue)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if not getattr(h, "_ats_handler", False)]:
        root.removeHandler(handler)

    try:
        asyncio.run(serve(settings, health_host=health_host, health_port=health_port, operations=RuntimeOperations))
    except StartupError as exc:
        fail(str(exc), code=1)
