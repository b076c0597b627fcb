"""factor-scan: score the universe in one vectorised pass, store every factor, record and announce the signals."""

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from ats.factors import last_closed_open_time
from flows.parameters import Score
from tasks.account import send_notifications
from tasks.flow_runs import ats_flow, timed_run_name
from tasks.market import (
    CONTEXT_SYMBOLS,
    current_universe,
    load_recent_bars,
    refresh_bars,
    requested_symbols,
    sync_time,
)
from tasks.reports import FACTOR_LEGEND, ArtifactKey, artifact_key, scan_table, signals_markdown
from tasks.runtime import RunFailed, open_runtime, run_logger
from tasks.scanning import ScanOutcome, record_scan, score_universe


@ats_flow("factor-scan", timeout_s=10 * 60, flow_run_name=timed_run_name("scan"))
async def factor_scan(
    symbols: list[str] | None = None, min_score: Score | None = None, dry_run: bool = False
) -> ScanOutcome:
    """Score every symbol of the universe with the 10+1 factor model and record the signals.

    Bars come from PostgreSQL (only missing closed bars are fetched). The premium index of every symbol, and
    the order book and open-interest history of the strongest candidates, are fetched as extras. Every factor
    of every symbol is stored; each signal at or above min_score is recorded once per bar and announced once.

    Args:
        symbols: Scan these symbols instead of the stored Elite and Overlay pools, e.g. ["BTCUSDT", "SOLUSDT"].
        min_score: Strength (0-100) a symbol needs to become a signal; default ATS_MIN_SCORE (85).
        dry_run: Store the scan and its factors, but not the signals (nothing a later place-orders would act on),
            and announce nothing.
    """
    async with open_runtime() as rt:
        threshold = rt.settings.min_score if min_score is None else min_score
        if symbols is not None:
            universe = await requested_symbols(rt, symbols)
        else:
            stored = current_universe(rt)
            if stored is None or not stored.symbols:
                raise RunFailed("no pools stored yet: run build-pools (or the trading cycle) first, or pass symbols")
            universe = list(stored.symbols)
        now = await sync_time(rt)
        wanted = list(dict.fromkeys([*universe, *CONTEXT_SYMBOLS]))
        await refresh_bars(rt, wanted, now)
        bars = load_recent_bars(rt, wanted, now)
        run_logger().info(f"scanning {len(universe)} symbols at min_score {threshold:g}")
        scored = await score_universe(rt, bars, universe, now)
        bar = last_closed_open_time(now, rt.settings.bar_interval)
        outcome = await record_scan(
            rt, scored.result, min_score=threshold, started_ms=now, bar_open_time_ms=bar, dry_run=dry_run
        )
        await acreate_table_artifact(
            scan_table(scored.result),
            key=ArtifactKey.FACTOR_TABLE,
            description=f"Scan {outcome.scan_id}: every symbol ranked, with each factor. {FACTOR_LEGEND}",
        )
        await acreate_markdown_artifact(
            signals_markdown(outcome, scored, threshold),
            key=artifact_key(ArtifactKey.SIGNALS, dry_run=dry_run),
            description=f"Scan {outcome.scan_id}: the signals at or above {threshold:g}"
            + (" (dry run: not recorded, not announced)" if dry_run else ""),
        )
        if not dry_run:
            await send_notifications(rt)
        return outcome
