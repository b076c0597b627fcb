"""Backtests with the code that trades: see engine.py for the replay, report.py for what it prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ats.backtest.engine import Closes, Run, Tape, TradeSettings, baseline_rules, record_tape, trade
from ats.backtest.history import RULES_NOTE, History
from ats.backtest.plots import equity_png
from ats.backtest.report import (
    Baselines,
    Stats,
    Trade,
    equity_csv,
    inputs_digest,
    stats_of,
    stats_table,
    summary_json,
    trades_csv,
    trades_of,
)
from ats.clock import format_utc
from ats.config import Settings
from ats.domain import interval_ms

WARMUP_BARS = 500  # bars before the start that warm the factors and the pool rules up

__all__ = ["WARMUP_BARS", "Backtest", "History", "TradeSettings", "backtest"]


@dataclass(frozen=True, slots=True)
class Backtest:
    """A finished backtest: its trades and statistics, the baselines', its text files (name -> text) and its plot
    (name -> PNG bytes)."""

    run: Run
    trades: list[Trade]
    stats: Stats
    baselines: Baselines | None
    files: dict[str, str]
    plots: dict[str, bytes]

    @property
    def summary(self) -> str:
        return self.files["summary.json"]

    @property
    def table(self) -> str:
        return self.files["report.md"]


def backtest(
    history: History,
    settings: Settings,
    options: TradeSettings,
    *,
    start_ms: int,
    end_ms: int,
    random_draws: int = 20,
    seed: int = 1,
    tape: Tape | None = None,
) -> Backtest:
    """Run the model over [start, end) with `settings` (the live ones), then the baselines on the same hours."""
    if end_ms <= start_ms:
        raise ValueError("the backtest's end must be after its start")
    step = interval_ms(history.interval)
    window = history.window(start_ms, end_ms, WARMUP_BARS)
    if tape is None:
        tape = record_tape(window, settings, start_ms, end_ms, floor=min(options.min_score, 60.0))
    run = trade(tape, window, settings, options)
    closes = Closes(window, end_ms)
    trades = trades_of(run, closes)
    stats = stats_of(run, trades, options.balance)
    baselines = None
    if random_draws >= 0:
        named: dict[str, Stats] = {}
        draws: list[Stats] = []
        for name, rule in baseline_rules(random_draws, seed):
            other = trade(tape, window, settings, options, direction_rule=rule)
            result = stats_of(other, trades_of(other, closes), options.balance)
            if name.startswith("random"):
                draws.append(result)
            else:
                named[name] = result
        baselines = Baselines(named, tuple(draws))
    trades_text = trades_csv(trades)
    parameters = {
        "symbols": sorted(window.bars),
        "from": format_utc(start_ms),
        "to": format_utc(end_ms),
        "interval": history.interval,
        "bars": sum(len(b) for b in window.bars.values()),
        "hours": len(tape.hours),
        "min_score": options.min_score,
        "balance": f"{options.balance:f}",
        "slippage": f"{options.slippage:f}",
        "taker_fee_rate": f"{options.taker_fee_rate:f}",
        "intra_bar": "1m/5m bars: " + ", ".join(sorted(window.fine)) if window.fine else "stop first (no finer bars)",
        "random_draws": random_draws,
        "seed": seed,
        "limits": settings.limits.model_dump(mode="json"),
        "levels": settings.levels.model_dump(mode="json"),
        "bar_ms": step,
    }
    notes = [RULES_NOTE, *tape.pool_notes]
    summary = summary_json(
        parameters=parameters,
        model=stats,
        baselines=baselines,
        inputs=inputs_digest(window, sorted(window.bars)),
        trades=trades_text,
        notes=notes,
    )
    rows: list[tuple[str, Stats]] = [("model", stats)]
    if baselines is not None:
        rows += list(baselines.named.items())
    report = _report(parameters, rows, baselines, stats)
    files = {
        "trades.csv": trades_text,
        "equity.csv": equity_csv(run, options.balance),
        "summary.json": summary,
        "report.md": report,
    }
    title = f"Backtest {parameters['from']} to {parameters['to']}, min_score {options.min_score:g}"
    plots = {"equity.png": equity_png(run.equity, options.balance, f"{title}: equity and drawdown")}
    return Backtest(run, trades, stats, baselines, files, plots)


def _report(
    parameters: dict[str, object], rows: Sequence[tuple[str, Stats]], baselines: Baselines | None, model: Stats
) -> str:
    symbols = [str(s) for s in parameters["symbols"]]  # type: ignore[attr-defined]
    lines = [
        f"# Backtest {parameters['from']} to {parameters['to']}",
        "",
        f"{len(symbols)} symbols ({', '.join(symbols)}), {parameters['hours']} hours, min_score "
        f"{parameters['min_score']}, slippage {parameters['slippage']}, taker fee {parameters['taker_fee_rate']}; "
        f"intra-bar order: {parameters['intra_bar']}.",
        "",
        stats_table(rows),
    ]
    if baselines is not None and baselines.random:
        draws = baselines.random_returns()
        pct = baselines.percentile_of(model.return_pct)
        lines.append(
            f"Random directions ({len(draws)} draws): return {draws[0]:+.1f} % to {draws[-1]:+.1f} %, mean "
            f"{sum(draws) / len(draws):+.1f} %; the model beats {pct:.0f} % of them."
        )
    if baselines is not None:
        lines += ["", f"**Verdict: {baselines.verdict(model)}.**"]
    return "\n".join(lines) + "\n"
