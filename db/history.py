"""Imported market history in PostgreSQL: trade bars, mark-price bars and funding settlements, in bulk.

Rows go in by COPY (psycopg 3) into a temporary table, then one INSERT ... SELECT merges them: the fast path for
tens of thousands of bars. Merging is idempotent: a row already stored is kept as it is (a second import adds
nothing and changes nothing), except that it learns what it did not know (a NULL volume, a NULL mark price) from
a source that knows it for the same bar. A stored row that another source gives differently is kept, counted and
reported, never silently replaced.

`import_file` reads, checks and stores one file in one transaction: a malformed row stores nothing of its file.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, cast

import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ats.backtest.history import History
from ats.clock import format_utc
from ats.data import DataFile, FundingRates, Kind, read_data_file
from ats.domain import BAR_FIELDS, Bars, interval_ms
from db.market import BAR_CONFLICT, known_or_none, load_bars
from db.models import BarRow, FundingRateRow
from db.session import Database

Source = Literal["file", "rest"]  # ats data import | ats data download

_BAR_COLUMNS = ("symbol", "interval", "open_time_ms", *BAR_FIELDS)
_MARK_COLUMNS = ("symbol", "interval", "open_time_ms", "open", "high", "low", "close")
_FUNDING_COLUMNS = ("symbol", "funding_time_ms", "funding_rate", "mark_price")


@dataclass(frozen=True, slots=True)
class Stored:
    """What storing one series did."""

    rows: int  # rows given
    new: int  # inserted
    completed: int  # stored rows that learnt an unknown value (or became kept history)
    differing: int  # stored rows another source gives differently (kept as stored)
    first_difference_ms: int | None = None

    def __add__(self, other: Stored) -> Stored:
        first = [t for t in (self.first_difference_ms, other.first_difference_ms) if t is not None]
        return Stored(
            self.rows + other.rows,
            self.new + other.new,
            self.completed + other.completed,
            self.differing + other.differing,
            min(first) if first else None,
        )

    def summary(self) -> str:
        text = f"{self.new:,} new"
        if self.completed:
            text += f", {self.completed:,} completed"
        if self.differing:
            text += (
                f", {self.differing:,} differ from the stored rows, kept as stored (first at "
                f"{format_utc(self.first_difference_ms or 0)})"
            )
        return text


def store_bars(session: Session, bars: Bars, *, source: Source) -> Stored:
    """Trade klines into `bars`; unknown volumes stay NULL."""
    columns = {
        "symbol": [bars.symbol] * len(bars),
        "interval": [bars.interval] * len(bars),
        "open_time_ms": bars.open_time.tolist(),
        **{name: known_or_none(getattr(bars, name)) for name in BAR_FIELDS},
    }
    _copy(session, "import_bars", "bars", _BAR_COLUMNS, columns)
    differing = _differences(
        session,
        "bars",
        "import_bars",
        "symbol, interval, open_time_ms",
        "open_time_ms",
        exact=("open", "high", "low", "close"),
        when_known=BAR_FIELDS[4:],
    )
    names = ", ".join(f'"{c}"' for c in _BAR_COLUMNS)
    new, completed = _merged(
        session,
        f"INSERT INTO bars ({names}, source) SELECT {names}, :source FROM import_bars {BAR_CONFLICT}",  # noqa: S608
        source,
    )
    return Stored(len(bars), new, completed, *differing)


def store_mark_bars(session: Session, bars: Bars, *, source: Source) -> Stored:
    """Mark-price klines into `mark_bars` (prices only)."""
    columns = {
        "symbol": [bars.symbol] * len(bars),
        "interval": [bars.interval] * len(bars),
        "open_time_ms": bars.open_time.tolist(),
        **{name: getattr(bars, name).tolist() for name in ("open", "high", "low", "close")},
    }
    _copy(session, "import_mark_bars", "mark_bars", _MARK_COLUMNS, columns)
    differing = _differences(
        session,
        "mark_bars",
        "import_mark_bars",
        "symbol, interval, open_time_ms",
        "open_time_ms",
        exact=("open", "high", "low", "close"),
        when_known=(),
    )
    names = ", ".join(f'"{c}"' for c in _MARK_COLUMNS)
    new, completed = _merged(
        session,
        f"INSERT INTO mark_bars ({names}, source) SELECT {names}, :source FROM import_mark_bars "  # noqa: S608
        "ON CONFLICT DO NOTHING",
        source,
    )
    return Stored(len(bars), new, completed, *differing)


def store_funding(session: Session, rates: FundingRates, *, source: Source) -> Stored:
    """Funding settlements into `funding_rates`, exact (NUMERIC); an unknown mark price stays NULL."""
    columns: dict[str, Sequence[Any]] = {
        "symbol": [rates.symbol] * len(rates),
        "funding_time_ms": list(rates.time_ms),
        "funding_rate": list(rates.rate),
        "mark_price": list(rates.mark_price),
    }
    _copy(session, "import_funding", "funding_rates", _FUNDING_COLUMNS, columns)
    differing = _differences(
        session,
        "funding_rates",
        "import_funding",
        "symbol, funding_time_ms",
        "funding_time_ms",
        exact=("funding_rate",),
        when_known=("mark_price",),
    )
    names = ", ".join(_FUNDING_COLUMNS)
    new, completed = _merged(
        session,
        f"INSERT INTO funding_rates ({names}, source) SELECT {names}, :source FROM import_funding "  # noqa: S608
        "ON CONFLICT (symbol, funding_time_ms) DO UPDATE SET mark_price = EXCLUDED.mark_price "
        "WHERE funding_rates.mark_price IS NULL AND EXCLUDED.mark_price IS NOT NULL "
        "AND funding_rates.funding_rate = EXCLUDED.funding_rate",
        source,
    )
    return Stored(len(rates), new, completed, *differing)


def store(session: Session, kind: Kind, series: Bars | FundingRates, *, source: Source) -> Stored:
    """One parsed series into the table of its kind."""
    if kind is Kind.FUNDING:
        assert isinstance(series, FundingRates)
        return store_funding(session, series, source=source)
    assert isinstance(series, Bars)
    return (store_bars if kind is Kind.KLINES else store_mark_bars)(session, series, source=source)


@dataclass(frozen=True, slots=True)
class FileImport:
    """One imported file: what it held and what storing it did, and how long reading and storing took."""

    file: DataFile
    stored: Stored
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.stored.rows / self.seconds if self.seconds > 0 else 0.0


def import_file(database: Database, data_file: DataFile) -> FileImport:
    """Read, check and store one file in one transaction (MalformedData: nothing of it is stored)."""
    started = time.perf_counter()
    series = read_data_file(data_file)
    with database.session() as session:
        stored = store(session, data_file.kind, series, source="file")
    return FileImport(data_file, stored, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------- internals


def _copy(session: Session, table: str, like: str, names: Sequence[str], columns: dict[str, Sequence[Any]]) -> None:
    """The rows into a temporary table shaped like `like`'s columns (no constraints: the merge checks), dropped at
    commit, by COPY on the session's own connection."""
    raw = cast(psycopg.Connection[Any], session.connection().connection.driver_connection)
    quoted = ", ".join(f'"{c}"' for c in names)
    with raw.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{table}")
        cursor.execute(f"CREATE TEMPORARY TABLE {table} ON COMMIT DROP AS SELECT {quoted} FROM {like} WITH NO DATA")  # noqa: S608
        with cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
            for row in zip(*(columns[name] for name in names), strict=True):
                copy.write_row(row)


