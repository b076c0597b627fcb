"""Binance public-data files: layouts, header or not, ms or µs, ZIP, unknown cells, and refusals naming file:line."""

from __future__ import annotations

import zipfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from ats.data import (
    FundingRates,
    Kind,
    MalformedData,
    UnknownFile,
    find_data_files,
    funding_from_rest,
    identify,
    parse_funding,
    parse_klines,
    read_data_file,
)
from ats.domain import Bars
from ats.exchange.base import FundingRate

HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
)
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
HOUR = 3_600_000
# The developer set's shape: open time and OHLCV, every other column empty.
OHLCV_ONLY = [
    f"{T0},100.0,101.5,99.5,101.0,12.5,,,,,,",
    f"{T0 + HOUR},101.0,102.0,100.0,100.5,8.25,,,,,,",
    f"{T0 + 2 * HOUR},100.5,100.5,98.0,99.0,20.0,,,,,,",
]
# Binance's full rows (the archive files), with the close time and every volume.
FULL = [
    f"{T0},100.0,101.5,99.5,101.0,12.5,{T0 + HOUR - 1},1262.5,40,6.0,606.0,0",
    f"{T0 + HOUR},101.0,102.0,100.0,100.5,8.25,{T0 + 2 * HOUR - 1},833.0,31,4.0,404.0,0",
]


def klines(lines: list[str], *, interval: str = "1h") -> Bars:
    return parse_klines("\n".join(lines) + "\n", where="f.csv", symbol="BTCUSDT", interval=interval)


def refusal(lines: list[str], *, interval: str = "1h") -> str:
    with pytest.raises(MalformedData) as info:
        klines(lines, interval=interval)
    return str(info.value)


def test_a_header_is_optional_and_empty_columns_are_unknown_not_zero() -> None:
    with_header, without = klines([HEADER, *OHLCV_ONLY]), klines(OHLCV_ONLY)
    for bars in (with_header, without):
        assert bars.open_time.tolist() == [T0, T0 + HOUR, T0 + 2 * HOUR]
        assert bars.close.tolist() == [101.0, 100.5, 99.0]
        assert bars.volume.tolist() == [12.5, 8.25, 20.0]
        for name in ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"):
            assert np.isnan(getattr(bars, name)).all(), name


def test_full_binance_rows_keep_every_column() -> None:
    bars = klines([HEADER, *FULL])
    assert bars.quote_volume.tolist() == [1262.5, 833.0]
    assert bars.trades.tolist() == [40.0, 31.0]
    assert bars.taker_buy_quote_volume.tolist() == [606.0, 404.0]


def test_microsecond_times_are_read_as_milliseconds() -> None:
    micros = [
        f"{T0 * 1000},100.0,101.5,99.5,101.0,12.5,{(T0 + HOUR) * 1000 - 1},1262.5,40,6.0,606.0,0",
        f"{(T0 + HOUR) * 1000},101.0,102.0,100.0,100.5,8.25,{(T0 + 2 * HOUR) * 1000 - 1},833.0,31,4.0,404.0,0",
    ]
    assert klines(micros).open_time.tolist() == klines(FULL).open_time.tolist()
    assert "not a whole millisecond" in refusal([f"{T0 * 1000 + 7},100,101,99,100,1,,,,,,"])


