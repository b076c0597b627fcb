"""build-pools: exchange info, 24h tickers and closed bars -> the Elite and Overlay pools (the universe to scan)."""

from prefect.artifacts import acreate_markdown_artifact

from tasks.flow_runs import ats_flow, timed_run_name
from tasks.market import (
    PoolsDue,
    PoolsOutcome,
    fetch_tickers,
    pool_config,
    pools_due,
    refresh_bars,
    select_pools,
    stored_pools,
    symbols_for_pools,
    sync_symbols,
    sync_time,
)
from tasks.reports import ArtifactKey, pools_markdown
from tasks.runtime import open_runtime


@ats_flow("build-pools", timeout_s=10 * 60, flow_run_name=timed_run_name("pools"))
async def build_pools(force_elite: bool = False) -> PoolsOutcome:
    """Refresh exchange info, 24h tickers and closed bars, then rebuild the pools that are due.

    The Elite pool (liquid, clean perpetuals) is rebuilt every 24 h and the Overlay pool (new listings and
    movers) every hour; in between the stored pools are reused. Only missing closed bars are fetched. A build
    that finds nothing falls back to the last good pool and the artifact says so.

    Args:
        force_elite: Rebuild the Elite pool now even if it is younger than 24 h.
    """
    async with open_runtime() as rt:
        rules = await sync_symbols(rt)
        tickers = await fetch_tickers(rt)
        now = await sync_time(rt)
        stored = stored_pools(rt)
        config = pool_config(rt)
        due = pools_due(stored.elite, stored.overlay, now, config, rt.settings.bar_interval)
        if force_elite:
            due = PoolsDue(elite=True, overlay=due.overlay)
        wanted = symbols_for_pools(rules, tickers, now, config, elite=stored.elite, due=due)
        bars = await refresh_bars(rt, wanted, now)
        outcome = await select_pools(rt, rules, tickers, stored, due, bars, now)
        await acreate_markdown_artifact(
            pools_markdown(outcome),
            key=ArtifactKey.POOLS,
            description="The Elite and Overlay pools, and why every other symbol was left out",
        )
        return outcome
