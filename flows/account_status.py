"""account-status: balances, unrealised PnL and the open positions with their protection, as an artifact."""

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from ats.operator import AccountStatus
from tasks.account import read_account
from tasks.flow_runs import ats_flow
from tasks.market import sync_time
from tasks.reports import status_markdown, status_rows
from tasks.runtime import open_runtime


@ats_flow("account-status", timeout_s=5 * 60)
async def account_status() -> AccountStatus:
    """The account now: wallet balance, unrealised PnL, available margin, and every open position (n of max)
    with entry, mark, PnL %, stop and whether TP1 was hit. A snapshot is kept in PostgreSQL for history."""
    async with open_runtime() as rt:
        await sync_time(rt)
        status = await read_account(rt)
        await acreate_markdown_artifact(status_markdown(status), key="account-status", description="The account now")
        await acreate_table_artifact(status_rows(status), key="open-positions", description="Open positions")
        return status
