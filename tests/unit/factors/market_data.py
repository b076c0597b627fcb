"""Reads real klines from ../shared/data/market (Binance kline CSV files) when that directory exists.

Files are expected in Binance's public-data layout, e.g. `BTCUSDT-1h-2025-01.csv` (optionally .zip or .gz,
with or without a header row); the symbol and interval come from the file name, or from the enclosing
directories when the name does not carry them. Open times in microseconds (Binance's newer files) are
converted to milliseconds. Nothing is copied into the repository.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from ats.domain import BINANCE_INTERVALS, Bars

MARKET_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "market"


def _text(path: Path) -> str:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return "\n".join(archive.read(name).decode() for name in archive.namelist() if name.endswith(".csv"))
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode()
    return path.read_text()


def _identify(path: Path) -> tuple[str, str] | None:
    parts = [*path.name.split(".")[0].split("-"), *(p.name for p in path.parents)]
    symbol = next((p.upper() for p in parts if p.upper().endswith("USDT")), None)
    interval = next((p for p in parts if p in BINANCE_INTERVALS), None)
    return (symbol, interval) if symbol and interval else None


def _rows(text: str) -> list[list[float]]:
    rows = []
    for record in csv.reader(io.StringIO(text)):
        try:
            rows.append([float(x) for x in record[:11]])
        except (ValueError, IndexError):
            continue  # a header or a malformed line
    return [r for r in rows if len(r) == 11]


def load_market_bars(root: Path = MARKET_DIR) -> dict[tuple[str, str], Bars]:
    """(symbol, interval) -> Bars, oldest first, duplicates removed; empty when nothing usable exists."""
    collected: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    if not root.is_dir():
        return {}
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".csv", ".zip", ".gz") or not path.is_file():
            continue
        key = _identify(path)
        if key is not None:
            collected[key].extend(_rows(_text(path)))
    out = {}
    for (symbol, interval), rows in collected.items():
        data = np.asarray(rows)
        times = data[:, 0].astype(np.int64)
        times = np.where(times > 10**14, times // 1000, times)
        _, first = np.unique(times, return_index=True)
        data, times = data[first], times[first]
        out[(symbol, interval)] = Bars(
            symbol,
            interval,
            times,
            *(data[:, i].copy() for i in (1, 2, 3, 4, 5, 7, 8, 9, 10)),
        )
    return out
