"""The flow commands from a terminal: status and test-connection (no Prefect), close-all's confirmation, and a
trading cycle run in-process on the Prefect engine."""

from __future__ import annotations

import asyncio
import getpass
import socket
from decimal import Decimal

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from ats.clock import WallClock
from ats.domain import Side
from ats.exchange.base import OrderRequest, OrderType
from ats.exchange.binance import BinanceFutures
from ats.placement import LOSS_LIMIT
from cli import app
from db import risk_state
from db.models import BarRow, FlowRunRow, NotificationRow, ScanRow, SignalRow
from tests.integration.flows.conftest import FlowEnv
from tests.integration.flows.test_cycle import LIQUID

runner = CliRunner()


def _buy_by_hand(env: FlowEnv, symbol: str, qty: Decimal) -> None:
    server = env.server

    async def buy() -> None:
        async with BinanceFutures(server.rest_url, SecretStr(server.api_key), SecretStr(server.api_secret)) as client:
            await client.new_order(OrderRequest(symbol, Side.BUY, OrderType.MARKET, qty, "by-hand-cli"))

    asyncio.run(buy())


def test_status_shows_the_account_and_test_connection_checks_everything(exchange_env: FlowEnv) -> None:
    _buy_by_hand(exchange_env, "LINKUSDT", Decimal(10))
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "LINKUSDT" in result.output
    assert "1/5" in result.output
    assert "not managed by this system" in result.output

    checked = runner.invoke(app, ["test-connection", "--venue", "sim"])
    assert checked.exit_code == 0, checked.output
    for name in ("server time", "exchange info", "BTC price", "API key", "position mode", "database", "notifications"):
        assert name in checked.output
    assert "open positions" in checked.output
    assert "LINKUSDT +10" in checked.output
    assert "FAIL" not in checked.output


