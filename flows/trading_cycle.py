"""trading-cycle: build-pools -> factor-scan -> place-orders, each its own flow run, once per closed bar."""

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import State

from flows.build_pools import build_pools
from flows.factor_scan import factor_scan
from flows.parameters import Count, Score
from flows.place_orders import PlacementReport, place_orders
from tasks.flow_runs import ats_flow, run_link, timed_run_name
from tasks.market import PoolsOutcome, requested_symbols
from tasks.reports import ArtifactKey, artifact_key, placement_rows, placement_table_lines
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
    runs: dict[str, str] = field(default_factory=dict)  # subflow -> its run page (or id), in the order they ran
    signal_lines: list[str] = field(default_factory=list)  # "SYMBOL SIDE strength"
    placement_table: list[dict[str, Any]] = field(default_factory=list)  # tasks.reports.placement_rows


async def _subflow(call: Any) -> State[Any]:
    """Await a subflow called with return_state=True (Prefect types that call as the State itself)."""
    return await cast(Awaitable[State[Any]], call)


def _run_of(state: State[Any]) -> str:
    run_id = state.state_details.flow_run_id
    return run_link(run_id) if run_id is not None else "not recorded"


def cycle_markdown(report: CycleReport) -> str:
    """The cycle's own page: what each step did, the signals and placements, and a link to each step's run (whose
    artifacts hold the details: the pools' exclusions, the factor table)."""
    lines = [
        "# Trading cycle" + (" (dry run: nothing recorded, no order sent)" if report.dry_run else ""),
        "",
        f"1. Universe: {len(report.universe)} symbols"
        + (" (a pool fell back to its last good build)" if report.pools_fell_back else ""),
        f"2. Scan {report.scan_id}: {report.signals} signals"
        + (f": {', '.join(report.signal_lines)}" if report.signal_lines else ""),
        f"3. {'Would open' if report.dry_run else 'Opened'}: {', '.join(report.opened) or 'none'}",
    ]
    if report.no_monitor:
        lines += ["", f"> **Every entry refused:** {report.no_monitor}"]
    if report.placement_table:
        lines += ["", *placement_table_lines(report.placement_table)]
    if report.runs:
        lines += ["", "Runs (their artifacts hold the details):", ""]
        lines += [f"- {step}: {where}" for step, where in report.runs.items()]
    return "\n".join(lines)


@ats_flow("trading-cycle", timeout_s=20 * 60, flow_run_name=timed_run_name("cycle"))
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
        min_score: Strength (0-100) a signal needs; default ATS_MIN_SCORE (85).
        dry_run: Score and check the limits, but send no order (the artifacts show what would have been opened).
        symbols: Scan these symbols instead of building the pools, e.g. ["BTCUSDT", "SOLUSDT"]; one the exchange does
            not trade fails the run before it does anything.
        max_new_positions: Open at most this many positions in this cycle (the account limits apply anyway).
        require_monitor: Refuse every entry while no monitor runs (the run ends Completed, saying so).
    """
    fell_back, bar_requests = False, 0
    runs: dict[str, str] = {}
    if symbols:
        async with open_runtime() as rt:  # an unknown symbol fails the cycle before any subflow runs
            universe = await requested_symbols(rt, symbols)
    else:
        pools_state = await _subflow(build_pools(return_state=True))
        runs["build-pools"] = _run_of(pools_state)
        if not pools_state.is_completed():
            raise RunFailed(f"build-pools failed: {pools_state.message}")
        pools: PoolsOutcome = await pools_state.aresult()
        universe, fell_back, bar_requests = pools.symbols, pools.fell_back, pools.bars.requests
        if not universe:
            reasons = f"Elite: {pools.elite.reason}; Overlay: {pools.overlay.reason}"
            raise RunFailed(f"nothing to scan: both pools are empty ({reasons})")
    scan_state = await _subflow(factor_scan(symbols=universe, min_score=min_score, dry_run=dry_run, return_state=True))
    runs["factor-scan"] = _run_of(scan_state)
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
            unrecorded_signals=scan.signals if dry_run else None,
            return_state=True,
        )
    )
    runs["place-orders"] = _run_of(place_state)
    placed: PlacementReport | None = await place_state.aresult() if place_state.is_completed() else None
    refusals: dict[str, str] = {}
    opened: list[str] = []
    table: list[dict[str, Any]] = []
    if placed is not None:
        refusals = {d.signal.symbol: f"{d.code}: {d.reason}" for d in placed.decided.decisions if not d.approved}
        opened = [d.signal.symbol for d in placed.decided.decisions if d.approved] if dry_run else placed.opened
        table = placement_rows(placed.decided, placed.placements)
    no_monitor = placed.decided.no_monitor if placed is not None and placed.decided.decisions else None
    report = CycleReport(
        universe,
        fell_back,
        bar_requests,
        scan.scan_id,
        len(scan.signals),
        opened,
        refusals,
        dry_run,
        no_monitor,
        runs,
        [f"{s.symbol} {s.direction.value} {s.strength:.0f}" for s in scan.signals],
        table,
    )
    await acreate_markdown_artifact(
        cycle_markdown(report),
        key=artifact_key(ArtifactKey.CYCLE, dry_run=dry_run),
        description="What this cycle did: universe, signals, placements, and each step's run",
    )
    if placed is None:
        raise RunFailed(f"place-orders failed: {place_state.message}")
    if no_monitor:
        return refused(f"{len(placed.decided.decisions)} entries: {no_monitor}", report)
    return report
