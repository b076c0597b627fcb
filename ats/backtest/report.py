"""A backtest's results: its trades, statistics and equity curve, the baselines beside it, and a fingerprint.

Everything here is a pure function of the run, so identical inputs give byte-identical files: no wall-clock
time, no ordering by hash, numbers written with fixed precision.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from ats.backtest.engine import Run
from ats.backtest.history import DAY_MS, History
from ats.clock import format_utc
from ats.lifecycle import Position

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Trade:
    """One position that had an entry, as the report lists it."""

    symbol: str
    direction: str
    opened_ms: int
    closed_ms: int | None  # None: still open at the end (valued at the last close)
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    exit: str  # tp1 | tp2 | stop | breakeven_stop | reversal | ... | open
    tp1: bool
    gross_pnl: Decimal
    fees: Decimal
    funding: Decimal
    net_pnl: Decimal


def trades_of(run: Run, closes: Mapping[str, Decimal]) -> list[Trade]:
    out = []
    for p in run.journal.positions.values():
        if p.entry_qty <= 0:
            continue
        out.append(_trade(p, closes))
    return sorted(out, key=lambda t: (t.opened_ms, t.symbol))


def _trade(p: Position, closes: Mapping[str, Decimal]) -> Trade:
    gross, exit_price = p.realized_pnl, p.exit_price
    if not p.is_terminal and p.open_qty > 0:
        last = closes[p.symbol]
        gross += (last - p.entry_price) * p.open_qty * p.direction.sign
        exit_price = (p.exit_value + last * p.open_qty) / p.entry_qty
    return Trade(
        symbol=p.symbol,
        direction=p.direction.value,
        opened_ms=p.opened_ms,
        closed_ms=p.closed_ms if p.is_terminal else None,
        quantity=p.entry_qty,
        entry_price=p.entry_price,
        exit_price=exit_price,
        exit=p.exit_reason.value if p.is_terminal and p.exit_reason else "open",
        tp1=p.tp1_done,
        gross_pnl=gross,
        fees=p.fees,
        funding=p.funding,
        net_pnl=gross - p.fees + p.funding,
    )


@dataclass(frozen=True, slots=True)
class Stats:
    trades: int
    longs: int
    shorts: int
    win_rate: float
    profit_factor: float | None  # None: no losing trade
    expectancy: float  # mean net PnL per trade, USDT
    net_pnl: float
    return_pct: float
    max_drawdown_pct: float
    sharpe: float | None  # daily returns, annualised (sqrt 365); None without variance
    exposure_pct: float  # hours with an open position
    fees: float
    funding: float
    exits: dict[str, int]
    long_net: float
    short_net: float
    long_win_rate: float
    short_win_rate: float
    halted_days: int


def _rate(wins: int, count: int) -> float:
    return wins / count if count else 0.0


def stats_of(run: Run, trades: Sequence[Trade], balance: Decimal) -> Stats:
    nets = [float(t.net_pnl) for t in trades]
    wins = sum(1 for n in nets if n > 0)
    gains = sum(n for n in nets if n > 0)
    losses = -sum(n for n in nets if n < 0)
    longs = [t for t in trades if t.direction == "LONG"]
    shorts = [t for t in trades if t.direction == "SHORT"]
    equity = np.array([float(e) for _, e in run.equity]) if run.equity else np.array([float(balance)])
    peaks = np.maximum.accumulate(np.concatenate([[float(balance)], equity]))
    drawdown = float(((peaks[1:] - equity) / peaks[1:]).max()) if equity.size else 0.0
    daily: dict[int, float] = {}
    for time_ms, value in run.equity:
        daily[time_ms // DAY_MS] = float(value)
    closes = [float(balance), *daily.values()]
    returns = [b / a - 1.0 for a, b in itertools.pairwise(closes) if a > 0]
    sharpe = None
    if len(returns) > 1 and statistics.pstdev(returns) > 0:
        sharpe = statistics.fmean(returns) / statistics.pstdev(returns) * math.sqrt(365.0)
    exits: dict[str, int] = {}
    for t in trades:
        exits[t.exit] = exits.get(t.exit, 0) + 1
    net = sum(nets)
    return Stats(
        trades=len(trades),
        longs=len(longs),
        shorts=len(shorts),
        win_rate=_rate(wins, len(trades)),
        profit_factor=gains / losses if losses > 0 else None,
        expectancy=net / len(trades) if trades else 0.0,
        net_pnl=net,
        return_pct=net / float(balance) * 100.0,
        max_drawdown_pct=drawdown * 100.0,
        sharpe=sharpe,
        exposure_pct=_rate(run.exposure_hours, run.hours) * 100.0,
        fees=float(sum((t.fees for t in trades), ZERO)),
        funding=float(sum((t.funding for t in trades), ZERO)),
        exits=dict(sorted(exits.items())),
        long_net=sum(float(t.net_pnl) for t in longs),
        short_net=sum(float(t.net_pnl) for t in shorts),
        long_win_rate=_rate(sum(1 for t in longs if t.net_pnl > 0), len(longs)),
        short_win_rate=_rate(sum(1 for t in shorts if t.net_pnl > 0), len(shorts)),
        halted_days=run.halted_days,
    )


@dataclass(frozen=True, slots=True)
class Baselines:
    """The same hours and exits with other directions: always long, 24 h momentum, and random draws."""

    named: dict[str, Stats]
    random: tuple[Stats, ...]

    def random_returns(self) -> list[float]:
        return sorted(s.return_pct for s in self.random)

    def percentile_of(self, return_pct: float) -> float | None:
        """Share of random draws the model's return beats (ties count half), in percent."""
        draws = self.random_returns()
        if not draws:
            return None
        above = sum(1 for r in draws if return_pct > r) + 0.5 * sum(1 for r in draws if return_pct == r)
        return above / len(draws) * 100.0

    def verdict(self, model: Stats) -> str:
        """One sentence: does the model beat every baseline on return?"""
        rivals = {name: s.return_pct for name, s in self.named.items()}
        if self.random:
            rivals["random (mean)"] = statistics.fmean(self.random_returns())
        beaten = [name for name, value in rivals.items() if model.return_pct <= value]
        if not beaten:
            return "the model beat every baseline on these hours"
        return "the model did NOT beat: " + ", ".join(sorted(beaten))


