"""Walk-forward: choose a setting on one window, report it on the next, rolling; no in-sample figure is a result.

The tape is scored once (the factors do not depend on the setting chosen here); each fold trades its training
window with every candidate min_score, keeps the one with the highest net PnL among those with enough trades (ties:
the higher score, fewer trades), then trades the following test window with it, beside the baselines on the same
test hours. Every fold starts from the same balance, so folds add up without compounding.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ats.backtest.engine import Closes, DirectionRule, Tape, TradeSettings, baseline_rules, trade
from ats.backtest.history import History
from ats.backtest.report import Baselines, Stats, stats_of, trades_of
from ats.clock import format_utc
from ats.config import Settings

MIN_TRAIN_TRADES = 10


@dataclass(frozen=True, slots=True)
class Fold:
    train_start_ms: int
    test_start_ms: int
    test_end_ms: int
    min_score: float  # chosen on the training window
    test: Stats  # the model on the test window: out of sample
    baselines: Baselines  # the same test hours and exits with other directions


def tape_between(tape: Tape, start_ms: int, end_ms: int) -> Tape:
    hours = tuple(h for h in tape.hours if start_ms <= h.bar_open_ms < end_ms)
    return replace(tape, start_ms=start_ms, end_ms=end_ms, hours=hours)


def _stats(
    tape: Tape, history: History, settings: Settings, options: TradeSettings, rule: DirectionRule | None = None
) -> Stats:
    run = trade(tape, history, settings, options, direction_rule=rule)
    return stats_of(run, trades_of(run, Closes(history, tape.end_ms)), options.balance)


def choose(tape: Tape, history: History, settings: Settings, options: TradeSettings, grid: Sequence[float]) -> float:
    """The candidate with the highest net PnL on `tape` among those with enough trades (else the highest score)."""
    scored = []
    for score in grid:
        result = _stats(tape, history, settings, replace(options, min_score=score))
        if result.trades >= MIN_TRAIN_TRADES:
            scored.append((result.net_pnl, score))
    if not scored:
        return max(grid)
    return max(scored)[1]


def walk_forward(
    tape: Tape,
    history: History,
    settings: Settings,
    options: TradeSettings,
    *,
    grid: Sequence[float],
    train_ms: int,
    test_ms: int,
    random_draws: int = 20,
    seed: int = 1,
) -> list[Fold]:
    if not grid or min(grid) < 0 or max(grid) > 100:
        raise ValueError("the min_score grid needs values in [0, 100]")
    if train_ms <= 0 or test_ms <= 0:
        raise ValueError("training and test windows must be positive")
    folds = []
    start = tape.start_ms
    while start + train_ms + test_ms <= tape.end_ms:
        train = tape_between(tape, start, start + train_ms)
        test = tape_between(tape, start + train_ms, start + train_ms + test_ms)
        chosen = choose(train, history, settings, options, grid)
        at = replace(options, min_score=chosen)
        named: dict[str, Stats] = {}
        draws: list[Stats] = []
        for name, rule in baseline_rules(random_draws, seed):
            result = _stats(test, history, settings, at, rule)
            if name.startswith("random"):
                draws.append(result)
            else:
                named[name] = result
        folds.append(
            Fold(
                start,
                test.start_ms,
                test.end_ms,
                chosen,
                _stats(test, history, settings, at),
                Baselines(named, tuple(draws)),
            )
        )
        start += test_ms
    return folds


def folds_table(folds: Sequence[Fold]) -> str:
    """Markdown: one row per test window (out of sample), then their sum."""
    lines = [
        "| test window | min_score (chosen before) | trades | win rate | model net USDT | always long | 24h momentum | "
        "random (mean) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in folds:
        lines.append(
            f"| {format_utc(f.test_start_ms)[:10]} to {format_utc(f.test_end_ms)[:10]} | {f.min_score:g} | "
            f"{f.test.trades} | {f.test.win_rate:.0%} | {f.test.net_pnl:+.0f} | "
            f"{f.baselines.named['always long'].net_pnl:+.0f} | {f.baselines.named['24h momentum'].net_pnl:+.0f} | "
            f"{_random_mean(f):+.0f} |"
        )
    total = summary(folds)
    lines.append(
        f"| **all test windows** | | {total['trades']} | {total['win_rate']:.0%} | **{total['model']:+.0f}** | "
        f"{total['always long']:+.0f} | {total['24h momentum']:+.0f} | {total['random (mean)']:+.0f} |"
    )
    return "\n".join(lines) + "\n"


def _random_mean(fold: Fold) -> float:
    return statistics.fmean(s.net_pnl for s in fold.baselines.random) if fold.baselines.random else 0.0


def summary(folds: Sequence[Fold]) -> dict[str, float]:
    """Out-of-sample sums over the test windows: net PnL of the model and of each baseline, trades, win rate."""
    trades = sum(f.test.trades for f in folds)
    wins = sum(f.test.win_rate * f.test.trades for f in folds)
    return {
        "trades": trades,
        "win_rate": wins / trades if trades else 0.0,
        "model": sum(f.test.net_pnl for f in folds),
        "always long": sum(f.baselines.named["always long"].net_pnl for f in folds),
        "24h momentum": sum(f.baselines.named["24h momentum"].net_pnl for f in folds),
        "random (mean)": sum(_random_mean(f) for f in folds),
    }