def _differences(
    session: Session,
    table: str,
    incoming: str,
    key: str,
    time_column: str,
    *,
    exact: Iterable[str],
    when_known: Iterable[str],
) -> tuple[int, int | None]:
    """How many incoming rows a stored row contradicts (a price, or a value both know), and the first one's time."""
    conditions = [f's."{c}" <> i."{c}"' for c in exact]
    conditions += [f'(s."{c}" IS NOT NULL AND i."{c}" IS NOT NULL AND s."{c}" <> i."{c}")' for c in when_known]
    row = session.execute(
        text(
            f"SELECT count(*), min(i.{time_column}) FROM {incoming} i JOIN {table} s USING ({key}) "  # noqa: S608
            f"WHERE {' OR '.join(conditions)}"
        )
    ).one()
    return int(row[0]), None if row[1] is None else int(row[1])


def _merged(session: Session, insert: str, source: Source) -> tuple[int, int]:
    """Run an INSERT ... SELECT (with its ON CONFLICT) and count the rows it inserted and the ones it updated."""
    row = session.execute(
        text(
            f"WITH merged AS ({insert} RETURNING (xmax = 0) AS inserted) "  # noqa: S608  (our own statements)
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged"
        ),
        {"source": source},
    ).one()
    return int(row[0]), int(row[1])


