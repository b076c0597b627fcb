"""Market data and scans in PostgreSQL: symbols, closed bars, pools, scans, scan results and signals.

Every function takes the caller's session, so a flow decides what one transaction covers. Bars are stored
once (closed bars never change) and read back as NumPy `Bars` for the factor engine; pools are stored with
their full `PoolResult` so a later run can reuse or fall back to them; every factor of every scanned symbol
is kept so a user can see why a signal fired.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ats.clock import ms_to_datetime
from ats.domain import BAR_FIELDS, Band, Bars, Direction, Signal, SymbolRules
from ats.factors import FactorRow
from ats.placement import Candidate
from ats.universe import HOUR_MS, PoolKind, PoolResult
from db.models import BarRow, PoolMemberRow, PoolRow, ScanResultRow, ScanRow, SignalRow, SymbolRow

_RULE_COLUMNS = (
    "base_asset", "quote_asset", "status", "contract_type", "tick_size", "min_price", "max_price", "step_size",
    "min_qty", "max_qty", "market_step_size", "market_min_qty", "market_max_qty", "min_notional",
    "price_precision", "quantity_precision", "onboard_date_ms", "trigger_protect",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- symbols


def upsert_symbols(session: Session, rules: Mapping[str, SymbolRules]) -> int:
    """Store every symbol's current rules (exchangeInfo), replacing older ones. Returns how many."""
    if not rules:
        return 0
    rows = [{"symbol": r.symbol, **{c: getattr(r, c) for c in _RULE_COLUMNS}} for r in rules.values()]
    statement = insert(SymbolRow)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["symbol"],
            set_={**{c: statement.excluded[c] for c in _RULE_COLUMNS}, "updated_at": func.now()},
        ),
        rows,
    )
    return len(rows)


def stored_rules(session: Session, symbols: Iterable[str]) -> dict[str, SymbolRules]:
    """The stored rules of these symbols (as the last exchangeInfo gave them); unknown ones are left out."""
    rows = session.scalars(select(SymbolRow).where(SymbolRow.symbol.in_(list(symbols)))).all()
    return {row.symbol: SymbolRules(symbol=row.symbol, **{c: getattr(row, c) for c in _RULE_COLUMNS}) for row in rows}


# ---------------------------------------------------------------------------------------------- bars


def latest_bar_times(session: Session, interval: str, symbols: Iterable[str]) -> dict[str, int]:
    """Open time of the newest stored bar per symbol (symbols without bars are absent)."""
    rows = session.execute(
        select(BarRow.symbol, func.max(BarRow.open_time_ms))
        .where(BarRow.interval == interval, BarRow.symbol.in_(list(symbols)))
        .group_by(BarRow.symbol)
    ).all()
    return {symbol: int(latest) for symbol, latest in rows}


_KNOWABLE = ("volume", "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")
_PRICES = ("open", "high", "low", "close")

# A stored bar is kept as it is (a closed bar never changes), except that it learns what it did not know: an
# unknown (NULL) volume column takes the value another source knows for the same bar (same prices), and a 'live'
# bar that history also holds becomes history, so the trading cycle no longer prunes it.
BAR_CONFLICT = (
    "ON CONFLICT (symbol, interval, open_time_ms) DO UPDATE SET "
    + ", ".join(f'"{c}" = COALESCE(bars."{c}", EXCLUDED."{c}")' for c in _KNOWABLE)
    + ", source = CASE WHEN bars.source = 'live' THEN EXCLUDED.source ELSE bars.source END WHERE ("
    + " AND ".join(f'bars."{c}" = EXCLUDED."{c}"' for c in _PRICES)
    + ") AND ("
    + " OR ".join(f'(bars."{c}" IS NULL AND EXCLUDED."{c}" IS NOT NULL)' for c in _KNOWABLE)
    + " OR (bars.source = 'live' AND EXCLUDED.source <> 'live'))"
)


def known_or_none(values: np.ndarray) -> list[float | None]:
    """A float column as stored: NaN (unknown) becomes None (NULL), never 0."""
    return [None if v != v else v for v in values.tolist()]


def store_bars(session: Session, bars: Iterable[Bars]) -> int:
    """Insert the trading cycle's closed bars; returns how many were new or completed a stored bar's unknown
    volumes. Stored prices are kept as they are (a closed bar never changes).

    One statement over arrays (unnest) however many bars: the first fetch of a universe is ~20 000 rows. Rows go in
    key order, so two cycles storing the same bars at once wait for each other instead of deadlocking.
    """
    series = sorted((b for b in bars if len(b)), key=lambda b: (b.symbol, b.interval))
    if not series:
        return 0
    columns: dict[str, list[Any]] = {
        "symbol": [s.symbol for s in series for _ in range(len(s))],
        "interval": [s.interval for s in series for _ in range(len(s))],
        "open_time_ms": np.concatenate([s.open_time for s in series]).tolist(),
    }
    for name in BAR_FIELDS:
        columns[name] = known_or_none(np.concatenate([getattr(s, name) for s in series]))
    casts = {"symbol": "text[]", "interval": "text[]", "open_time_ms": "bigint[]"}
    names = ", ".join(f'"{c}"' for c in columns)
    arrays = ", ".join(f"CAST(:{c} AS {casts.get(c, 'float8[]')})" for c in columns)
    result = session.execute(
        text(
            f"INSERT INTO bars ({names}) SELECT * FROM unnest({arrays}) AS fetched({names}) "  # noqa: S608
            f'ORDER BY "symbol", "interval", "open_time_ms" {BAR_CONFLICT}'
        ),
        columns,
    )
    return int(getattr(result, "rowcount", 0) or 0)


