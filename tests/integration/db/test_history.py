"""Imported history in the real PostgreSQL: real Binance files imported twice (idempotent), kept apart by kind,
unknown volumes stored as NULL, a scan over them; live bars completing imported ones; the CLI's refusals."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from ats.data import FundingRates, Kind, find_data_files, identify, read_data_file
from ats.domain import interval_ms
from ats.factors import scan
from cli import app
from db import history, market
from db.session import Database
from tests.unit.factors.market_data import BINANCE_DIR
from tests.unit.factors.synthetic import make_bars

# Small real files: trade klines of three symbols, the mark-price klines and funding of one of them.
REAL_FILES = (
    "klines/XAUUSDT-1h.csv",
    "klines/RIVERUSDT-1h.csv",
    "klines/WLFIUSDT-1h.csv",
    "markPriceKlines/BNBUSDT-1h.csv",
    "fundingRate/XAUUSDT-funding.csv",
)
HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
)
T0 = 1_767_225_600_000
HOUR = interval_ms("1h")


def scalar(database: Database, sql: str, **params: object) -> object:
    with database.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def test_real_files_import_idempotently_and_a_scan_scores_them_without_volumes(db: Database) -> None:
    paths = [BINANCE_DIR / name for name in REAL_FILES]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"real Binance data absent under {BINANCE_DIR}")
    files = [identify(p) for p in paths]
    first = [history.import_file(db, f) for f in files]
    assert [r.stored.new for r in first] == [r.stored.rows for r in first] == [1694, 2992, 4334, 9978, 424]
    again = [history.import_file(db, f) for f in files]
    assert [(r.stored.new, r.stored.completed, r.stored.differing) for r in again] == [(0, 0, 0)] * len(files)

    assert scalar(db, "SELECT count(*) FROM bars") == 1694 + 2992 + 4334
    assert scalar(db, "SELECT count(*) FROM bars WHERE symbol = 'BNBUSDT'") == 0  # mark prices are not trades
    assert scalar(db, "SELECT count(*) FROM mark_bars WHERE symbol = 'BNBUSDT'") == 9978
    assert scalar(db, "SELECT count(quote_volume) + count(trades) + count(taker_buy_quote_volume) FROM bars") == 0
    assert scalar(db, "SELECT count(volume) FROM bars") == 1694 + 2992 + 4334
    assert scalar(db, "SELECT string_agg(DISTINCT source, ',') FROM bars") == "file"
    assert scalar(db, "SELECT count(*) FROM funding_rates WHERE mark_price IS NULL") == 424
    rates = read_data_file(files[-1])
    assert isinstance(rates, FundingRates)
    assert scalar(db, "SELECT funding_rate FROM funding_rates ORDER BY funding_time_ms LIMIT 1") == rates.rate[0]

    end = 1_771_459_200_000  # 2026-02-19 00:00 UTC: every one of the three has a bar there
    with db.session() as session:
        stored = market.load_bars(session, "1h", ["XAUUSDT", "RIVERUSDT", "WLFIUSDT"], since_ms=end - 499 * HOUR)
    bars = [b.slice(0, int(np.searchsorted(b.open_time, end, side="right"))) for b in stored.values()]
    result = scan(bars, as_of_ms=end + HOUR)
    for row in result.rows:
        assert row.scored, row.insufficient
        assert {"C", "V", "F"} <= set(row.missing)
    assert any(row.strength > 0 for row in result.rows)


def test_live_bars_complete_imported_ones_and_the_cycle_prunes_only_its_own(db: Database) -> None:
    full = make_bars("AAAUSDT", 6, start_ms=T0)
    imported = dataclasses.replace(full.slice(0, 4).prices_only(), volume=full.volume[:4])  # OHLCV only
    with db.session() as session:
        assert history.store_bars(session, imported, source="file").new == 4
    with db.session() as session:  # the trading cycle fetches the same bars and two newer ones, all complete
        assert market.store_bars(session, [full]) == 6  # 2 new, 4 completed
    with db.session() as session:
        loaded = market.load_bars(session, "1h", ["AAAUSDT"], since_ms=0)["AAAUSDT"]
        assert market.prune_bars(session, "1h", before_ms=T0 + 6 * HOUR) == 2  # only the cycle's own bars
    np.testing.assert_array_equal(loaded.quote_volume, full.quote_volume)
    np.testing.assert_array_equal(loaded.close, full.close)
    assert scalar(db, "SELECT string_agg(source, ',' ORDER BY open_time_ms) FROM bars") == "file,file,file,file"

    with db.session() as session:  # importing the file again changes nothing: the bars know more than it does
        again = history.store_bars(session, imported, source="file")
    assert (again.new, again.completed, again.differing) == (0, 0, 0)
    changed = dataclasses.replace(imported, close=imported.close * np.array([1, 1, 1.001, 1]))
    with db.session() as session:  # another source disagrees about a price: kept as stored, counted, told
        differs = history.store_bars(session, changed, source="rest")
    assert (differs.new, differs.differing, differs.first_difference_ms) == (0, 1, T0 + 2 * HOUR)
    assert "1 differ from the stored rows, kept as stored (first at 2026-01-01 02:00 UTC)" in differs.summary()
    assert scalar(db, "SELECT close FROM bars WHERE open_time_ms = :t", t=T0 + 2 * HOUR) == full.close[2]


def test_import_refuses_a_malformed_file_naming_its_line_and_stores_the_others(
    database_url_env: Callable[[], str], tmp_path: Path
) -> None:
    database_url_env()
    folder = tmp_path / "klines"
    folder.mkdir()
    rows = [f"{T0 + i * HOUR},100,101,99,100.5,{i + 1},,,,,," for i in range(3)]
    (folder / "GOODUSDT-1h.csv").write_text("\n".join([HEADER, *rows]))
    (folder / "BADUSDT-1h.csv").write_text("\n".join([HEADER, rows[0], rows[1].replace("101", "oops"), rows[2]]))
    (tmp_path / "README.txt").write_text("not data")

    runner = CliRunner()
    done = runner.invoke(app, ["data", "import", str(tmp_path)])
    assert done.exit_code == 1, done.output
    assert f"{folder / 'BADUSDT-1h.csv'}:3: high 'oops' is not a number" in done.output
    assert "GOODUSDT 1h klines: 3 rows, 3 new" in done.output
    assert "imported 1 of 2 files" in done.output
    again = runner.invoke(app, ["data", "import", str(folder / "GOODUSDT-1h.csv")])
    assert again.exit_code == 0, again.output
    assert "3 rows, 0 new" in again.output

    found, _ = find_data_files(tmp_path)
    assert {f.kind for f in found} == {Kind.KLINES}
    nothing = runner.invoke(app, ["data", "import", str(tmp_path / "README.txt")])
    assert nothing.exit_code == 2
    assert "no klines/, markPriceKlines/ or fundingRate/ files found" in nothing.output
