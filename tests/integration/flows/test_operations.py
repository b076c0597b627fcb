"""The other flows on the Prefect engine: manual signal, emergency close-all, account status, daily report and
reconciliation, against the simulated exchange and PostgreSQL."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from ats.clock import ms_to_datetime
from ats.domain import Side
from ats.exchange.base import MarginType, OrderRequest, OrderType
from ats.exchange.binance import BinanceFutures
from ats.messages import say_text
from db.models import AccountSnapshotRow, NotificationRow, PositionRow, RiskLedgerRow, SignalRow
from flows.account_status import account_status
from flows.close_all import close_all
from flows.daily_report import daily_report
from flows.manual_signal import manual_signal
from flows.reconcile import reconcile_positions
from flows.trading_cycle import trading_cycle
from tests.integration.flows.conftest import FlowEnv, artifacts_of, run, run_id, task_runs_of
from tests.integration.flows.test_cycle import LIQUID, protection_of


@pytest.fixture
async def client(flow_env: FlowEnv) -> AsyncIterator[BinanceFutures]:
    """A direct client: what a person trading by hand on the same account would do."""
    server = flow_env.server
    exchange = BinanceFutures(server.rest_url, SecretStr(server.api_key), SecretStr(server.api_secret), timeout_s=2)
    yield exchange
    await exchange.aclose()


async def test_a_manual_signal_trades_with_protection_and_is_refused_when_the_model_disagrees(
    flow_env: FlowEnv,
) -> None:
    state = await run(manual_signal, symbol="solusdt", min_score=0)
    assert state.is_completed(), state.message
    (position,) = flow_env.open_positions()
    assert position.symbol == "SOLUSDT"
    assert set(protection_of(flow_env, position.key)) == {"S1", "T1", "T2"}
    with flow_env.database.session() as session:
        signal = session.scalars(select(SignalRow)).one()
    assert (signal.source, signal.status) == ("manual", "placed")

    again = await run(manual_signal, symbol="SOLUSDT", min_score=0)
    assert again.is_failed()
    assert "already traded on this bar" in (again.message or "")

    against = "SHORT" if position.direction == "LONG" else "LONG"
    forced = await run(manual_signal, symbol="BNBUSDT", side=against, min_score=100)
    assert forced.is_failed()
    assert "below min_score 100" in (forced.message or "")

    unknown = await run(manual_signal, symbol="NOPEUSDT")
    assert unknown.is_failed()
    assert (unknown.message or "").startswith("NOPEUSDT is not a trading USDT perpetual on this exchange")
    assert len(flow_env.open_positions()) == 1


async def test_close_all_closes_everything_and_the_day_is_reported(flow_env: FlowEnv, client: BinanceFutures) -> None:
    opened = await run(trading_cycle, symbols=LIQUID, min_score=0, max_new_positions=2)
    assert opened.is_completed(), opened.message
    managed = {p.symbol for p in flow_env.open_positions()}
    assert len(managed) == 2
    # By hand on the same account: a position and a resting order this system knows nothing about.
    await client.new_order(OrderRequest("TRXUSDT", Side.BUY, OrderType.MARKET, Decimal(100), "by-hand-1"))
    mark = (await client.premium_index("TRXUSDT"))[0].mark_price
    limit = (mark * Decimal("0.9")).quantize(Decimal("0.00001"))
    await client.new_order(
        OrderRequest("TRXUSDT", Side.BUY, OrderType.LIMIT, Decimal(100), "by-hand-2", price=limit, time_in_force="GTC")
    )

    status = await run(account_status)
    assert status.is_completed(), status.message
    report = await status.aresult()
    assert {p.symbol for p in report.positions} == {*managed, "TRXUSDT"}
    assert {p.symbol for p in report.positions if p.managed} == managed
    assert all(p.tp1 == "waiting" for p in report.positions if p.managed)
    markdown = next(a for a in await artifacts_of(run_id(status)) if a.type == "markdown")
    assert "3/5" in str(markdown.data)

    state = await run(close_all, reason="test emergency")
    assert state.is_completed(), state.message
    result = await state.aresult()
    steps = {t.name.rsplit("-", 1)[0] for t in await task_runs_of(run_id(state))}
    assert {"record-halt", "close-managed-positions", "cancel-all-orders", "close-remaining-positions"} <= steps
    assert sorted(result.managed_closed) == sorted(managed)
    assert result.unmanaged_closed == ["TRXUSDT"]
    exchange = flow_env.control.state()
    assert exchange["positions"] == {}
    assert exchange["open_orders"] == []
    assert exchange["open_algo_orders"] == []
    assert flow_env.open_positions() == []
    with flow_env.database.session() as session:
        closed = session.scalars(select(PositionRow)).all()
        ledger = session.scalars(select(RiskLedgerRow)).one()
        alerts = session.scalars(select(NotificationRow).where(NotificationRow.kind == "alert")).all()
        assert session.scalar(select(AccountSnapshotRow.id)) is not None
    assert {(p.state, p.exit_reason) for p in closed} == {("closed", "manual")}
    assert ledger.halted
    assert "close-all" in (ledger.halted_reason or "")
    assert any("Close-all: test emergency" in a.text and a.status == "sent" for a in alerts)

    halted = await run(trading_cycle, symbols=["LTCUSDT", "LINKUSDT", "DOTUSDT"], min_score=0)
    assert halted.is_completed(), halted.message
    assert flow_env.open_positions() == []

    today = await run(daily_report, day=_today(flow_env))
    assert today.is_completed(), today.message
    stats = await today.aresult()
    assert stats.report.trades == 2
    assert stats.exits == {"manual": 2}
    assert stats.report.halted is not None
    # the real reason and who
    assert say_text("en", stats.report.halted) == "close-all: test emergency (by close-all (flow))"
    assert stats.report.fees > 0
    with flow_env.database.session() as session:
        kinds = session.scalars(select(NotificationRow.kind).where(NotificationRow.status == "sent")).all()
    assert "report" in kinds
    with flow_env.database.session() as session:
        (told,) = session.scalars(select(NotificationRow.text).where(NotificationRow.kind == "report")).all()
    assert "New entries halted: close-all: test emergency" in told
    assert "loss limit" not in told
    bad = await run(daily_report, day="yesterday")
    assert bad.is_failed()
    assert bad.message == "day must look like 2026-01-31, got 'yesterday'"


async def test_close_all_goes_on_when_a_managed_close_fails(flow_env: FlowEnv) -> None:
    opened = await run(trading_cycle, symbols=LIQUID, min_score=0, max_new_positions=2)
    assert opened.is_completed(), opened.message
    managed = {p.symbol for p in flow_env.open_positions()}
    assert len(managed) == 2
    # The exchange refuses to cancel single algo orders (a 400, not an outage): closing through the lifecycle
    # fails for every managed position; the emergency stop must still cancel and close everything.
    flow_env.control.add_fault("unavailable", path="/fapi/v1/algoOrder", method="DELETE", status=400)

    state = await run(close_all, reason="test emergency", halt_today=False)
    assert state.is_completed(), state.message
    report = await state.aresult()
    assert set(report.managed_deferred) == managed
    assert report.managed_closed == []
    exchange = flow_env.control.state()
    assert exchange["positions"] == {}
    assert exchange["open_algo_orders"] == []
    assert report.still_open == []


async def test_close_all_closes_everything_without_the_database(
    flow_env: FlowEnv, client: BinanceFutures, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.new_order(OrderRequest("TRXUSDT", Side.BUY, OrderType.MARKET, Decimal(100), "by-hand-1"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("ATS_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{port}/ats")

    state = await run(close_all, reason="test emergency")
    assert state.is_completed(), state.message
    report = await state.aresult()
    assert report.unmanaged_closed == ["TRXUSDT"]
    assert report.not_recorded is not None
    assert flow_env.control.state()["positions"] == {}
    markdown = next(a for a in await artifacts_of(run_id(state)) if a.type == "markdown")
    assert "Nothing was recorded in the database" in str(markdown.data)


async def test_reconcile_adopts_and_protects_a_position_nobody_recorded(
    flow_env: FlowEnv, client: BinanceFutures
) -> None:
    clean = await run(reconcile_positions)
    assert clean.is_completed(), clean.message
    assert (await clean.aresult()).clean

    await client.new_order(OrderRequest("LINKUSDT", Side.BUY, OrderType.MARKET, Decimal(10), "by-hand-3"))
    state = await run(reconcile_positions)
    assert state.is_completed(), state.message
    outcome = await state.aresult()
    assert outcome.report.adopted
    (position,) = flow_env.open_positions()
    assert position.symbol == "LINKUSDT"
    assert "S1" in protection_of(flow_env, position.key)
    markdown = next(a for a in await artifacts_of(run_id(state)) if a.type == "markdown")
    assert "Adopted" in str(markdown.data)


def _today(env: FlowEnv) -> str:
    return ms_to_datetime(int(env.control.state()["server_time"])).strftime("%Y-%m-%d")


async def test_a_symbol_locked_in_cross_margin_fails_the_entry_without_sending_it(
    flow_env: FlowEnv, client: BinanceFutures
) -> None:
    # A resting order placed by hand in cross margin: Binance refuses to switch the symbol to isolated (-4047).
    await client.set_margin_type("LINKUSDT", MarginType.CROSSED)
    mark = (await client.premium_index("LINKUSDT"))[0].mark_price
    price = (mark * Decimal("0.9")).quantize(Decimal("0.001"))
    await client.new_order(
        OrderRequest("LINKUSDT", Side.BUY, OrderType.LIMIT, Decimal(1), "by-hand-4", price=price, time_in_force="GTC")
    )
    state = await run(manual_signal, symbol="LINKUSDT", side="LONG", min_score=0)
    assert state.is_failed()
    assert "margin type / leverage refused" in (state.message or "")
    assert "-4047" in (state.message or "")
    assert flow_env.open_positions() == []
    assert flow_env.control.state()["positions"] == {}
    assert [o["clientOrderId"] for o in flow_env.control.state()["open_orders"]] == ["by-hand-4"]
    with flow_env.database.session() as session:
        alerts = session.scalars(select(NotificationRow.text).where(NotificationRow.kind == "alert")).all()
        signal = session.scalars(select(SignalRow)).one()
    assert any("Entry failed" in text for text in alerts)
    assert signal.status == "failed"
