"""`ats demo`: the whole system on this machine in about two minutes, nothing to configure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ats.cli.app import app, console, fail, settings_or_exit


@app.command("demo")
def demo(
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="Also write the final figures to this JSON file.")
    ] = None,
    seconds: Annotated[float, typer.Option(min=60, help="How long the market runs before the demo wraps up.")] = 110,
) -> None:
    """Run the whole mission on the simulated exchange: pools, scores, signals, entries with protection, TP1 with
    the stop moved to breakeven, TP2 and stop outcomes, and a final status. Leaves its records in the database.

    Starts an embedded PostgreSQL (unless ATS_DATABASE_URL is set), the simulated exchange on loopback, the monitor
    and the trading-cycle flow on the Prefect engine. Nothing leaves this machine: Telegram messages go to a local
    stand-in and are shown here. Logs: <data dir>/demo/demo.log and monitor.log.
    """
    settings_or_exit()
    from ats.cli.demo_runner import run_demo

    summary = run_demo(console, seconds=seconds, summary_json=summary_json)
    if not summary.mission_complete:
        console.print(
            "[yellow]the market did not show every outcome this time (see the statistics above); run it again[/]"
        )
    if summary.cycle_failures and not summary.trades:
        fail("every trading cycle failed; see <data dir>/demo/demo.log", code=1)
