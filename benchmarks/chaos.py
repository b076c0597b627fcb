"""Chaos benchmark: every fault scenario of tests/chaos, many runs each, against the simulated exchange on
loopback (its own thread), the local PostgreSQL and the monitor (in this process, or the real `ats monitor`
process for the kill scenarios). Prints one JSON object per scenario, then a summary line.

Figures per scenario (see tests/chaos/bench.py): runs, faults_injected, duplicates, unprotected_seconds (max and
total), lost_events, false_alerts, errors, limits_exceeded, orders_after_vanish and, for the daily loss cap
scenarios, day_loss_usdt (the worst day against the limit and the slippage). The promise: duplicates =
lost_events = false_alerts = limits_exceeded = orders_after_vanish = 0, unprotected max under 2 s, and no day
lost more than the limit plus what its fills slipped.

Run from the repository root: `.venv/bin/python benchmarks/chaos.py [--runs 50] [--only NAME ...]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db import migrate
from db.session import Database
from tests.chaos.bench import Figures, Scenario, run_scenario
from tests.chaos.scenarios import SCENARIOS
from tests.fixtures.db import DEFAULT_SERVER, DatabaseFactory


async def _run(database: Database, scenarios: list[Scenario], runs: int) -> list[Figures]:
    results = []
    for index, scenario in enumerate(scenarios):
        figures = await run_scenario(database, scenario, runs=runs, seed=1000 + index)
        print(json.dumps(figures.as_json()), flush=True)
        results.append(figures)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="runs per scenario (default 50)")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names (default: all)")
    parser.add_argument("--markdown", action="store_true", help="also print the README's table at the end")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the faults make the system warn on purpose; the figures tell
    wanted = set(args.only) if args.only else None
    scenarios = [s for s in SCENARIOS if wanted is None or s.name in wanted]
    factory = DatabaseFactory(os.environ.get("ATS_TEST_DATABASE_URL", DEFAULT_SERVER))
    url = factory.create()
    database = Database(url)
    try:
        migrate.upgrade(database.engine)
        results = asyncio.run(_run(database, scenarios, args.runs))
    finally:
        database.dispose()
        factory.drop_all()
    held = all(
        f.duplicates == 0
        and f.lost_events == 0
        and f.false_alerts == 0
        and f.errors == 0
        and f.unprotected_seconds_max < 2.0
        and f.limits_exceeded == 0
        and f.orders_after_vanish == 0
        and f.day_loss_beyond_slippage_max <= 0
        for f in results
    )
    summary = {
        "summary": "every promise held" if held else "a promise failed",
        "scenarios": len(results),
        "runs": sum(f.runs for f in results),
        "errors": sum(f.errors for f in results),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(summary), flush=True)
    if args.markdown:
        print(markdown_table(results))


def markdown_table(results: list[Figures]) -> str:
    """The README's table: one row per scenario; then the daily loss cap's days, for the scenarios that have them."""
    lines = [
        "| scenario | runs | faults | duplicates | unprotected s (max / total) | reaction s (median / max) "
        "| lost events | false alerts | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in results:
        lines.append(
            f"| {f.scenario} | {f.runs} | {f.faults_injected} | {f.duplicates} "
            f"| {f.unprotected_seconds_max:.2f} / {f.unprotected_seconds_total:.2f} "
            f"| {f.reaction_seconds_median:.2f} / {f.reaction_seconds_max:.2f} "
            f"| {f.lost_events} | {f.false_alerts} | {f.errors} |"
        )
    capped = [f for f in results if f.day_losses]
    if capped:
        lines += [
            "",
            "| scenario | days | positions (max) | limits exceeded | day's loss USDT (max) | limit "
            "| slippage USDT (max) | loss - limit - slippage (max) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for f in capped:
            day = f.as_json()["day_loss_usdt"]
            lines.append(
                f"| {f.scenario} | {len(f.day_losses)} | {day['positions_max']} | {f.limits_exceeded} "
                f"| {day['max']:.2f} | {day['limit']:g} | {day['slippage_max']:.2f} "
                f"| {day['beyond_slippage_max']:.3f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