def load_bars(
    session: Session, interval: str, symbols: Sequence[str], *, since_ms: int, until_ms: int | None = None
) -> dict[str, Bars]:
    """Stored bars of each symbol opening in [since, until), oldest first (an empty Bars if none)."""
    query = (
        select(BarRow.symbol, BarRow.open_time_ms, *(getattr(BarRow, name) for name in BAR_FIELDS))
        .where(BarRow.interval == interval, BarRow.symbol.in_(list(symbols)), BarRow.open_time_ms >= since_ms)
        .order_by(BarRow.symbol, BarRow.open_time_ms)
    )
    if until_ms is not None:
        query = query.where(BarRow.open_time_ms < until_ms)
    rows = session.execute(query).all()
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row[1:])
    out: dict[str, Bars] = {}
    for symbol in symbols:
        found = grouped.get(symbol)
        if not found:
            out[symbol] = Bars.empty(symbol, interval)
            continue
        data = np.asarray(found, dtype=np.float64)
        out[symbol] = Bars(
            symbol,
            interval,
            np.asarray([r[0] for r in found], dtype=np.int64),
            *(data[:, i + 1].copy() for i in range(len(BAR_FIELDS))),
        )
    return out


def prune_bars(session: Session, interval: str, *, before_ms: int) -> int:
    """Drop the cycle's own bars older than any window still needs (imported history stays); returns how many
    went."""
    result = session.execute(
        delete(BarRow).where(BarRow.interval == interval, BarRow.open_time_ms < before_ms, BarRow.source == "live")
    )
    return int(getattr(result, "rowcount", 0) or 0)


# ---------------------------------------------------------------------------------------------- pools


def save_pool(
    session: Session, pool: PoolResult, *, interval: str, refresh_hours: float, flow_run_id: str | None
) -> int:
    """Store one pool build (including a fallback, marked as such) with its members; returns its id."""
    built_at = ms_to_datetime(pool.built_at_ms)
    row = PoolRow(
        kind=pool.kind,
        built_at=built_at,
        valid_until=ms_to_datetime(pool.built_at_ms + round(refresh_hours * HOUR_MS)),
        interval=interval,
        fell_back=pool.fell_back,
        reason=pool.reason,
        details=pool.to_dict(),
        flow_run_id=flow_run_id,
    )
    session.add(row)
    session.flush()
    session.add_all(
        PoolMemberRow(pool_id=row.id, symbol=symbol, rank=rank, score=pool.scores.get(symbol, 0.0))
        for rank, symbol in enumerate(pool.symbols, 1)
    )
    return row.id


def latest_pool(session: Session, kind: PoolKind, interval: str, *, good_only: bool = False) -> PoolResult | None:
    """The newest stored pool of a kind; with `good_only`, the newest one that did not fall back."""
    query = select(PoolRow.details).where(PoolRow.kind == kind, PoolRow.interval == interval)
    if good_only:
        query = query.where(PoolRow.fell_back.is_(False))
    details = session.scalar(query.order_by(PoolRow.built_at.desc(), PoolRow.id.desc()).limit(1))
    return None if details is None else PoolResult.from_dict(details)


# ---------------------------------------------------------------------------------------------- scans


def start_scan(session: Session, *, interval: str, min_score: float, started_ms: int, flow_run_id: str | None) -> int:
    row = ScanRow(
        started_at=ms_to_datetime(started_ms),
        interval=interval,
        min_score=min_score,
        status="running",
        flow_run_id=flow_run_id,
    )
    session.add(row)
    session.flush()
    return row.id


def finish_scan(
    session: Session,
    scan_id: int,
    *,
    finished_ms: int,
    bar_open_time_ms: int | None,
    universe_size: int,
    signal_count: int,
    status: str = "done",
    error: str | None = None,
) -> None:
    session.execute(
        update(ScanRow)
        .where(ScanRow.id == scan_id)
        .values(
            finished_at=ms_to_datetime(finished_ms),
            bar_open_time_ms=bar_open_time_ms,
            universe_size=universe_size,
            signal_count=signal_count,
            status=status,
            error=error,
        )
    )


def factor_record(row: FactorRow) -> dict[str, Any]:
    """Everything a scan knows about one symbol, as stored (JSON-safe floats)."""
    return {
        **{name: round(value, 4) for name, value in row.factors.items()},
        "atr_pct": round(row.atr_pct, 6),
        "coverage": round(row.coverage, 4),
        "missing": list(row.missing),
        "close": row.close,
    }


