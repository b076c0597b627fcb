"""close-all: the emergency stop. Cancel every order, close every position at market, tell the user."""

from prefect.artifacts import acreate_markdown_artifact

from ats.notify import AlertNote
from db import risk_state
from db.journal import enqueue_notification
from tasks.account import (
    CloseAllReport,
    cancel_all_orders,
    close_managed_positions,
    close_remaining_positions,
    send_notifications,
)
from tasks.flow_runs import ats_flow
from tasks.reports import close_all_markdown
from tasks.runtime import RunFailed, Runtime, open_runtime, run_logger


def _tell(rt: Runtime, report: CloseAllReport, halted: bool, reason: str) -> None:
    closed = report.managed_closed + report.unmanaged_closed
    detail = f"Closed: {', '.join(closed) or 'nothing was open'}."
    if report.still_open:
        detail += f" STILL OPEN: {', '.join(report.still_open)}: act now."
    if report.failures:
        detail += " Failed: " + "; ".join(f"{s}: {why}" for s, why in sorted(report.failures.items()))
    if halted:
        detail += " New entries are halted until 00:00 UTC."
    now = rt.clock.now_ms()
    with rt.database.session() as session:
        enqueue_notification(
            session, rt.account, f"close-all:{now}", AlertNote(f"Close-all: {reason}", detail, severity="critical")
        )


@ats_flow("close-all", timeout_s=10 * 60)
async def close_all(reason: str = "emergency close-all", halt_today: bool = True) -> CloseAllReport:
    """EMERGENCY: cancel every order and algo order and close every position at market.

    Positions this system manages are closed through their lifecycle (a close request: it cancels their orders
    and closes at market, recording the result); anything else on the account (a manual position, a leftover
    order) gets a plain cancel or a reduce-only market order. The flow fails if a position is still open at the
    end, so the run page says so in red.

    Args:
        reason: Why, for the records and the notification.
        halt_today: Also halt new entries until 00:00 UTC, so the next cycle does not open new positions.
    """
    async with open_runtime() as rt:
        await rt.exchange.sync_time()
        if halt_today:
            with rt.database.session() as session:
                risk_state.record_halt(session, rt.account, rt.clock.now_ms(), f"close-all: {reason}")
        managed, deferred = await close_managed_positions(rt, reason)
        cancelled, cancel_failures = await cancel_all_orders(rt)
        unmanaged, close_failures = await close_remaining_positions(rt)
        still_open = sorted(p.symbol for p in await rt.exchange.positions())
        report = CloseAllReport(
            managed_closed=managed,
            managed_deferred=deferred,
            cancelled_symbols=cancelled,
            unmanaged_closed=unmanaged,
            failures={**cancel_failures, **close_failures},
            still_open=still_open,
        )
        _tell(rt, report, halt_today, reason)
        await send_notifications(rt)
        await acreate_markdown_artifact(close_all_markdown(report), key="close-all", description="Emergency close-all")
        if still_open or report.failures:
            message = f"still open: {', '.join(still_open) or 'none'}; failures: {len(report.failures)}"
            run_logger().error(message)
            raise RunFailed(f"close-all incomplete: {message}")
        return report