# ---------------------------------------------------------------------------------------------- reading back


@dataclass(frozen=True, slots=True)
class Coverage:
    """What is stored of one symbol at one interval."""

    symbol: str
    first_ms: int
    last_ms: int
    bars: int


def coverage(session: Session, interval: str) -> list[Coverage]:
    """Every symbol with bars of `interval`, with its first and last bar and how many there are."""
    rows = session.execute(
        select(BarRow.symbol, func.min(BarRow.open_time_ms), func.max(BarRow.open_time_ms), func.count())
        .where(BarRow.interval == interval)
        .group_by(BarRow.symbol)
        .order_by(BarRow.symbol)
    ).all()
    return [Coverage(symbol, int(first), int(last), int(count)) for symbol, first, last, count in rows]


FUNDING_SELECT = (
    FundingRateRow.symbol,
    FundingRateRow.funding_time_ms,
    FundingRateRow.funding_rate,
    FundingRateRow.mark_price,
)


def load_funding(session: Session, symbols: Sequence[str], *, since_ms: int, until_ms: int) -> dict[str, FundingRates]:
    rows = session.execute(
        select(*FUNDING_SELECT)
        .where(
            FundingRateRow.symbol.in_(list(symbols)),
            FundingRateRow.funding_time_ms >= since_ms,
            FundingRateRow.funding_time_ms < until_ms,
        )
        .order_by(FundingRateRow.symbol, FundingRateRow.funding_time_ms)
    ).all()
    grouped: dict[str, list[tuple[int, Decimal, Decimal | None]]] = {}
    for symbol, time_ms, rate, mark in rows:
        grouped.setdefault(symbol, []).append((int(time_ms), rate, mark))
    return {symbol: FundingRates(symbol, *map(tuple, zip(*found, strict=True))) for symbol, found in grouped.items()}


FINE_INTERVALS = ("1m", "5m")  # finest first: the intra-bar order comes from the finest stored


def load_history(
    session: Session, symbols: Sequence[str], interval: str, *, start_ms: int, end_ms: int, warmup_bars: int
) -> History:
    """The stored bars of [start - warmup, end), the finest stored intra-bar bars and the funding of [start, end)."""
    since = start_ms - warmup_bars * interval_ms(interval)
    bars = {s: b for s, b in load_bars(session, interval, symbols, since_ms=since, until_ms=end_ms).items() if len(b)}
    fine: dict[str, Bars] = {}
    for finer in FINE_INTERVALS:
        if interval_ms(finer) >= interval_ms(interval):
            continue
        wanted = [s for s in bars if s not in fine]
        for symbol, series in load_bars(session, finer, wanted, since_ms=start_ms, until_ms=end_ms).items():
            if len(series):
                fine[symbol] = series
    funding = load_funding(session, list(bars), since_ms=start_ms, until_ms=end_ms)
    return History(interval, bars, funding, fine)
