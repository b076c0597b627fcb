"""What the Prefect UI shows after each run: markdown reports and table rows for artifacts. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ats.clock import format_utc
from ats.factors import DIRECTIONAL, ScanResult
from ats.messages import say_text
from ats.notify import fmt_decimal, fmt_pct, fmt_price, fmt_qty, fmt_usdt
from ats.operator import AccountStatus
from ats.placement import Placement, PlacementResult
from db.market import scan_ranking
from tasks.account import DayStats
from tasks.market import PoolsOutcome
from tasks.placement import Decided
from tasks.scanning import ScanOutcome, Scored

FACTOR_LABELS = {
    "T": "trend", "M": "momentum", "C": "flow", "O": "open interest", "B": "basis", "Q": "large trades",
    "S": "structure", "V": "volume", "L": "liquidity", "I": "independence", "F": "fund-leading",
}  # fmt: skip
FACTOR_LEGEND = (
    "Columns: "
    + " · ".join(f"**{name}** {label}" for name, label in FACTOR_LABELS.items())
    + ". T M C O B Q and F are signed, -100 (short) to +100 (long); S V L I rate the setup's quality, 0 to 100 "
    "(50 neutral). Strength 0-100 combines them; the band names its range."
)


class ArtifactKey(StrEnum):
    """The keys of the runs' artifacts: each key is a page of the UI's Artifacts list with its own history."""

    POOLS = "pools"
    FACTOR_TABLE = "factor-table"
    SIGNALS = "signals"
    PLACEMENTS = "placements"
    CYCLE = "trading-cycle"
    MANUAL_SIGNAL = "manual-signal"


def artifact_key(key: ArtifactKey, *, dry_run: bool = False) -> str:
    """A dry run's artifacts keep their own history, so the latest `placements` is always what really happened."""
    return f"{key.value}-dry-run" if dry_run else key.value


def _opt(value: Decimal | None) -> str:
    return "-" if value is None else fmt_decimal(value)


# ---------------------------------------------------------------------------------------------- pools


def pools_markdown(outcome: PoolsOutcome) -> str:
    """The universe, whether each pool was rebuilt, reused or fell back, and every exclusion with its reason."""
    lines = [f"# Universe: {len(outcome.symbols)} symbols", ""]
    if outcome.fell_back:
        fallen = [p.kind.capitalize() for p in (outcome.elite, outcome.overlay) if p.fell_back]
        lines += [f"> **{' and '.join(fallen)} fell back to the last good pool** (see below why).", ""]
    for pool, rebuilt in ((outcome.overlay, outcome.overlay_rebuilt), (outcome.elite, outcome.elite_rebuilt)):
        how = (
            "fell back"
            if pool.fell_back
            else ("rebuilt" if rebuilt else f"reused (built {format_utc(pool.built_at_ms)})")
        )
        lines.append(f"- **{pool.kind.capitalize()}** ({how}): {', '.join(pool.symbols) or 'empty'}")
    lines += ["", f"_{outcome.bars.summary()}_", ""]
    if outcome.bars.failed:
        lines += ["| symbol | bars not updated |", "|---|---|"]
        lines += [f"| {s} | {why} |" for s, why in sorted(outcome.bars.failed.items())]
        lines.append("")
    lines += [outcome.overlay.to_markdown(), "", outcome.elite.to_markdown()]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- scan


def scan_table(result: ScanResult) -> list[dict[str, Any]]:
    """One row per symbol, ranked: direction, strength, band and every factor (why it fired, or did not)."""
    rows = []
    for rank, row in enumerate(scan_ranking(result.rows), 1):
        entry: dict[str, Any] = {
            "rank": rank,
            "symbol": row.symbol,
            "direction": row.direction.value if row.direction else "-",
            "strength": round(row.strength, 1),
            "band": row.band.value,
        }
        entry.update({name: round(value, 1) for name, value in row.factors.items()})
        entry["note"] = row.insufficient or (f"no data: {', '.join(row.missing)}" if row.missing else "")
        rows.append(entry)
    return rows


