"""close-all: the emergency stop. Cancel every order, close every position at market, tell the user.

The work is tasks.emergency's, which `ats close-all` also runs (without Prefect); here each step is a task, so
the run page shows them, and the report is the run's artifact.
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NONE

from ats.config import load_settings
from ats.emergency import CloseAllReport, close_all_markdown
from db.secrets import with_secret_blocks
from tasks.emergency import close_everything, open_emergency
from tasks.flow_runs import ats_flow
from tasks.runtime import RunFailed, prepare_logging, run_logger

T = TypeVar("T")


async def _as_task(name: str, work: Callable[[], Awaitable[T]]) -> T:
    """One step of the emergency stop as a task run of this flow."""

    @task(name=name, cache_policy=NONE)
    async def step() -> T:
        return await work()

    return await step()


@ats_flow("close-all", timeout_s=10 * 60)
async def close_all(reason: str = "emergency close-all", halt_today: bool = True) -> CloseAllReport:
    """EMERGENCY: cancel every order and algo order and close every position at market.

    Positions this system manages are closed through their lifecycle (a close request: it cancels their orders
    and closes at market, recording the result); anything else on the account (a manual position, a leftover
    order) gets a plain cancel or a reduce-only market order. Without the database (it does not answer within a
    few seconds) everything is still cancelled and closed on the exchange, and the report says nothing was
    recorded. The flow fails if a position is still open at the end, so the run page says so in red.

    Args:
        reason: Why, for the records and the notification.
        halt_today: Also halt new entries until 00:00 UTC, so the next cycle does not open new positions.
    """
    settings = await with_secret_blocks(load_settings())
    prepare_logging(settings)
    async with open_emergency(settings, source="flow", log=run_logger()) as em:
        report = await close_everything(em, reason, halt_today, step=_as_task)
    await acreate_markdown_artifact(close_all_markdown(report), key="close-all", description="Emergency close-all")
    if not report.complete:
        run_logger().error(report.summary())
        raise RunFailed(f"close-all incomplete: {report.summary()}")
    return report
