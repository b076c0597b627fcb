"""The developer set of real Binance data, ../shared/data/binance (see its SOURCES.md), read by the importer's
own parser (ats.data): trade klines only, never the mark-price klines beside them. Nothing is copied into the
repository; tests using it skip only where it is absent."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from ats.data import Kind, identify, read_data_file
from ats.domain import Bars

BINANCE_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "binance"


@functools.cache
def _read(path: Path) -> Bars:
    data_file = identify(path)
    assert data_file.kind is Kind.KLINES
    bars = read_data_file(data_file)
    assert isinstance(bars, Bars)
    return bars


def real_klines(symbols: tuple[str, ...], interval: str = "1h") -> list[Bars]:
    """These symbols' trade klines from the developer set (skips the test when the set or a file is absent)."""
    paths = [BINANCE_DIR / "klines" / f"{symbol}-{interval}.csv" for symbol in symbols]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"real Binance data absent under {BINANCE_DIR}: {', '.join(missing)}")
    return [_read(p) for p in paths]
