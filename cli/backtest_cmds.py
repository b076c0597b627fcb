"""`ats backtest`: what a setting would have done on stored history, decided by the code that trades."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.app import app, console, fail, settings_or_exit
from cli.data_cmds import open_database, parse_utc_ms


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"{name} must be a number, not {text!r}") from None
    if not value.is_finite() or value < 0:
        raise typer.BadParameter(f"{name} must be a finite number >= 0")
    return value


@app.command("backtest")
def backtest_command(
    start: Annotated[str, typer.Option("--from", help="First hour (UTC): YYYY-MM-DD[THH:MM].", show_default=False)],
    end: Annotated[str, typer.Option("--to", help="End, exclusive (UTC).", show_default=False)],
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols; default every symbol with stored bars.")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option(min=0, max=100, help="Signals at or above this open; default ATS_MIN_SCORE.")
    ] = None,
    balance: Annotated[str, typer.Option(help="Starting wallet, USDT.")] = "10000",
    slippage: Annotated[str, typer.Option(help="Against us on every market fill, fraction of the price.")] = "0.0005",
    fee: Annotated[str, typer.Option(help="Taker fee rate.")] = "0.0005",
    random_draws: Annotated[int, typer.Option(min=0, max=1000, help="Random-direction baseline draws.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the random baseline.")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for trades.csv, equity.csv, summary.json, report.md.")] = Path(
        "backtest"
    ),
) -> None:
    """Replay stored history hour by hour through the live universe rules, factors, risk checks, sizing, levels and
    position lifecycle; print the statistics beside the baselines and write the files (same input, same bytes)."""
    from ats.backtest import TradeSettings
    from ats.universe import normalise_symbols
    from tasks.backtest import BacktestRequest, NoHistory, run_backtest, write_files

    settings = settings_or_exit()
    start_ms, end_ms = parse_utc_ms(start), parse_utc_ms(end)
    if end_ms <= start_ms:
        fail("--to must be after --from")
    options = TradeSettings(
        balance=_decimal(balance, "--balance"),
        slippage=_decimal(slippage, "--slippage"),
        taker_fee_rate=_decimal(fee, "--fee"),
        min_score=settings.min_score if min_score is None else min_score,
    )
    if options.balance <= 0 or options.slippage >= 1:
        fail("--balance must be above 0 and --slippage below 1")
    request = BacktestRequest(
        tuple(normalise_symbols((symbols or "").split(","))), start_ms, end_ms, options, random_draws, seed
    )
    database = open_database(settings)
    try:
        with console.status("replaying history ..."):
            result = run_backtest(database, settings, request)
    except NoHistory as exc:
        fail(str(exc))
    finally:
        database.dispose()
    rows = [("model", result.stats)]
    if result.baselines is not None:
        rows += list(result.baselines.named.items())
    table = Table(title=f"backtest {start} to {end}, min_score {options.min_score:g}")
    for column in ("run", "trades", "L/S", "win", "PF", "return", "max DD", "Sharpe", "TP1/TP2/stop/BE"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, s in rows:
        exits = "/".join(str(s.exits.get(k, 0)) for k in ("tp1", "tp2", "stop", "breakeven_stop"))
        table.add_row(
            name,
            str(s.trades),
            f"{s.longs}/{s.shorts}",
            f"{s.win_rate:.0%}",
            "-" if s.profit_factor is None else f"{s.profit_factor:.2f}",
            f"{s.return_pct:+.1f}%",
            f"{s.max_drawdown_pct:.1f}%",
            "-" if s.sharpe is None else f"{s.sharpe:.2f}",
            exits,
        )
    console.print(table)
    summary = json.loads(result.summary)
    if "random" in summary:
        random = summary["random"]
        console.print(
            f"random directions: {random['draws']} draws, mean {random['return_pct_mean']:+.1f} %; "
            f"the model beats {random['model_percentile']:.0f} % of them"
        )
        console.print(f"[bold]{summary['verdict']}[/]")
    paths = write_files(result, out)
    console.print(f"fingerprint {summary['fingerprint']}; files: {', '.join(str(p) for p in paths)}")


@app.command("walk-forward")
def walk_forward_command(
    start: Annotated[str, typer.Option("--from", help="First hour (UTC): YYYY-MM-DD[THH:MM].", show_default=False)],
    end: Annotated[str, typer.Option("--to", help="End, exclusive (UTC).", show_default=False)],
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols; default every symbol with stored bars.")
    ] = None,
    train_days: Annotated[int, typer.Option(min=1, help="Days each setting is chosen on.")] = 120,
    test_days: Annotated[int, typer.Option(min=1, help="Days it is then reported on (out of sample).")] = 30,
    grid: Annotated[str, typer.Option(help="Candidate min_score values, comma-separated.")] = "60,65,70,75,80,85,90",
    balance: Annotated[str, typer.Option(help="Starting wallet of every fold, USDT.")] = "10000",
    slippage: Annotated[str, typer.Option(help="Against us on every market fill, fraction of the price.")] = "0.0005",
    random_draws: Annotated[int, typer.Option(min=0, max=1000, help="Random-direction baseline draws.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the random baseline.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Also write the table (Markdown) to this file.")] = None,
) -> None:
    """Choose min_score on each training window, trade it on the next window, rolling; print only the test
    windows' results (out of sample) beside the baselines on the same hours."""
    from ats.backtest import TradeSettings
    from ats.backtest.walkforward import folds_table, summary
    from ats.universe import normalise_symbols
    from tasks.backtest import BacktestRequest, NoHistory, run_walk_forward

    settings = settings_or_exit()
    start_ms, end_ms = parse_utc_ms(start), parse_utc_ms(end)
    try:
        candidates = sorted({float(v) for v in grid.split(",") if v.strip()})
    except ValueError:
        raise typer.BadParameter(f"--grid must be numbers separated by commas, not {grid!r}") from None
    if not candidates or candidates[0] < 0 or candidates[-1] > 100:
        fail("--grid needs min_score values between 0 and 100")
    if end_ms - start_ms < (train_days + test_days) * 86_400_000:
        fail(f"--from to --to must cover at least one training and one test window ({train_days + test_days} days)")
    options = TradeSettings(balance=_decimal(balance, "--balance"), slippage=_decimal(slippage, "--slippage"))
    request = BacktestRequest(
        tuple(normalise_symbols((symbols or "").split(","))), start_ms, end_ms, options, random_draws, seed
    )
    database = open_database(settings)
    try:
        with console.status("scoring every hour, then the folds ..."):
            folds = run_walk_forward(
                database, settings, request, grid=candidates, train_days=train_days, test_days=test_days
            )
    except NoHistory as exc:
        fail(str(exc))
    finally:
        database.dispose()
    table = folds_table(folds)
    total = summary(folds)
    rivals = {k: v for k, v in total.items() if k not in ("model", "trades", "win_rate")}
    beaten = sorted(name for name, value in rivals.items() if total["model"] <= value)
    verdict = (
        "out of sample, the model beat every baseline"
        if not beaten
        else f"out of sample, the model did NOT beat: {', '.join(beaten)}"
    )
    console.print(table, soft_wrap=True, markup=False)
    console.print(f"[bold]{verdict}[/]")
    if out is not None:
        out.write_text(table + f"\n**{verdict}.**\n", encoding="utf-8")
        console.print(f"written to {out}")
