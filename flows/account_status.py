"""account-status: balances, unrealised PnL and the open positions with their protection, as an artifact."""

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from tasks.account import AccountStatus, read_account
from tasks.reports import status_markdown, status_rows
from tasks.runtime import open_runtime, readable_failures


@flow(name="account-status")
@readable_failures
async def account_status() -> AccountStatus:
    """The account now: wallet balance, unrealised PnL, available margin, and every open position (n of max)
    with entry, mark, PnL %, stop and whether TP1 was hit. A snapshot is kept in PostgreSQL for history."""
    async with open_runtime() as rt:
        await rt.exchange.sync_time()
        status = await read_account(rt)
        await acreate_markdown_artifact(status_markdown(status), key="account-status", description="The account now")
        await acreate_table_artifact(status_rows(status), description="Open positions")
        return status
