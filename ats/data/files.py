"""Binance public-data files (data.binance.vision's layout) read into bars and funding rates.

Folders say what a file holds, as on Binance's site: `klines/` trade-price klines, `markPriceKlines/` mark-price
klines (never read as trade klines: another price, and no volume), `fundingRate/` funding settlements. A file
outside these folders is not guessed at. The symbol and interval come from the file name: `BTCUSDT-1h.csv`,
`BTCUSDT-1h-2024-01.zip`, `BTCUSDT-funding.csv`, `BTCUSDT-fundingRate-2024-01.zip`. A file is a CSV or a ZIP of
CSVs, with or without a header row, its times in ms or µs.

An empty cell is unknown: NaN in the bars (NULL once stored), never 0. The developer set holds only open time and
OHLCV, so quote volume, trade count and taker-buy volumes are unknown there. A row that cannot be a bar or a
settlement (a missing price, text where a number belongs, high below low, an open time off the interval's grid
or repeated, a close time that does not fit the interval of the file's name) raises MalformedData naming the
file and line: a file is read whole or not at all.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path

import numpy as np

from ats.data.series import EARLIEST_MS, MICROS_FROM, FundingRates, MalformedData, check_funding
from ats.domain import BAR_FIELDS, BINANCE_INTERVALS, Bars, interval_ms

DAY_MS = 86_400_000
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")
_DATA_SUFFIXES = (".csv", ".zip")


class Kind(StrEnum):
    """What a file holds; the values are Binance's folder names."""

    KLINES = "klines"
    MARK = "markPriceKlines"
    FUNDING = "fundingRate"


_OTHER_FOLDERS = {
    "indexPriceKlines": "index-price klines are not imported",
    "premiumIndexKlines": "premium-index klines are not imported",
    "aggTrades": "trades are not imported",
    "trades": "trades are not imported",
    "bookTicker": "book tickers are not imported",
    "bookDepth": "book depth is not imported",
    "metrics": "metrics are not imported",
}


class UnknownFile(ValueError):
    """A file whose content cannot be told from its folder and name; nothing is read from it."""


@dataclass(frozen=True, slots=True)
class DataFile:
    """A file, what it holds, and whose."""

    path: Path
    kind: Kind
    symbol: str
    interval: str | None  # None for funding rates

    def describe(self) -> str:
        what = {Kind.KLINES: "klines", Kind.MARK: "mark-price klines", Kind.FUNDING: "funding rates"}[self.kind]
        return f"{self.symbol} {self.interval} {what}" if self.interval else f"{self.symbol} {what}"


def identify(path: Path) -> DataFile:
    """What `path` holds, from its nearest folder named as on Binance's site and its name; UnknownFile if unsure."""
    if path.suffix.lower() not in _DATA_SUFFIXES:
        raise UnknownFile(f"{path}: not a .csv or .zip file")
    kind: Kind | None = None
    for parent in path.absolute().parents:
        if parent.name in _OTHER_FOLDERS:
            raise UnknownFile(f"{path}: {_OTHER_FOLDERS[parent.name]}")
        if parent.name in Kind.__members__.values():
            kind = Kind(parent.name)
            break
    if kind is None:
        raise UnknownFile(
            f"{path}: not under a klines/, markPriceKlines/ or fundingRate/ folder, so it cannot be told whether "
            "it holds trade klines, mark-price klines or funding rates"
        )
    parts = path.name[: -len(path.suffix)].split("-")
    symbol = parts[0]
    if not _SYMBOL_RE.match(symbol):
        raise UnknownFile(f"{path}: the name does not start with a symbol (as in BTCUSDT-1h-2024-01.zip)")
    if kind is Kind.FUNDING:
        return DataFile(path, kind, symbol, None)
    interval = parts[1] if len(parts) > 1 else ""
    if interval not in BINANCE_INTERVALS:
        raise UnknownFile(f"{path}: no kline interval after the symbol in the name (as in BTCUSDT-1h-2024-01.zip)")
    return DataFile(path, kind, symbol, interval)