def scan_ranking(rows: Sequence[FactorRow]) -> list[FactorRow]:
    """Every row of a scan in rank order (as stored and as shown): scored rows with a direction, strongest first,
    then the rest; ties by symbol."""
    return sorted(rows, key=lambda r: (r.direction is None or not r.scored, -r.strength, r.symbol))


def store_scan_results(session: Session, scan_id: int, rows: Sequence[FactorRow]) -> None:
    """Every factor of every symbol of the scan; rank 1 is the strongest scored row."""
    session.execute(
        insert(ScanResultRow),
        [
            {
                "scan_id": scan_id,
                "symbol": row.symbol,
                "rank": rank,
                "direction": row.direction.value if row.direction is not None else None,
                "strength": row.strength,
                "band": row.band.value,
                "factors": factor_record(row),
                "insufficient_reason": row.insufficient,
            }
            for rank, row in enumerate(scan_ranking(rows), 1)
        ],
    )


# ---------------------------------------------------------------------------------------------- signals


def record_signal(
    session: Session, account: str, signal: Signal, *, scan_id: int | None, source: str
) -> tuple[int, bool]:
    """Store a signal once per (account, symbol, bar, direction); returns (id, whether it is new)."""
    inserted = session.scalar(
        insert(SignalRow)
        .values(
            account=account,
            scan_id=scan_id,
            symbol=signal.symbol,
            direction=signal.direction.value,
            strength=min(max(signal.strength, 0.0), 100.0),
            band=signal.band.value,
            bar_open_time_ms=signal.bar_open_time_ms,
            price=signal.price,
            factors=signal_factors(signal),
            source=source,
        )
        .on_conflict_do_nothing(constraint="uq_signals_identity")
        .returning(SignalRow.id)
    )
    if inserted is not None:
        return int(inserted), True
    existing = session.scalar(
        select(SignalRow.id).where(
            SignalRow.account == account,
            SignalRow.symbol == signal.symbol,
            SignalRow.bar_open_time_ms == signal.bar_open_time_ms,
            SignalRow.direction == signal.direction.value,
        )
    )
    assert existing is not None, "a conflicting signal row must exist"
    return int(existing), False


def signal_factors(signal: Signal) -> dict[str, Any]:
    return {
        **{k: round(v, 4) for k, v in signal.factors.items()},
        "atr_pct": signal.atr_pct,
        "trend": signal.trend,
        "liquidity": signal.liquidity,
    }


def _signal_of(row: SignalRow) -> Signal:
    factors = dict(row.factors)
    extra = {k: float(factors.pop(k)) for k in ("atr_pct", "trend", "liquidity") if k in factors}
    return Signal(
        symbol=row.symbol,
        direction=Direction(row.direction),
        strength=row.strength,
        band=Band(row.band),
        bar_open_time_ms=row.bar_open_time_ms,
        price=Decimal(row.price),
        factors={k: float(v) for k, v in factors.items() if isinstance(v, int | float)},
        atr_pct=extra.get("atr_pct", 0.0),
        trend=extra.get("trend", 0.0),
        liquidity=extra.get("liquidity", 50.0),
    )


def new_signals(
    session: Session,
    account: str,
    *,
    min_score: float,
    ids: Sequence[int] | None = None,
    since_bar_ms: int | None = None,
    lock: bool = False,
) -> list[Candidate]:
    """Signals not yet acted on (status 'new'), strongest first: given ids, or those of bars since a time.

    With `lock`, the rows stay locked until the transaction ends (the order placement holds them).
    """
    query = select(SignalRow).where(
        SignalRow.account == account, SignalRow.status == "new", SignalRow.strength >= min_score
    )
    if ids is not None:
        query = query.where(SignalRow.id.in_(list(ids)))
    if since_bar_ms is not None:
        query = query.where(SignalRow.bar_open_time_ms >= since_bar_ms)
    query = query.order_by(SignalRow.strength.desc(), SignalRow.id)
    if lock:
        query = query.with_for_update()
    return [Candidate(row.id, _signal_of(row), row.source) for row in session.scalars(query)]


def signal_status(session: Session, signal_id: int) -> str | None:
    return session.scalar(select(SignalRow.status).where(SignalRow.id == signal_id))


def set_signal_status(
    session: Session,
    signal_id: int,
    status: str,
    *,
    code: str | None = None,
    reason: str | None = None,
    intent_key: str | None = None,
) -> None:
    """Record what became of a signal: accepted (an intent was recorded), refused (with why), placed, failed."""
    values: dict[str, Any] = {"status": status}
    if code is not None or reason is not None or status == "new":
        values.update(refusal_code=code, refusal_reason=reason)
    if intent_key is not None:
        values["intent_key"] = intent_key
    session.execute(update(SignalRow).where(SignalRow.id == signal_id).values(**values))