def test_an_unreachable_exchange_is_reported_not_traced(exchange_env: FlowEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("ATS_EXCHANGE__REST_URL", f"http://127.0.0.1:{port}")
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 1
    assert "exchange unreachable: GET /fapi/v1/time" in status.output
    assert "Traceback" not in status.output


def test_a_run_that_meets_an_unreachable_exchange_says_so_in_one_line(
    flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("ATS_EXCHANGE__REST_URL", f"http://127.0.0.1:{port}")
    result = runner.invoke(app, ["run-cycle", "--dry-run"])
    assert result.exit_code == 1
    printed = result.output + "".join(capfd.readouterr())
    assert "error: trading-cycle failed: build-pools failed: exchange unreachable: GET /fapi/v1/exchangeInfo" in printed
    assert "Task run failed with exception: ExchangeUnavailable" in printed  # Prefect's line, without ...
    assert "Traceback" not in printed  # ... the traceback of a failure the system knows


@pytest.mark.parametrize(
    "command",
    [
        ["run-cycle", "--symbols", "BTCUSDT,NOPEUSDT", "--min-score", "0", "--without-monitor"],
        ["scan", "--symbols", "btcusdt, nopeusdt"],
    ],
    ids=lambda c: c[0],
)
def test_an_unknown_symbol_is_refused_before_any_run_starts(exchange_env: FlowEnv, command: list[str]) -> None:
    """Hole 9 of issue 16: one unknown symbol failed the whole run; now nothing starts, nothing is recorded."""
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    assert "error: NOPEUSDT is not a trading USDT perpetual on this exchange" in result.output
    assert "BTCUSDT" not in result.output
    with exchange_env.database.session() as session:
        for row in (FlowRunRow, ScanRow, BarRow, SignalRow):
            assert session.scalars(select(row)).first() is None, row
    assert exchange_env.control.state()["positions"] == {}


def test_close_all_asks_before_doing_anything(exchange_env: FlowEnv) -> None:
    _buy_by_hand(exchange_env, "LINKUSDT", Decimal(10))
    result = runner.invoke(app, ["close-all"], input="n\n")
    assert result.exit_code == 1
    assert "Aborted" in result.output
    assert "LINKUSDT" in exchange_env.control.state()["positions"]


def test_run_cycle_runs_the_flow_in_process(flow_env: FlowEnv) -> None:
    result = runner.invoke(app, ["run-cycle", "--symbols", ",".join(LIQUID), "--min-score", "0", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would open:" in result.output
    assert flow_env.control.state()["positions"] == {}


def test_run_cycle_returns_only_when_what_it_opened_is_protected(flow_env: FlowEnv) -> None:
    result = runner.invoke(app, ["run-cycle", "--symbols", ",".join(LIQUID), "--min-score", "0", "--max-new", "1"])
    assert result.exit_code == 0, result.output
    assert "every position opened has its stop and take-profits on the exchange" in result.output
    state = flow_env.control.state()
    assert len(state["positions"]) == 1
    assert len(state["open_algo_orders"]) == 3
    refusals = [line for line in result.output.splitlines() if line.startswith("refused ")]
    assert refusals
    assert all(": max_new_positions: " in line for line in refusals)  # each refusal and why

    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    today = " ".join(status.output[status.output.index("today (") :].split())
    assert f"{len(refusals) + 1} signals (1 traded, {len(refusals)} refused) · 1 entries, 0 failed · 0 closed" in today


def test_scan_prints_the_ranked_factor_table(flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.app import console

    monkeypatch.setattr(console, "width", 160)  # a wide terminal: every column shows in full, in one table
    args = ["scan", "--venue", "sim", "--symbols", ",".join(LIQUID), "--min-score", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "symbol" in line and "strength" in line)
    for column in ("side", "band", "T", "M", "C", "O", "B", "Q", "S", "V", "L", "I", "F"):
        assert f" {column} " in header
    for symbol in LIQUID:
        assert symbol in result.output
    assert "T trend" in result.output  # the legend of the one-letter columns

    monkeypatch.setattr(console, "width", 80)  # a narrow one: the ranking, then the factors, nothing cut
    narrow = runner.invoke(app, args)
    assert narrow.exit_code == 0, narrow.output
    assert "…" not in narrow.output
    table_lines = [line for line in narrow.output.splitlines() if any(symbol in line for symbol in LIQUID)]
    assert max(len(line) for line in table_lines) <= 80
    factors = next(line for line in narrow.output.splitlines() if " T " in line and " F" in line)
    assert "strength" not in factors
    for symbol in LIQUID:
        assert narrow.output.count(symbol) == 2

    # A scan is dry: nothing a later place-orders would act on, nothing announced.
    with flow_env.database.session() as session:
        assert session.scalars(select(ScanRow)).first() is not None
        assert session.scalars(select(SignalRow)).first() is None
        assert session.scalars(select(NotificationRow)).first() is None


def test_resume_lifts_a_close_all_halt_with_who_and_never_the_loss_limit(exchange_env: FlowEnv) -> None:
    now = WallClock().now_ms()
    with exchange_env.database.session() as session:
        risk_state.record_halt(session, "main", now, "close-all: test", by="close-all (cli)")
    lifted = runner.invoke(app, ["resume"])
    assert lifted.exit_code == 0, lifted.output
    assert "lifted: close-all: test" in lifted.output
    with exchange_env.database.session() as session:
        day = risk_state.ledger_day(session, "main", now)
    assert not day.halted
    assert day.resumed_by == f"cli {getpass.getuser()}"
    again = runner.invoke(app, ["resume"])
    assert again.exit_code == 1
    assert "Nothing to resume" in again.output
    with exchange_env.database.session() as session:
        risk_state.record_halt(session, "main", now, "daily loss limit reached", by=LOSS_LIMIT)
    refused = runner.invoke(app, ["resume"])
    assert refused.exit_code == 1
    assert "cannot be lifted" in refused.output