def find_data_files(root: Path) -> tuple[list[DataFile], list[str]]:
    """Every .csv and .zip under `root` (or `root` itself), sorted; and why each one that cannot be read is not.

    Other files (SOURCES.md, Binance's .CHECKSUM files) are not data and are passed over.
    """
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    found: list[DataFile] = []
    skipped: list[str] = []
    for path in paths:
        if path.suffix.lower() not in _DATA_SUFFIXES and path != root:
            continue
        try:
            found.append(identify(path))
        except UnknownFile as exc:
            skipped.append(str(exc))
    return found, skipped


def read_data_file(data_file: DataFile) -> Bars | FundingRates:
    """The file's bars (klines, mark-price klines: prices only) or funding rates, checked whole."""
    parts = list(_texts(data_file.path))
    if data_file.kind is Kind.FUNDING:
        rates = [parse_funding(text, where=where, symbol=data_file.symbol) for where, text in parts]
        return _merge_funding(data_file.symbol, rates, [where for where, _ in parts])
    assert data_file.interval is not None
    series = [
        parse_klines(text, where=where, symbol=data_file.symbol, interval=data_file.interval) for where, text in parts
    ]
    bars = _merge_bars(data_file.symbol, data_file.interval, series, [where for where, _ in parts])
    return bars.prices_only() if data_file.kind is Kind.MARK else bars


def _texts(path: Path) -> Iterator[tuple[str, str]]:
    """(where, text) of a CSV, or of each CSV inside a ZIP (where = archive:member)."""
    if path.suffix.lower() != ".zip":
        yield str(path), _decode(path.read_bytes(), str(path))
        return
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
            if not members:
                raise MalformedData(str(path), None, "the archive holds no .csv file")
            for member in members:
                where = f"{path}:{member}"
                yield where, _decode(archive.read(member), where)
    except zipfile.BadZipFile as exc:
        raise MalformedData(str(path), None, f"not a readable ZIP archive ({exc})") from None


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedData(where, None, f"not UTF-8 text (byte {exc.start})") from None


# ---------------------------------------------------------------------------------------------- klines