# ---------------------------------------------------------------------------------------------- files


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.8f}"
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    return value


def trades_csv(trades: Sequence[Trade]) -> str:
    head = "symbol,direction,opened,closed,quantity,entry,exit_price,exit,tp1,gross_pnl,fees,funding,net_pnl"
    lines = [head]
    for t in trades:
        closed = format_utc(t.closed_ms) if t.closed_ms is not None else ""
        cells = [
            t.symbol, t.direction, format_utc(t.opened_ms), closed, f"{t.quantity:f}", f"{t.entry_price:.8f}",
            f"{t.exit_price:.8f}", t.exit, str(t.tp1).lower(), f"{t.gross_pnl:.8f}", f"{t.fees:.8f}",
            f"{t.funding:.8f}", f"{t.net_pnl:.8f}",
        ]  # fmt: skip
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def equity_csv(run: Run, balance: Decimal) -> str:
    lines = ["time,equity,drawdown_pct"]
    peak = float(balance)
    for time_ms, value in run.equity:
        peak = max(peak, float(value))
        lines.append(f"{format_utc(time_ms)},{value:.4f},{(peak - float(value)) / peak * 100.0:.4f}")
    return "\n".join(lines) + "\n"


def inputs_digest(history: History, symbols: Sequence[str]) -> str:
    """A digest of the bars, funding and rules a run read: equal inputs, equal digest."""
    digest = hashlib.sha256()
    for symbol in sorted(symbols):
        bars = history.bars[symbol]
        digest.update(symbol.encode())
        for array in (bars.open_time, bars.open, bars.high, bars.low, bars.close, bars.volume):
            digest.update(np.ascontiguousarray(array).tobytes())
        rates = history.funding.get(symbol)
        if rates is not None:
            digest.update(repr((rates.time_ms, rates.rate)).encode())
        fine = history.fine.get(symbol)
        if fine is not None:
            digest.update(np.ascontiguousarray(fine.open_time).tobytes() + fine.high.tobytes() + fine.low.tobytes())
        digest.update(repr(history.rules_of(symbol)).encode())
    return digest.hexdigest()


def summary_json(
    *,
    parameters: Mapping[str, Any],
    model: Stats,
    baselines: Baselines | None,
    inputs: str,
    trades: str,
    notes: Sequence[str],
) -> str:
    """The run's statistics, with a fingerprint over its parameters, inputs and trades."""
    body: dict[str, Any] = {
        "parameters": dict(parameters),
        "inputs_sha256": inputs,
        "trades_sha256": hashlib.sha256(trades.encode()).hexdigest(),
        "model": _number(asdict(model)),
        "notes": list(notes),
    }
    if baselines is not None:
        body["baselines"] = {name: _number(asdict(s)) for name, s in baselines.named.items()}
        draws = baselines.random_returns()
        body["random"] = {
            "draws": len(draws),
            "return_pct_mean": round(statistics.fmean(draws), 6) if draws else None,
            "return_pct_min": round(draws[0], 6) if draws else None,
            "return_pct_max": round(draws[-1], 6) if draws else None,
            "model_percentile": _number(baselines.percentile_of(model.return_pct)),
        }
        body["verdict"] = baselines.verdict(model)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    body["fingerprint"] = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return json.dumps(body, sort_keys=True, indent=2) + "\n"


def _cell(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def stats_table(rows: Sequence[tuple[str, Stats]]) -> str:
    """Markdown: one row per run (the model, then the baselines)."""
    head = (
        "| run | trades | long / short | win rate | profit factor | expectancy USDT | return | max drawdown | "
        "Sharpe | exposure | fees | funding | TP1 / TP2 / stop / breakeven |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for name, s in rows:
        exits = "/".join(str(s.exits.get(k, 0)) for k in ("tp1", "tp2", "stop", "breakeven_stop"))
        lines.append(
            f"| {name} | {s.trades} | {s.longs} / {s.shorts} | {s.win_rate:.0%} | {_cell(s.profit_factor)} | "
            f"{s.expectancy:.2f} | {s.return_pct:+.1f} % | {s.max_drawdown_pct:.1f} % | {_cell(s.sharpe)} | "
            f"{s.exposure_pct:.0f} % | {s.fees:.0f} | {s.funding:+.0f} | {exits} |"
        )
    return "\n".join(lines) + "\n"
