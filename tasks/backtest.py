"""Backtest I/O: stored history in, result files out. The replay itself is pure (ats.backtest)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ats.backtest import WARMUP_BARS, Backtest, TradeSettings, backtest
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


def run_backtest(database: Database, settings: Settings, request: BacktestRequest) -> Backtest:
    """Load the stored history the request covers and replay it."""
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
    loaded = time.perf_counter()
    bars = sum(len(b) for b in history.bars.values())
    log.info("backtest history loaded", symbols=len(history.bars), bars=bars, seconds=round(loaded - started, 2))
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
        seconds=round(time.perf_counter() - loaded, 2),
    )
    return result


def write_files(result: Backtest, folder: Path) -> list[Path]:
    """The result's files in `folder` (created); the same run writes the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(result.files.items()):
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def symbols_of(text: str | None) -> Sequence[str]:
    return tuple(s.strip().upper() for s in (text or "").split(",") if s.strip())
