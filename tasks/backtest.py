"""Backtest I/O: stored history in, result files out. The replay itself is pure (ats.backtest)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ats.backtest import WARMUP_BARS, Backtest, TradeSettings, backtest
from ats.backtest.engine import record_tape
from ats.backtest.history import DAY_MS, History
from ats.backtest.walkforward import Fold, walk_forward
from ats.clock import format_utc
from ats.config import Settings
from ats.log import get_logger
from db.history import coverage, load_history
from db.session import Database

log = get_logger(__name__)


class NoHistory(ValueError):
    """The database holds no bars for what was asked (import them first)."""


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    symbols: tuple[str, ...]  # empty: every symbol with stored bars
    start_ms: int
    end_ms: int
    options: TradeSettings
    random_draws: int = 20
    seed: int = 1


def load_request_history(database: Database, settings: Settings, request: BacktestRequest) -> History:
    """The stored history the request covers (with the warm-up before it); NoHistory names what is missing."""
    interval = settings.bar_interval
    started = time.perf_counter()
    with database.session() as session:
        stored = {c.symbol: c for c in coverage(session, interval)}
        symbols = list(request.symbols) or sorted(stored)
        missing = [s for s in symbols if s not in stored]
        if not symbols or missing:
            what = ", ".join(missing) if missing else "any symbol"
            raise NoHistory(
                f"no {interval} bars stored for {what}; import them first (ats data import PATH) — stored: "
                f"{', '.join(sorted(stored)) or 'nothing'}"
            )
        inside = [s for s in symbols if stored[s].first_ms < request.end_ms and stored[s].last_ms >= request.start_ms]
        if not inside:
            raise NoHistory(
                f"no {interval} bars of {', '.join(symbols)} between {format_utc(request.start_ms)} and "
                f"{format_utc(request.end_ms)}"
            )
        history = load_history(
            session, inside, interval, start_ms=request.start_ms, end_ms=request.end_ms, warmup_bars=WARMUP_BARS
        )
    bars = sum(len(b) for b in history.bars.values())
    seconds = round(time.perf_counter() - started, 2)
    log.info("backtest history loaded", symbols=len(history.bars), bars=bars, seconds=seconds)
    return history


def run_backtest(database: Database, settings: Settings, request: BacktestRequest) -> Backtest:
    """Load the stored history the request covers and replay it."""
    history = load_request_history(database, settings, request)
    started = time.perf_counter()
    result = backtest(
        history,
        settings,
        request.options,
        start_ms=request.start_ms,
        end_ms=request.end_ms,
        random_draws=request.random_draws,
        seed=request.seed,
    )
    log.info(
        "backtest done",
        trades=result.stats.trades,
        return_pct=round(result.stats.return_pct, 2),
        seconds=round(time.perf_counter() - started, 2),
    )
    return result


def run_walk_forward(
    database: Database,
    settings: Settings,
    request: BacktestRequest,
    *,
    grid: Sequence[float],
    train_days: int,
    test_days: int,
) -> list[Fold]:
    """Score the request's hours once, then choose min_score on each training window and report the next."""
    history = load_request_history(database, settings, request)
    window = history.window(request.start_ms, request.end_ms, WARMUP_BARS)
    started = time.perf_counter()
    tape = record_tape(window, settings, request.start_ms, request.end_ms, floor=min(grid))
    log.info("walk-forward: hours scored", hours=len(tape.hours), seconds=round(time.perf_counter() - started, 2))
    folds = walk_forward(
        tape,
        window,
        settings,
        request.options,
        grid=grid,
        train_ms=train_days * DAY_MS,
        test_ms=test_days * DAY_MS,
        random_draws=request.random_draws,
        seed=request.seed,
    )
    log.info("walk-forward done", folds=len(folds), seconds=round(time.perf_counter() - started, 2))
    return folds


def write_files(result: Backtest, folder: Path) -> list[Path]:
    """The result's files in `folder` (created); the same run writes the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(result.files.items()):
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for name, png in sorted(result.plots.items()):
        path = folder / name
        path.write_bytes(png)
        written.append(path)
    return written
