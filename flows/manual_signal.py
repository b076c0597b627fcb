"""manual-signal: trade one symbol now, through the same scoring, risk limits and placement as the cycle."""

from dataclasses import replace
from typing import Literal

from prefect.artifacts import acreate_markdown_artifact

from ats.domain import Band, Direction
from ats.placement import Candidate
from flows.parameters import Score
from flows.place_orders import PlacementReport, place
from tasks.account import send_notifications
from tasks.flow_runs import ats_flow
from tasks.market import CONTEXT_SYMBOLS, load_recent_bars, refresh_bars, requested_symbols, sync_time
from tasks.reports import ArtifactKey, artifact_key, placement_markdown
from tasks.runtime import RunFailed, open_runtime, refused, run_logger
from tasks.scanning import record_manual_signal, score_universe


@ats_flow("manual-signal", timeout_s=5 * 60, flow_run_name="trade {symbol}")
async def manual_signal(
    symbol: str,
    side: Literal["LONG", "SHORT"] | None = None,
    min_score: Score | None = None,
    dry_run: bool = False,
    require_monitor: bool = True,
) -> PlacementReport:
    """Open a position on one symbol now, if the factor model and the risk limits agree.

    The symbol is scored like in a scan. Without a side, the model's direction is taken; with one, the strength
    the model gives that side must reach min_score (the other side scores 0, so trading against the model needs
    min_score 0). Every risk limit applies, and the entry gets its stop, TP1 and TP2 like any other.

    Args:
        symbol: The perpetual to trade, e.g. "SOLUSDT".
        side: LONG or SHORT; default: the side the model finds.
        min_score: Strength (0-100) the model must give that side; default ATS_MIN_SCORE (85); 0 trades regardless.
        dry_run: Score and check the limits, but record nothing and send no order.
        require_monitor: Refuse while no monitor runs (the run ends Completed, saying so); untick to trade anyway.
    """
    async with open_runtime() as rt:
        (name,) = await requested_symbols(rt, [symbol])
        threshold = rt.settings.min_score if min_score is None else min_score
        now = await sync_time(rt)
        wanted = list(dict.fromkeys([name, *CONTEXT_SYMBOLS]))
        await refresh_bars(rt, wanted, now)
        scored = await score_universe(rt, load_recent_bars(rt, wanted, now), [name], now)
        row = scored.result.row(name)
        if not row.scored:
            raise RunFailed(f"{name} cannot be scored: {row.insufficient}")
        direction = Direction(side) if side else row.direction
        if direction is None:
            raise RunFailed(f"the model sees no direction for {name} (neutral); pass a side and min_score 0 to force")
        strength = row.strength if row.direction is direction else 0.0
        if strength < threshold:
            raise RunFailed(
                f"{name} {direction.value}: the model gives strength {strength:.0f}, below min_score {threshold:g}"
            )
        signal = replace(row, direction=direction, strength=strength, band=Band.of(strength)).to_signal()
        model = f"{row.direction.value} {row.strength:.1f}" if row.direction else "neutral"
        run_logger().info(f"{name} {direction.value}: strength {strength:.1f} (the model: {model})")
        try:
            if dry_run:
                report = await place(rt, signal_ids=[], unsaved=[Candidate(0, signal, "manual")], dry_run=True)
            else:
                signal_id = await record_manual_signal(rt, signal)
                report = await place(
                    rt, signal_ids=[signal_id], min_score=0.0, max_new=1, require_monitor=require_monitor
                )
        finally:
            if not dry_run:
                await send_notifications(rt)
        await acreate_markdown_artifact(
            placement_markdown(report.decided, report.placements),
            key=artifact_key(ArtifactKey.MANUAL_SIGNAL, dry_run=dry_run),
            description=f"Manual {direction.value} on {name}: what was decided and placed"
            + (" (dry run: nothing recorded, no order sent)" if dry_run else ""),
        )
        if report.failed:
            details = "; ".join(f"{s}: {why}" for s, why in report.failed.items())
            raise RunFailed(f"the entry failed: {details}")
        if report.decided.no_monitor:
            return refused(report.decided.no_monitor, report)
        refusals = [d for d in report.decided.decisions if not d.approved and d.signal.symbol == name]
        if refusals:
            raise RunFailed(f"refused: {refusals[0].code}: {refusals[0].reason}")
        return report
