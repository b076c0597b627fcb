"""daily-report: the day's PnL, win rate, exits, fees and funding, as an artifact and a notification."""

from prefect.artifacts import acreate_markdown_artifact
from prefect.runtime import flow_run

from db.journal import enqueue_notification
from tasks.account import DayStats, gather_day, send_notifications, utc_day
from tasks.flow_runs import ats_flow
from tasks.market import sync_time
from tasks.reports import day_markdown
from tasks.runtime import RunFailed, open_runtime


def report_run_name() -> str:
    return f"report {flow_run.parameters.get('day') or 'yesterday'}"


@ats_flow("daily-report", timeout_s=10 * 60, flow_run_name=report_run_name)
async def daily_report(day: str | None = None) -> DayStats:
    """Summarise one UTC day: net PnL, realised PnL, fees, funding, trades, win rate, exits (TP1/TP2/stop/...).

    Args:
        day: The UTC day as YYYY-MM-DD; default: the day that ended last (yesterday).
    """
    async with open_runtime() as rt:
        await sync_time(rt)
        try:
            start = utc_day(day, rt.now_ms())
        except ValueError:
            raise RunFailed(f"day must look like 2026-01-31, got {day!r}") from None
        stats = await gather_day(rt, start)
        with rt.database.session() as session:
            enqueue_notification(
                session, rt.account, f"report:{stats.report.day}", stats.report, language=rt.settings.language
            )
        await send_notifications(rt)
        await acreate_markdown_artifact(
            day_markdown(stats), key="daily-report", description=f"Daily report {stats.report.day}"
        )
        return stats