def test_rows_come_out_oldest_first() -> None:
    assert klines(OHLCV_ONLY[::-1]).open_time.tolist() == [T0, T0 + HOUR, T0 + 2 * HOUR]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (f"{T0 + 3 * HOUR},100,abc,99,100,1,,,,,,", "high 'abc' is not a number"),
        (f"{T0 + 3 * HOUR},100,101,99,,1,,,,,,", "close is empty"),
        (f"{T0 + 3 * HOUR},100,101,99,nan,1,,,,,,", "close 'nan' is not a number"),
        (f"{T0 + 3 * HOUR},100,98,99,100,1,,,,,,", "high is below low"),
        (f"{T0 + 3 * HOUR},100,101,99,102,1,,,,,,", "open or close lies outside high..low"),
        (f"{T0 + 3 * HOUR},0,101,99,100,1,,,,,,", "a price is not positive"),
        (f"{T0 + 3 * HOUR},100,101,99,100,-1,,,,,,", "volume is negative"),
        (f"{T0 + 3 * HOUR},100,101,99,100,1,,,", "9 columns, expected 12"),
        (f"{T0 + 3 * HOUR + 60_000},100,101,99,100,1,,,,,,", "is not on the 1h grid"),
        (f"{T0},100,101,99,100,1,,,,,,", f"open time {T0} repeats line 2"),
        (f"{T0 + 3 * HOUR},100,101,99,100,1,{T0 + 3 * HOUR + 59_999},,,,,", "does not close a 1h bar"),
        (f"{(T0 + 3 * HOUR) // 1000},100,101,99,100,1,,,,,,", "is not a time in ms or µs"),
        ("2026-01-01,100,101,99,100,1,,,,,,", "open_time '2026-01-01' is not a whole number"),
    ],
)
def test_a_malformed_row_refuses_the_file_naming_its_line(row: str, reason: str) -> None:
    message = refusal([HEADER, *OHLCV_ONLY, row])
    assert message.startswith("f.csv:5: "), message
    assert reason in message


def test_a_header_without_the_prices_is_refused() -> None:
    assert refusal(["open_time,o,h,l,c", f"{T0},1,1,1,1"]) == "f.csv:1: the header lacks open, high, low, close"


def test_the_folder_tells_trade_from_mark_price_klines_and_the_name_gives_symbol_and_interval(tmp_path: Path) -> None:
    assert identify(tmp_path / "klines" / "BTCUSDT-1h.csv").kind is Kind.KLINES
    mark = identify(
        tmp_path
        / "data"
        / "futures"
        / "um"
        / "monthly"
        / "markPriceKlines"
        / "BTCUSDT"
        / "1h"
        / "BTCUSDT-1h-2024-01.zip"
    )
    assert (mark.kind, mark.symbol, mark.interval) == (Kind.MARK, "BTCUSDT", "1h")
    funding = identify(tmp_path / "fundingRate" / "1000PEPEUSDT-fundingRate-2024-01.zip")
    assert (funding.kind, funding.symbol, funding.interval) == (Kind.FUNDING, "1000PEPEUSDT", None)
    with pytest.raises(UnknownFile, match="cannot be told whether"):
        identify(tmp_path / "downloads" / "BTCUSDT-1h-2024-01.zip")  # trade or mark klines? not guessed
    with pytest.raises(UnknownFile, match="premium-index klines are not imported"):
        identify(tmp_path / "premiumIndexKlines" / "BTCUSDT-1h-2024-01.zip")
    with pytest.raises(UnknownFile, match="no kline interval"):
        identify(tmp_path / "klines" / "BTCUSDT-7h.csv")


def test_mark_price_klines_are_prices_only(tmp_path: Path) -> None:
    path = tmp_path / "markPriceKlines" / "BTCUSDT-1h.csv"
    path.parent.mkdir()
    path.write_text("\n".join([HEADER, *(line.replace(",12.5,", ",0.0,") for line in OHLCV_ONLY)]))
    bars = read_data_file(identify(path))
    assert isinstance(bars, Bars)
    assert bars.close.tolist() == [101.0, 100.5, 99.0]
    assert np.isnan(bars.volume).all()  # Binance's 0.0 there means "no volume", not "nothing traded"


def test_zip_archives_are_read_and_refusals_name_the_member(tmp_path: Path) -> None:
    folder = tmp_path / "klines" / "BTCUSDT" / "1h"
    folder.mkdir(parents=True)
    good = folder / "BTCUSDT-1h-2026-01.zip"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("BTCUSDT-1h-2026-01.csv", "\n".join(FULL))
    bars = read_data_file(identify(good))
    assert isinstance(bars, Bars)
    assert bars.quote_volume.tolist() == [1262.5, 833.0]
    bad = folder / "BTCUSDT-1h-2026-02.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("BTCUSDT-1h-2026-02.csv", "\n".join([HEADER, FULL[0], "oops"]))
    with pytest.raises(MalformedData, match=r"BTCUSDT-1h-2026-02\.zip:BTCUSDT-1h-2026-02\.csv:3: 1 columns"):
        read_data_file(identify(bad))
    (folder / "BTCUSDT-1h-2026-03.zip").write_bytes(b"not a zip")
    with pytest.raises(MalformedData, match="not a readable ZIP archive"):
        read_data_file(identify(folder / "BTCUSDT-1h-2026-03.zip"))


