"""reconcile: compare the recorded positions with the exchange (the truth) and repair the difference."""

from dataclasses import dataclass

from prefect.artifacts import acreate_markdown_artifact

from ats.reconcile import ReconcileReport, reconcile
from ats.universe import HOUR_MS
from tasks.account import send_notifications
from tasks.flow_runs import ats_flow
from tasks.market import sync_time
from tasks.runtime import open_runtime, run_logger


@dataclass(frozen=True, slots=True)
class ReconcileOutcome:
    summary: str
    clean: bool
    report: ReconcileReport


def reconcile_markdown(report: ReconcileReport) -> str:
    lines = [f"# Reconciliation: {'clean' if report.clean else 'repaired'}", "", report.summary(), ""]
    for label, items in (
        ("Re-driven", report.redriven),
        ("Orphan orders cancelled", report.orphans_cancelled),
        ("Vanished from the exchange", report.vanished),
        ("Adopted (found on the exchange, not recorded)", report.adopted),
        ("Still different from the exchange", report.mismatches),
        ("Deferred (exchange unreachable)", report.deferred),
        ("Errors", report.errors),
    ):
        if items:
            lines += [f"**{label}**", *(f"- {item}" for item in items), ""]
    return "\n".join(lines)


@ats_flow("reconcile", timeout_s=4 * 60)
async def reconcile_positions(lookback_hours: float = 2.0) -> ReconcileOutcome:
    """Bring the recorded positions in line with the exchange: look up orders that left the open lists, replay
    missed fills and funding, finish placements left without an answer, cancel orphan orders, close out
    positions that vanished and adopt (and protect) positions nobody recorded.

    The monitor does the same continuously; this scheduled run is the safety net when the monitor is down.

    Args:
        lookback_hours: How far back fills and funding are read (0 reads each position's whole history).
    """
    async with open_runtime() as rt:
        await sync_time(rt)
        since = None if lookback_hours <= 0 else rt.now_ms() - round(lookback_hours * HOUR_MS)
        report = await reconcile(
            rt.exchange, rt.journal(), rt.executor("reconcile"), rt.clock, rt.settings, since_ms=since
        )
        (run_logger().info if report.clean else run_logger().warning)(f"reconciled: {report.summary()}")
        await send_notifications(rt)
        await acreate_markdown_artifact(
            reconcile_markdown(report), key="reconcile", description="What reconciliation found and did"
        )
        return ReconcileOutcome(report.summary(), report.clean, report)
