"""`ats data import` then `ats backtest` through the CLI and the real PostgreSQL: files written, the same bytes on a
second run, clear refusals for what is not stored; and the README's command on real Binance files where present."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from tests.unit.backtest.series import kline_csv, walk
from tests.unit.factors.market_data import BINANCE_DIR

SYMBOLS = {"BTCUSDT": 90_000.0, "ETHUSDT": 3_000.0, "AAAUSDT": 2.0}


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_backtest_writes_the_same_files_twice_and_refuses_what_is_not_stored(
    database_url_env: Callable[[], str], tmp_path: Path
) -> None:
    database_url_env()
    folder = tmp_path / "klines"
    folder.mkdir()
    for n, (symbol, price) in enumerate(SYMBOLS.items()):
        (folder / f"{symbol}-1h.csv").write_text(kline_csv(walk(symbol, 900, n, price)))
    invoke("data", "import", str(folder))
    common = ("backtest", "--from", "2025-01-25", "--to", "2025-02-07", "--min-score", "60", "--random-draws", "2")
    first = invoke(*common, "--out", str(tmp_path / "one"))
    invoke(*common, "--out", str(tmp_path / "two"))
    names = ("equity.csv", "equity.png", "report.md", "summary.json", "trades.csv")
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["parameters"]["symbols"] == sorted(SYMBOLS)
    assert set(summary["baselines"]) == {"always long", "24h momentum"}
    assert summary["random"]["draws"] == 2
    assert summary["fingerprint"] in first
    assert "model" in first
    trades = (tmp_path / "one" / "trades.csv").read_text().splitlines()
    assert trades[0].startswith("symbol,direction,opened,closed")
    assert len(trades) - 1 == summary["model"]["trades"]
    assert (tmp_path / "one" / "equity.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    refused = CliRunner().invoke(app, [*common[:5], "--symbols", "ZZZUSDT", "--out", str(tmp_path / "three")])
    assert refused.exit_code != 0
    assert "ZZZUSDT" in refused.output
    assert "ats data import" in refused.output
    assert not (tmp_path / "three").exists()


@pytest.mark.skipif(not (BINANCE_DIR / "klines" / "BTCUSDT-1h.csv").exists(), reason="no real Binance data here")
def test_the_readme_backtest_runs_on_real_binance_files(database_url_env: Callable[[], str], tmp_path: Path) -> None:
    database_url_env()
    for path in ("klines/BTCUSDT-1h.csv", "klines/ETHUSDT-1h.csv", "fundingRate/BTCUSDT-funding.csv"):
        invoke("data", "import", str(BINANCE_DIR / path))
    output = invoke(
        "backtest", "--from", "2025-03-01", "--to", "2025-03-15", "--random-draws", "1", "--out", str(tmp_path)
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["parameters"]["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert "verdict" in summary
    assert "fingerprint" in output