def test_finding_files_passes_over_what_is_not_data_and_says_why_it_skips_the_rest(tmp_path: Path) -> None:
    (tmp_path / "klines").mkdir()
    (tmp_path / "klines" / "ETHUSDT-1h.csv").write_text(HEADER)
    (tmp_path / "klines" / "ETHUSDT-1h.zip.CHECKSUM").write_text("abc")
    (tmp_path / "SOURCES.md").write_text("# sources")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "ETHUSDT-1h.csv").write_text(HEADER)
    found, skipped = find_data_files(tmp_path)
    assert [f.path.name for f in found] == ["ETHUSDT-1h.csv"]
    assert len(skipped) == 1
    assert "other/ETHUSDT-1h.csv" in skipped[0]


# ---------------------------------------------------------------------------------------------- funding


def funding(text: str) -> FundingRates:
    return parse_funding(text, where="f.csv", symbol="BTCUSDT")


def test_funding_in_the_developer_sets_layout_with_unknown_mark_prices() -> None:
    rates = funding(f"funding_time,funding_rate,mark_price\n{T0},0.0001,\n{T0 + 8 * HOUR},-0.00012737,\n")
    assert rates.time_ms == (T0, T0 + 8 * HOUR)
    assert rates.rate == (Decimal("0.0001"), Decimal("-0.00012737"))  # exact, never through a float
    assert rates.mark_price == (None, None)


def test_funding_in_binances_public_layout_and_without_a_header() -> None:
    public = funding(f"calc_time,funding_interval_hours,last_funding_rate\n{T0 * 1000},8,0.00010000\n")
    headerless = funding(f"{T0 + 3},0.00010000,91000.5\n")  # stamped a few ms after the hour, with a mark price
    assert public.time_ms == headerless.time_ms == (T0,)
    assert public.rate == headerless.rate == (Decimal("0.0001"),)
    assert headerless.mark_price == (Decimal("91000.5"),)


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        (f"{T0},0.0001,\n{T0 + 5},0.0002,\n", "f.csv:2: a second settlement in the hour"),
        (f"{T0},8,\n", "f.csv:1: funding rate 8 is not a rate"),
        (f"{T0},abc,\n", "f.csv:1: funding rate 'abc' is not a number"),
        (f"{T0},0.0001,-5\n", "f.csv:1: mark price -5 is not a price"),
        (f"{T0},0.0001,,9\n", "f.csv:1: 4 columns, expected 2 to 3"),
    ],
)
def test_malformed_funding_rows_are_refused(rows: str, reason: str) -> None:
    with pytest.raises(MalformedData) as info:
        funding(rows)
    assert str(info.value).startswith(reason)


def test_rest_funding_goes_through_the_same_checks() -> None:
    entries = [
        FundingRate("BTCUSDT", T0 + 8 * HOUR + 4, Decimal("0.0001"), Decimal("91000")),
        FundingRate("BTCUSDT", T0 + 2, Decimal("-0.0002"), None),
    ]
    rates = funding_from_rest("BTCUSDT", entries, where="GET /fapi/v1/fundingRate BTCUSDT")
    assert rates.time_ms == (T0, T0 + 8 * HOUR)
    assert rates.mark_price == (None, Decimal("91000"))
    with pytest.raises(MalformedData, match="GET /fapi/v1/fundingRate BTCUSDT: funding rate 2 is not a rate"):
        funding_from_rest(
            "BTCUSDT", [FundingRate("BTCUSDT", T0, Decimal(2), None)], where="GET /fapi/v1/fundingRate BTCUSDT"
        )
