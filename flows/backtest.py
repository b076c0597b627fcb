"""backtest: what a setting would have done on stored history, as artifacts on the run's page.

The same replay as `ats backtest` (ats.backtest, decided by the code that trades); its report, statistics and trades
become artifacts keyed `backtest-report` and `backtest-trades`, so runs compare side by side in the UI.
"""

import json
from decimal import Decimal

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.runtime import flow_run

from ats.backtest import TradeSettings
from ats.clock import parse_utc_ms
from ats.config import load_settings
from ats.universe import normalise_symbols
from tasks.backtest import BacktestRequest, NoHistory, run_backtest
from tasks.flow_runs import ats_flow
from tasks.runtime import RunFailed, prepare_logging, run_logger, shared_database


def backtest_run_name() -> str:
    p = flow_run.parameters
    return f"backtest {p.get('start')} to {p.get('end')} min_score {p.get('min_score') or 'default'}"


@ats_flow("backtest", timeout_s=60 * 60, flow_run_name=backtest_run_name)
async def backtest(
    start: str,
    end: str,
    symbols: str | None = None,
    min_score: float | None = None,
    balance: float = 10_000.0,
    slippage: float = 0.0005,
    random_draws: int = 20,
    seed: int = 1,
) -> dict[str, object]:
    """Replay stored history through the live rules and compare the model with its baselines.

    Args:
        start: First hour (UTC), YYYY-MM-DD[THH:MM].
        end: End, exclusive (UTC).
        symbols: Comma-separated; default every symbol with stored bars (ats data import first).
        min_score: Signals at or above this open; default ATS_MIN_SCORE.
        balance: Starting wallet, USDT.
        slippage: Against us on every market fill, as a fraction of the price.
        random_draws: Draws of the random-direction baseline.
        seed: Seed of the random baseline.
    """
    settings = load_settings()
    prepare_logging(settings)
    try:
        start_ms, end_ms = parse_utc_ms(start), parse_utc_ms(end)
    except ValueError as exc:
        raise RunFailed(str(exc)) from None
    if end_ms <= start_ms or balance <= 0 or not 0 <= slippage < 1 or random_draws < 0:
        raise RunFailed("end must be after start, balance above 0, slippage in [0, 1), random_draws >= 0")
    options = TradeSettings(
        balance=Decimal(repr(balance)),
        slippage=Decimal(repr(slippage)),
        min_score=settings.min_score if min_score is None else min_score,
    )
    request = BacktestRequest(
        tuple(normalise_symbols((symbols or "").split(","))), start_ms, end_ms, options, random_draws, seed
    )
    try:
        result = run_backtest(shared_database(settings), settings, request)
    except NoHistory as exc:
        raise RunFailed(str(exc)) from None
    await acreate_markdown_artifact(
        result.table + "\n```json\n" + result.summary + "```\n",
        key="backtest-report",
        description=f"Backtest {start} to {end}, min_score {options.min_score:g}",
    )
    rows = [line.split(",") for line in result.files["trades.csv"].splitlines()]
    await acreate_table_artifact(
        [dict(zip(rows[0], row, strict=True)) for row in rows[1:]],
        key="backtest-trades",
        description=f"Trades of the backtest {start} to {end}",
    )
    run_logger().info(f"{result.stats.trades} trades, return {result.stats.return_pct:+.2f} %")
    return {"fingerprint": json.loads(result.summary)["fingerprint"], "trades": result.stats.trades}