# Binance's header names (and the REST documentation's) for each column Bars keeps.
_KLINE_COLUMNS = {
    "open_time": ("open_time", "opentime"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "volume": ("volume",),
    "close_time": ("close_time", "closetime"),
    "quote_volume": ("quote_volume", "quote_asset_volume"),
    "trades": ("count", "trades", "number_of_trades"),
    "taker_buy_volume": ("taker_buy_volume", "taker_buy_base_asset_volume"),
    "taker_buy_quote_volume": ("taker_buy_quote_volume", "taker_buy_quote_asset_volume"),
}
_KLINE_POSITIONS = {name: i for i, name in enumerate(_KLINE_COLUMNS)}  # a headerless row: Binance's 12 columns
_KLINE_WIDTH = 12
_REQUIRED_PRICES = ("open", "high", "low", "close")
_VOLUMES = ("volume", "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")


def parse_klines(text: str, *, where: str, symbol: str, interval: str) -> Bars:
    """One CSV of klines (Binance's 12 columns, with or without a header) as Bars, oldest first.

    Open times may be in ms or µs (converted to ms). Empty volume cells are unknown (NaN); prices are required.
    """
    step = interval_ms(interval)
    rows, lines, columns = _table(
        text, where, _KLINE_COLUMNS, _KLINE_POSITIONS, _KLINE_WIDTH, ("open_time", *_REQUIRED_PRICES)
    )
    if not rows:
        return Bars.empty(symbol, interval)
    line_of = np.asarray(lines, dtype=np.int64)
    raw_open = _integers(rows, columns["open_time"], "open_time", where, lines)
    micros = raw_open >= MICROS_FROM
    unit = np.where(micros, 1000, 1)
    if (raw_open % unit != 0).any():
        bad = int(np.flatnonzero(raw_open % unit != 0)[0])
        raise MalformedData(where, lines[bad], f"open time {raw_open[bad]} µs is not a whole millisecond")
    open_ms = raw_open // unit
    if (open_ms < EARLIEST_MS).any():
        bad = int(np.flatnonzero(open_ms < EARLIEST_MS)[0])
        raise MalformedData(where, lines[bad], f"open time {raw_open[bad]} is not a time in ms or µs")
    if step <= DAY_MS and (open_ms % step != 0).any():
        bad = int(np.flatnonzero(open_ms % step != 0)[0])
        raise MalformedData(where, lines[bad], f"open time {raw_open[bad]} is not on the {interval} grid")
    if "close_time" in columns:
        close = _numbers(rows, columns["close_time"], "close_time", where, lines, required=False)
        expected = raw_open + step * unit - 1
        wrong = np.isfinite(close) & (close != expected)
        if wrong.any():
            bad = int(np.flatnonzero(wrong)[0])
            raise MalformedData(
                where,
                lines[bad],
                f"close time {int(close[bad])} does not close a {interval} bar opening at {raw_open[bad]} "
                "(is the interval in the file name right?)",
            )
    values = {
        name: _numbers(rows, columns.get(name), name, where, lines, required=name in _REQUIRED_PRICES)
        for name in BAR_FIELDS
    }
    _check_bars(values, where, lines)
    order = np.argsort(open_ms, kind="stable")
    repeated = np.flatnonzero(np.diff(open_ms[order]) == 0)
    if repeated.size:
        first, second = order[repeated[0]], order[repeated[0] + 1]
        raise MalformedData(
            where, int(line_of[second]), f"open time {raw_open[second]} repeats line {int(line_of[first])}"
        )
    return Bars(symbol, interval, open_ms[order], *(values[name][order] for name in BAR_FIELDS))


def _check_bars(values: dict[str, np.ndarray], where: str, lines: Sequence[int]) -> None:
    o, h, lo, c = (values[name] for name in _REQUIRED_PRICES)
    checks = (
        ((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0), "a price is not positive"),
        (h < lo, "high is below low"),
        ((h < np.maximum(o, c)) | (lo > np.minimum(o, c)), "open or close lies outside high..low"),
        *((values[name] < 0, f"{name} is negative") for name in _VOLUMES),
    )
    for failed, reason in checks:
        with np.errstate(invalid="ignore"):
            hits = np.flatnonzero(failed)
        if hits.size:
            raise MalformedData(where, lines[int(hits[0])], reason)


def _merge_bars(symbol: str, interval: str, series: Sequence[Bars], wheres: Sequence[str]) -> Bars:
    """The members of one archive as one series; an open time in two members is refused."""
    if len(series) == 1:
        return series[0]
    times = np.concatenate([s.open_time for s in series])
    order = np.argsort(times, kind="stable")
    if (np.diff(times[order]) == 0).any():
        raise MalformedData(", ".join(wheres), None, "the same open time is in two members of the archive")
    return Bars(
        symbol,
        interval,
        times[order],
        *(np.concatenate([getattr(s, name) for s in series])[order] for name in BAR_FIELDS),
    )


# ---------------------------------------------------------------------------------------------- funding

# The developer set's and the REST API's names, and Binance's public files' (calc_time, last_funding_rate).
_FUNDING_COLUMNS = {
    "time": ("funding_time", "fundingtime", "calc_time"),
    "rate": ("funding_rate", "fundingrate", "last_funding_rate"),
    "mark_price": ("mark_price", "markprice"),
}
_FUNDING_POSITIONS = {"time": 0, "rate": 1, "mark_price": 2}  # a headerless row: time, rate[, mark price]
_FUNDING_WIDTH = 3


def parse_funding(text: str, *, where: str, symbol: str) -> FundingRates:
    """One CSV of funding settlements as FundingRates, oldest first; an empty mark price is unknown (None)."""
    rows, lines, columns = _table(
        text, where, _FUNDING_COLUMNS, _FUNDING_POSITIONS, _FUNDING_WIDTH, ("time", "rate"), min_width=2
    )
    times = _integers(rows, columns["time"], "funding time", where, lines)
    rates = [_decimal(row[columns["rate"]], "funding rate", where, line) for row, line in zip(rows, lines, strict=True)]
    mark_at = columns.get("mark_price")
    marks = [
        _decimal(row[mark_at], "mark price", where, line)
        if mark_at is not None and mark_at < len(row) and row[mark_at].strip()
        else None
        for row, line in zip(rows, lines, strict=True)
    ]
    return check_funding(symbol, times.tolist(), rates, marks, where=where, lines=lines)


def _merge_funding(symbol: str, parts: Sequence[FundingRates], wheres: Sequence[str]) -> FundingRates:
    """The members of one archive as one series; a settlement in two members is refused."""
    if len(parts) == 1:
        return parts[0]
    entries = sorted(
        (entry for p in parts for entry in zip(p.time_ms, p.rate, p.mark_price, strict=True)), key=lambda e: e[0]
    )
    times = [e[0] for e in entries]
    if len(set(times)) != len(times):
        raise MalformedData(", ".join(wheres), None, "the same settlement is in two members of the archive")
    return FundingRates(symbol, tuple(times), tuple(e[1] for e in entries), tuple(e[2] for e in entries))


def _decimal(cell: str, name: str, where: str, line: int) -> Decimal:
    try:
        value = Decimal(cell.strip())
    except InvalidOperation:
        raise MalformedData(where, line, f"{name} {cell!r} is not a number") from None
    if not value.is_finite():
        raise MalformedData(where, line, f"{name} {cell!r} is not a finite number")
    return value


# ---------------------------------------------------------------------------------------------- CSV


def _table(
    text: str,
    where: str,
    names: dict[str, tuple[str, ...]],
    positions: dict[str, int],
    width: int,
    required: Sequence[str],
    *,
    min_width: int | None = None,
) -> tuple[list[list[str]], list[int], dict[str, int]]:
    """The data rows with their line numbers, and the column of each known name (from a header row when the first
    row has one, else Binance's positions). Every row must be as wide as the header (or the layout)."""
    reader = csv.reader(io.StringIO(text))
    rows: list[list[str]] = []
    lines: list[int] = []
    columns: dict[str, int] | None = None
    expected: tuple[int, int] = (min_width or width, width)
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if columns is None:
            if _is_header(row):
                header = [cell.strip().lower() for cell in row]
                columns = {name: header.index(a) for name, aliases in names.items() for a in aliases if a in header}
                missing = [name for name in required if name not in columns]
                if missing:
                    raise MalformedData(where, reader.line_num, f"the header lacks {', '.join(missing)}")
                expected = (len(row), len(row))
                continue
            columns = dict(positions)
        if not expected[0] <= len(row) <= expected[1]:
            wanted = str(expected[1]) if expected[0] == expected[1] else f"{expected[0]} to {expected[1]}"
            raise MalformedData(where, reader.line_num, f"{len(row)} columns, expected {wanted}")
        rows.append(row)
        lines.append(reader.line_num)
    return rows, lines, columns or dict(positions)


def _is_header(row: Sequence[str]) -> bool:
    first = row[0].strip()
    return bool(first) and not first.lstrip("-").isdigit()


def _integers(rows: Sequence[Sequence[str]], column: int, name: str, where: str, lines: Sequence[int]) -> np.ndarray:
    out = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        cell = row[column].strip()
        if not cell.isdigit():
            what = "is empty" if not cell else f"{cell!r} is not a whole number"
            raise MalformedData(where, lines[i], f"{name} {what}")
        out[i] = int(cell)
    return out


def _numbers(
    rows: Sequence[Sequence[str]],
    column: int | None,
    name: str,
    where: str,
    lines: Sequence[int],
    *,
    required: bool,
) -> np.ndarray:
    """One column as float64, NaN where the cell is empty (unknown); text or a non-finite number is refused."""
    if column is None:
        return np.full(len(rows), np.nan)
    cells = [row[column].strip() if column < len(row) else "" for row in rows]
    empty = np.fromiter((not c for c in cells), dtype=bool, count=len(cells))
    try:
        values = np.array([c or "0" for c in cells], dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        for i, cell in enumerate(cells):
            try:
                ok = not cell or np.isfinite(float(cell))
            except ValueError:
                ok = False
            if not ok:
                raise MalformedData(where, lines[i], f"{name} {cell!r} is not a number") from None
    if required and empty.any():
        raise MalformedData(where, lines[int(np.flatnonzero(empty)[0])], f"{name} is empty")
    assert values is not None
    values[empty] = np.nan
    return values
