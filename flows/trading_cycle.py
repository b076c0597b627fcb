"""trading-cycle: build-pools -> factor-scan -> place-orders, each its own flow run, once per closed bar."""

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from flows.build_pools import build_pools
from flows.factor_scan import factor_scan
from flows.parameters import Count, Score
from flows.place_orders import PlacementReport, place_orders
from tasks.flow_runs import ats_flow
from tasks.market import PoolsOutcome, requested_symbols
from tasks.runtime import RunFailed, open_runtime, refused
from tasks.scanning import ScanOutcome


@dataclass(frozen=True, slots=True)
class CycleReport:
    universe: list[str]
    pools_fell_back: bool
    bar_requests: int  # klines requests this cycle (0 when every bar was already stored)
    scan_id: int
    signals: int
    opened: list[str]
    refused: dict[str, str]  # symbol -> reason
    dry_run: bool
    no_monitor: str | None = None  # every entry was refused: no monitor would protect it


async def _subflow(call: Any) -> State[Any]:
    """Await a subflow called with return_state=True (Prefect types that call as the State itself)."""
    return await cast(Awaitable[State[Any]], call)


def cycle_markdown(report: CycleReport) -> str:
    lines = [
        "# Trading cycle" + (" (dry run)" if report.dry_run else ""),
        "",
        f"1. Universe: {len(report.universe)} symbols"
        + (" (a pool fell back to its last good build)" if report.pools_fell_back else ""),
        f"2. Scan {report.scan_id}: {report.signals} signals",
        f"3. Opened: {', '.join(report.opened) or 'none'}" + (" (would open)" if report.dry_run else ""),
    ]
    if report.refused:
        lines += ["", "| refused | why |", "|---|---|"]
        lines += [f"| {symbol} | {why} |" for symbol, why in sorted(report.refused.items())]
    return "\n".join(lines)


def cycle_run_name() -> str:
    """Runs named by their time (UTC), so the run list reads as a timeline."""
    dry = " (dry run)" if flow_run.parameters.get("dry_run") else ""
    return f"cycle {datetime.now(UTC):%Y-%m-%d %H:%M}{dry}"


@ats_flow("trading-cycle", timeout_s=20 * 60, flow_run_name=cycle_run_name)
async def trading_cycle(
    min_score: Score | None = None,
    dry_run: bool = False,
    symbols: list[str] | None = None,
    max_new_positions: Count | None = None,
    require_monitor: bool = True,
) -> CycleReport:
    """One trading cycle after a bar closed: build the pools, score them, open the positions that pass the limits.

    Runs three subflows, each with its own run page and artifacts: build-pools (exchange info, tickers, missing
    closed bars, Elite and Overlay pools), factor-scan (the 10+1 factor model over the universe, signals) and
    place-orders (risk limits, entries with stop, TP1 and TP2). If one fails, the cycle stops there and fails
    with that subflow's reason.

    Args:
        min_score: Strength (0-100) a signal needs; default ATS_MIN_SCORE (75).
        dry_run: Score and check the limits, but send no order (the artifacts show what would have been opened).
        symbols: Scan these symbols instead of building the pools, e.g. ["BTCUSDT", "SOLUSDT"]; one the exchange does
            not trade fails the run before it does anything.
        max_new_positions: Open at most this many positions in this cycle (the account limits apply anyway).
        require_monitor: Refuse every entry while no monitor runs (the run ends Completed, saying so).
    """
    fell_back, bar_requests = False, 0
    if symbols:
        async with open_runtime() as rt:  # an unknown symbol fails the cycle before any subflow runs
            universe = await requested_symbols(rt, symbols)
    else:
        pools_state = await _subflow(build_pools(return_state=True))
        if not pools_state.is_completed():
            raise RunFailed(f"build-pools failed: {pools_state.message}")
        pools: PoolsOutcome = await pools_state.aresult()
        universe, fell_back, bar_requests = pools.symbols, pools.fell_back, pools.bars.requests
        if not universe:
            reasons = f"Elite: {pools.elite.reason}; Overlay: {pools.overlay.reason}"
            raise RunFailed(f"nothing to scan: both pools are empty ({reasons})")
    scan_state = await _subflow(factor_scan(symbols=universe, min_score=min_score, return_state=True))
    if not scan_state.is_completed():
        raise RunFailed(f"factor-scan failed: {scan_state.message}")
    scan: ScanOutcome = await scan_state.aresult()
    place_state = await _subflow(
        place_orders(
            signal_ids=scan.signal_ids,
            min_score=min_score,
            max_new_positions=max_new_positions,
            dry_run=dry_run,
            require_monitor=require_monitor,
            return_state=True,
        )
    )
    placed: PlacementReport | None = await place_state.aresult() if place_state.is_completed() else None
    refusals: dict[str, str] = {}
    opened: list[str] = []
    if placed is not None:
        refusals = {d.signal.symbol: f"{d.code}: {d.reason}" for d in placed.decided.decisions if not d.approved}
        opened = [d.signal.symbol for d in placed.decided.decisions if d.approved] if dry_run else placed.opened
    no_monitor = placed.decided.no_monitor if placed is not None and placed.decided.decisions else None
    report = CycleReport(
        universe, fell_back, bar_requests, scan.scan_id, len(scan.signal_ids), opened, refusals, dry_run, no_monitor
    )
    await acreate_markdown_artifact(cycle_markdown(report), description="What this cycle did")
    if placed is None:
        raise RunFailed(f"place-orders failed: {place_state.message}")
    if no_monitor:
        return refused(f"{len(placed.decided.decisions)} entries: {no_monitor}", report)
    return report