def signals_markdown(outcome: ScanOutcome, scored: Scored, min_score: float) -> str:
    """The scan in a few lines and its signals with their strongest factors."""
    result = scored.result
    told = "dry run: not recorded, not announced" if outcome.dry_run else f"{outcome.new_signals} new signals"
    lines = [
        f"# Scan {outcome.scan_id}: {len(outcome.signals)} signals at or above {min_score:g}"
        + (" (dry run)" if outcome.dry_run else ""),
        "",
        f"Bar {format_utc(outcome.bar_open_time_ms)} · {outcome.universe_size} symbols · "
        f"{len(result.ranked())} with a direction · {len(result.insufficient)} without enough data · {told}",
        "",
    ]
    if outcome.signals:
        lines += ["| symbol | side | strength | band | price | leading factors |", "|---|---|---|---|---|---|"]
        for signal in outcome.signals:
            directional = sorted(
                ((n, v) for n, v in signal.factors.items() if n in DIRECTIONAL),
                key=lambda item: -abs(item[1]),
            )[:3]
            leading = ", ".join(f"{FACTOR_LABELS[n]} {v:+.0f}" for n, v in directional)
            lines.append(
                f"| {signal.symbol} | {signal.direction.value} | {signal.strength:.1f} | "
                f"{signal.band.value.replace('_', ' ')} | {fmt_decimal(signal.price)} | {leading} |"
            )
    else:
        best = result.ranked()[:3]
        strongest = ", ".join(f"{r.symbol} {r.direction.value if r.direction else ''} {r.strength:.0f}" for r in best)
        lines.append(f"No signal reached {min_score:g}. Strongest: {strongest or 'none'}.")
    if scored.failures:
        lines += ["", "Extras that could not be fetched (their factors were left out):", ""]
        lines += [f"- {what}: {why}" for what, why in sorted(scored.failures.items())]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- placement


def placement_rows(decided: Decided, placements: Mapping[str, Placement | str]) -> list[dict[str, Any]]:
    """One row per signal: opened (with levels), refused (with the reason), failed (with the error)."""
    rows = []
    for d in decided.decisions:
        s = d.signal
        row: dict[str, Any] = {
            "symbol": s.symbol,
            "side": s.direction.value,
            "strength": round(s.strength, 1),
        }
        if d.order is None:
            row.update(result="refused", detail=f"{d.code}: {d.reason}")
        elif decided.dry_run:
            o = d.order
            levels = o.levels
            row.update(
                result="would open",
                detail=f"{fmt_qty(o.quantity)} @ ~{fmt_decimal(o.reference_price)} x{o.leverage} "
                f"({fmt_usdt(o.notional)} USDT, cap: {o.cap.value}); stop {fmt_decimal(levels.stop)}, "
                f"TP1 {fmt_decimal(levels.tp1)}, TP2 {fmt_decimal(levels.tp2)}",
            )
        else:
            outcome = placements.get(d.key or "", "not sent")
            if isinstance(outcome, str):
                row.update(result="failed", detail=outcome)
            else:
                row.update(result=outcome.result.value, detail=placement_detail(outcome))
        rows.append(row)
    return rows


def placement_detail(p: Placement) -> str:
    if p.result is PlacementResult.FAILED or p.entry_price is None:
        return p.detail
    protection = ", ".join(f"{leg} {state}" for leg, state in sorted(p.protection.items()))
    text = (
        f"{fmt_qty(p.quantity)} @ {fmt_decimal(p.entry_price)} x{p.leverage}; stop {_opt(p.stop)}, TP1 {_opt(p.tp1)}, "
        f"TP2 {_opt(p.tp2)} [{protection}]"
    )
    return f"{text}; {p.detail}" if p.detail else text


