"""`ats data download` against the simulated exchange on loopback: klines and funding rates stored like imported
files, again without duplicates; an endpoint the exchange does not serve (mark-price klines, answered 404 by a
fault) is reported, and the rest still downloaded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy import text
from typer.testing import CliRunner

from ats.clock import format_utc
from ats.data import Kind
from ats.domain import interval_ms
from ats.exchange.budget import BudgetLimits
from cli import app
from db import market
from db.session import Database
from sim.faults import FaultKind, FaultRule
from sim.server import SimServer, SimServerThread
from tasks.history import Download, download_history, market_data_client

NOT_SERVED = FaultRule(FaultKind.NOT_FOUND, path="/fapi/v1/markPriceKlines")  # the sim serves them otherwise

HOUR = interval_ms("1h")


async def test_download_stores_klines_and_funding_once_and_reports_what_the_exchange_lacks(
    sim: SimServer, db: Database
) -> None:
    sim.faults.rules.append(NOT_SERVED)
    now = int(sim.clock.now_ms())
    end = now - now % HOUR - HOUR  # the newest closed bar
    start = end - 99 * HOUR
    reported: list[Download] = []

    async def run() -> list[Download]:
        async with market_data_client(sim.rest_url, db, BudgetLimits()) as exchange:
            return await download_history(
                exchange,
                db,
                symbols=["BTCUSDT", "ETHUSDT"],
                interval="1h",
                start_ms=start,
                end_ms=end,
                kinds=[Kind.KLINES, Kind.MARK, Kind.FUNDING],
                on_done=reported.append,
            )

    first = await run()
    assert reported == first
    by = {(d.symbol, d.kind): d for d in first}
    for symbol in ("BTCUSDT", "ETHUSDT"):
        bars = by[(symbol, Kind.KLINES)].stored
        assert bars is not None
        assert (bars.rows, bars.new) == (100, 100)
        funding = by[(symbol, Kind.FUNDING)].stored
        assert funding is not None
        assert funding.rows == funding.new > 0
        mark = by[(symbol, Kind.MARK)]
        assert mark.stored is None
        assert "/fapi/v1/markPriceKlines" in (mark.error or "")

    again = await run()
    assert all(d.stored is None or (d.stored.new, d.stored.completed) == (0, 0) for d in again)

    with db.session() as session:
        stored = market.load_bars(session, "1h", ["BTCUSDT"], since_ms=start)["BTCUSDT"]
    assert stored.open_time.tolist() == list(range(start, end + 1, HOUR))
    assert np.isfinite(stored.quote_volume).all()  # the REST API knows every column
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT string_agg(DISTINCT source, ',') FROM bars")).scalar() == "rest"
        assert conn.execute(text("SELECT count(*) FROM funding_rates WHERE mark_price IS NULL")).scalar() == 0


def test_the_download_command(sim_thread: SimServerThread, database_url_env: Callable[[], str]) -> None:
    database_url_env()
    assert sim_thread.server is not None
    sim_thread.control.set_faults([NOT_SERVED.to_json()])
    now = int(sim_thread.server.clock.now_ms())
    day = format_utc(now - now % 86_400_000 - 86_400_000)[:10]  # yesterday on the sim's clock: 24 closed bars
    args = ["data", "download", "--symbols", "BTCUSDT", "--from", day, "--to", f"{day}T23:00", "--rest-url"]
    runner = CliRunner()
    done = runner.invoke(app, [*args, sim_thread.rest_url, "--what", "klines,funding"])
    assert done.exit_code == 0, done.output
    assert "BTCUSDT 1h klines: 24 rows, 24 new" in done.output
    lacking = runner.invoke(app, [*args, sim_thread.rest_url])
    assert lacking.exit_code == 1, lacking.output
    assert "BTCUSDT 1h klines: 24 rows, 0 new" in lacking.output
    assert "BTCUSDT 1h mark-price klines: not downloaded" in lacking.output
    assert "1 series not downloaded" in lacking.output
    unreachable = runner.invoke(app, [*args, "http://127.0.0.1:9", "--what", "klines"])
    assert unreachable.exit_code == 1
    assert "exchange unreachable" in unreachable.output
