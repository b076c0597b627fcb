"""`ats demo`: the whole system on this machine in about a minute, nothing to configure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, console, fail, settings_or_exit


@app.command("demo")
def demo(
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="Also write the final figures to this JSON file.")
    ] = None,
) -> None:
    """Run the whole mission on the simulated exchange: pools, scores, signals, long and short entries with
    protection, TP1 with the stop moved to breakeven, TP2 and stop outcomes, and a final status. Leaves its
    records in its own database.

    Starts its own embedded PostgreSQL (never yours, whatever ATS_DATABASE_URL says), a Prefect server, the
    simulated exchange on loopback, the monitor, and the trading-cycle flow on the Prefect engine. The market moves
    only when the system has reacted to its last move, so the story is the same on a fast or a busy machine. Nothing
    leaves this machine: Telegram messages go to a local stand-in and are shown here. Exits 1 if a part of the
    mission did not show. Logs: <data dir>/demo/demo.log and monitor.log.
    """
    settings_or_exit()
    from cli.demo_runner import run_demo

    summary = run_demo(console, summary_json=summary_json)
    if not summary.mission_complete:
        why = [*summary.missing(), *([summary.stalled] if summary.stalled else [])]
        fail(f"the demo did not show the whole mission ({'; '.join(why)}); see <data dir>/demo/demo.log", code=1)