def placement_markdown(decided: Decided, placements: Mapping[str, Placement | str]) -> str:
    rows = placement_rows(decided, placements)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["result"]] = counts.get(row["result"], 0) + 1
    snapshot = decided.snapshot
    title = "Order placement (dry run)" if decided.dry_run else "Order placement"
    lines = [
        f"# {title}: " + (", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "no signals"),
        "",
        f"Account: wallet {fmt_usdt(snapshot.wallet_balance)} USDT · "
        f"available {fmt_usdt(snapshot.available_balance)} · "
        f"today {fmt_usdt(snapshot.daily_pnl, signed=True)} "
        f"(realised {fmt_usdt(snapshot.realized_pnl_today, signed=True)}"
        f" + unrealised {fmt_usdt(snapshot.unrealized_pnl, signed=True)}) · "
        f"{len(snapshot.exposures)} positions and pending entries, open risk {fmt_usdt(snapshot.open_risk)} USDT "
        f"if every stop is hit",
        "",
    ]
    if decided.halted:
        lines += [f"> **Halted:** {decided.halted}", ""]
    if decided.no_monitor:
        lines += [f"> **Entries refused:** {decided.no_monitor}", ""]
    lines += [f"- {note}" for note in decided.notes]
    lines += placement_table_lines(rows)
    return "\n".join(lines)


def placement_table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """placement_rows as a markdown table (no lines without rows)."""
    if not rows:
        return []
    return [
        "| symbol | side | strength | result | detail |",
        "|---|---|---|---|---|",
        *(f"| {r['symbol']} | {r['side']} | {r['strength']} | {r['result']} | {r['detail']} |" for r in rows),
    ]


# ---------------------------------------------------------------------------------------------- account


def status_rows(status: AccountStatus) -> list[dict[str, Any]]:
    return [
        {
            "symbol": p.symbol,
            "side": p.direction.value,
            "qty": fmt_qty(p.quantity),
            "entry": fmt_price(p.entry_price, p.tick_size),
            "mark": fmt_price(p.mark_price, p.tick_size),
            "pnl": fmt_usdt(p.unrealized_pnl, signed=True),
            "pnl %": fmt_pct(p.pnl_pct).removesuffix(" %"),
            "lev": p.leverage or "-",
            "stop": "-" if p.stop is None else fmt_price(p.stop, p.tick_size),
            "TP1": p.tp1,
        }
        for p in status.positions
    ]


def status_markdown(status: AccountStatus) -> str:
    lines = [
        f"# Account {format_utc(status.time_ms)}",
        "",
        "| balance | unrealised PnL | margin balance | available | positions | realised today |",
        "|---|---|---|---|---|---|",
        f"| {fmt_usdt(status.wallet_balance)} | {fmt_usdt(status.unrealized_pnl, signed=True)} | "
        f"{fmt_usdt(status.margin_balance)} | {fmt_usdt(status.available_balance)} | "
        f"{len(status.positions)}/{status.max_positions} | {fmt_usdt(status.realized_today, signed=True)} |",
        "",
    ]
    if status.halted:
        lines += [f"> **New entries halted today:** {status.halted}", ""]
    if status.pending_entries:
        lines += [f"Entries pending: {', '.join(status.pending_entries)}", ""]
    rows = status_rows(status)
    if rows:
        header = list(rows[0])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    else:
        lines.append("No open positions.")
    lines += [f"- {note}" for note in status.notes]
    return "\n".join(lines)


def day_markdown(stats: DayStats) -> str:
    r = stats.report
    lines = [
        f"# Daily report {r.day}",
        "",
        "| net PnL | realised | fees | funding | trades | won | lost | win rate | TP1 reached |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {fmt_usdt(r.net_pnl, signed=True)} | {fmt_usdt(r.realized_pnl, signed=True)} | "
        f"{fmt_usdt(-r.fees, signed=True)} | {fmt_usdt(r.funding, signed=True)} | {r.trades} | {r.wins} | "
        f"{r.losses} | {'-' if stats.win_rate is None else f'{stats.win_rate:.0f} %'} | {stats.tp1_hits} |",
        "",
        f"Balance {fmt_usdt(r.wallet_balance)} USDT · equity {fmt_usdt(r.equity)} USDT",
    ]
    if stats.exits:
        lines += ["", "| exit | trades |", "|---|---|"]
        lines += [f"| {reason} | {count} |" for reason, count in sorted(stats.exits.items())]
    if r.halted is not None:
        lines += ["", f"> New entries were halted that day: {say_text('en', r.halted)}"]  # Prefect's pages: English
    if r.open_positions:
        lines += ["", f"Open now: {', '.join(p.symbol for p in r.open_positions)}"]
    return "\n".join(lines)
