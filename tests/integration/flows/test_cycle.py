"""The trading cycle on the Prefect engine against the simulated exchange and PostgreSQL.

Positions open with their protection on the exchange, the limits hold (also for two cycles at once and across
a restart), a lost answer is adopted by the task retry instead of doubled, and an unreachable exchange fails
the run with a readable reason.
"""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from ats.domain import client_id
from db.models import NotificationRow, OrderRow, PoolRow, PositionRow, RiskLedgerRow, ScanResultRow, SignalRow
from flows.factor_scan import factor_scan
from flows.manual_signal import manual_signal
from flows.place_orders import place_orders
from flows.trading_cycle import trading_cycle
from tasks.runtime import close_databases
from tests.integration.flows.conftest import FlowEnv, artifacts_of, run, run_id, subflow_runs, task_runs_of

# Liquid symbols of the simulated catalogue; at min_score 0 every one with a direction is a signal.
LIQUID = ["BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "AVAXUSDT", "LINKUSDT", "DOTUSDT", "LTCUSDT"]
OTHERS = ["BCHUSDT", "ATOMUSDT", "AAVEUSDT", "SUIUSDT", "UNIUSDT", "ETCUSDT", "NEARUSDT", "APTUSDT", "ARBUSDT"]


def protection_of(env: FlowEnv, key: str) -> dict[str, dict[str, Any]]:
    """The open algo orders of one position on the sim, by leg."""
    algos = env.control.state()["open_algo_orders"]
    return {a["clientAlgoId"].rsplit("_", 1)[1]: a for a in algos if a["clientAlgoId"].startswith(f"ats_{key}_")}


def signal_rows(env: FlowEnv) -> list[SignalRow]:
    with env.database.session() as session:
        return list(session.scalars(select(SignalRow).order_by(SignalRow.strength.desc())))


async def test_a_cycle_opens_the_strongest_signals_with_stop_and_targets(flow_env: FlowEnv) -> None:
    state = await run(trading_cycle, max_new_positions=2)
    assert state.is_completed(), state.message

    positions = flow_env.open_positions()
    assert len(positions) == 2
    exchange_positions = flow_env.control.state()["positions"]
    for row in positions:
        assert row.state == "open"
        assert Decimal(exchange_positions[row.symbol]["amount"]).copy_abs() == row.quantity > 0
        assert exchange_positions[row.symbol]["margin_type"] == "ISOLATED"
        legs = protection_of(flow_env, row.key)
        assert set(legs) == {"S1", "T1", "T2"}
        assert legs["S1"]["orderType"] == "STOP_MARKET"
        assert legs["S1"]["closePosition"] is True
        assert {legs["T1"]["orderType"], legs["T2"]["orderType"]} == {"TAKE_PROFIT_MARKET"}
        assert Decimal(legs["T1"]["quantity"]) + Decimal(legs["T2"]["quantity"]) == row.quantity
        assert flow_env.entry_orders(client_id(row.key, "E")) == 1

    signals = signal_rows(flow_env)
    accepted = [s for s in signals if s.status == "placed"]
    assert {s.symbol for s in accepted} == {p.symbol for p in positions}
    assert [s.strength for s in signals if s.status in ("placed", "refused")][:2] == [s.strength for s in accepted]
    refused = [s for s in signals if s.status == "refused"]
    assert all(s.refusal_code == "max_new_positions" and s.refusal_reason for s in refused)

    with flow_env.database.session() as session:
        assert session.scalar(select(func.count()).select_from(PoolRow)) == 2
        assert session.execute(select(func.count()).select_from(ScanResultRow)).scalar_one() > 10
        followed_up = NotificationRow.dedupe_key.like("%:refused:%")
        kinds = session.execute(select(NotificationRow.kind, NotificationRow.status).where(~followed_up)).all()
    assert sorted(k for k, _ in kinds if k == "entry") == ["entry", "entry"]
    assert {status for _, status in kinds} == {"sent"}
    assert sum(1 for k, _ in kinds if k == "signal") == len(signals)  # the refusals' follow-ups are counted apart
    with flow_env.database.session() as session:
        told = session.scalars(
            select(NotificationRow.text).where(
                NotificationRow.kind == "signal", NotificationRow.dedupe_key.not_like("%:refused:%")
            )
        ).all()
    assert all("Plan: stop " in text and " · TP2 " in text and " · x" in text for text in told)  # levels, leverage

    runs = await subflow_runs(run_id(state))
    assert set(runs) == {"build-pools", "factor-scan", "place-orders"}
    for name, flow_run in runs.items():
        assert flow_run.state is not None
        assert flow_run.state.is_completed(), name
        assert await artifacts_of(flow_run.id), f"{name} left no artifact"
    scan_artifacts = {a.key: a for a in await artifacts_of(runs["factor-scan"].id)}
    assert {k: a.type for k, a in scan_artifacts.items()} == {"factor-table": "table", "signals": "markdown"}
    assert "**T** trend" in str(scan_artifacts["factor-table"].description)  # the legend of the one-letter columns
    assert [a.key for a in await artifacts_of(runs["build-pools"].id)] == ["pools"]
    (placement,) = await artifacts_of(runs["place-orders"].id)
    assert placement.key == "placements"
    assert "opened" in str(placement.data)
    for name, label in (("build-pools", "pools "), ("factor-scan", "scan "), ("place-orders", "placement ")):
        assert runs[name].name.startswith(label), runs[name].name  # named for what they are, not at random
    (summary,) = await artifacts_of(run_id(state))
    assert summary.key == "trading-cycle"
    content = str(summary.data)
    for position in positions:  # the cycle's own page holds the signals and placements, and links each step's run
        assert f"| {position.symbol} |" in content
    for subflow_id in (r.id for r in runs.values()):
        assert str(subflow_id) in content

    # The next cycle on the same bar: pools reused, no bar fetched again, nothing placed twice.
    again = await run(trading_cycle, max_new_positions=2)
    assert again.is_completed(), again.message
    assert (await again.aresult()).bar_requests == 0
    assert len(flow_env.open_positions()) == 2
    with flow_env.database.session() as session:
        assert session.scalar(select(func.count()).select_from(PoolRow)) == 2


async def test_a_sixth_signal_with_five_open_is_refused_and_recorded(flow_env: FlowEnv) -> None:
    state = await run(trading_cycle, symbols=LIQUID, min_score=0)
    assert state.is_completed(), state.message
    signals = signal_rows(flow_env)
    assert len(signals) >= 6, "the scan needs at least six signals for this test"
    assert len(flow_env.open_positions()) == 5
    assert len(flow_env.control.state()["positions"]) == 5
    refused = [s for s in signals if s.status == "refused"]
    assert len(refused) == len(signals) - 5
    assert {s.refusal_code for s in refused} == {"max_positions"}
    assert all("limit 5" in (s.refusal_reason or "") for s in refused)
    # Each refused signal's message is followed up: not traded, and why.
    with flow_env.database.session() as session:
        told = session.scalars(select(NotificationRow.text).where(NotificationRow.dedupe_key.like("%:refused:%"))).all()
    assert len(told) == len(refused)
    assert all("Signal not traded" in text and "(max_positions)" in text for text in told)


async def test_two_cycles_started_together_never_exceed_the_limit(
    flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATS_LIMITS__MAX_CONCURRENT_POSITIONS", "2")

    def cycle(symbols: list[str]) -> Any:
        return asyncio.run(run(trading_cycle, symbols=symbols, min_score=0))

    first, second = await asyncio.gather(asyncio.to_thread(cycle, LIQUID), asyncio.to_thread(cycle, OTHERS))
    assert first.is_completed(), first.message
    assert second.is_completed(), second.message
    assert len(flow_env.open_positions()) == 2
    assert len(flow_env.control.state()["positions"]) == 2
    codes = {s.refusal_code for s in signal_rows(flow_env) if s.status == "refused"}
    assert codes == {"max_positions"}


async def test_a_day_past_its_loss_limit_opens_nothing_also_after_a_restart(
    flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = await run(trading_cycle, symbols=LIQUID, min_score=0, max_new_positions=1)
    assert opened.is_completed(), opened.message
    (position,) = flow_env.open_positions()
    entry = position.entry_price
    assert entry is not None
    # Against the position by about half the way to its stop: an unrealised loss beyond the limit.
    assert position.stop_price is not None
    adverse = entry + (position.stop_price - entry) / 2
    flow_env.control.set_price(position.symbol, adverse)
    loss = (adverse - entry) * position.quantity * (1 if position.direction == "LONG" else -1)
    assert loss < -15
    monkeypatch.setenv("ATS_LIMITS__MAX_DAILY_LOSS_USDT", "15")

    halted = await run(trading_cycle, symbols=OTHERS, min_score=0)
    assert halted.is_completed(), halted.message
    refused = [s for s in signal_rows(flow_env) if s.symbol in OTHERS]
    assert refused
    assert {s.status for s in refused} == {"refused"}
    assert {s.refusal_code for s in refused} == {"daily_loss_limit"}
    with flow_env.database.session() as session:
        ledger = session.scalars(select(RiskLedgerRow)).one()
    assert ledger.halted
    assert "unrealised" in (ledger.halted_reason or "")

    # The price recovers and the process restarts: the day stays halted.
    flow_env.control.set_price(position.symbol, entry)
    close_databases()
    fresh = await run(trading_cycle, symbols=[*OTHERS, "LTCUSDT", "TRXUSDT"], min_score=0)
    assert fresh.is_completed(), fresh.message
    late = [s for s in signal_rows(flow_env) if s.symbol == "TRXUSDT"]
    assert late, "the test needs a signal after the restart"
    assert {(s.status, s.refusal_code) for s in late} == {("refused", "daily_loss_limit")}
    assert len(flow_env.open_positions()) == 1


def stop_slippage(env: FlowEnv, position: PositionRow) -> Decimal:
    """What the fills that closed a position lost beyond its stop's trigger (a stop-market order fills at the book)."""
    stop = position.stop_price
    assert stop is not None
    sign = 1 if position.direction == "LONG" else -1
    exit_side = "SELL" if sign == 1 else "BUY"
    exits = [f for f in env.control.state()["fills"] if (f["symbol"], f["side"]) == (position.symbol, exit_side)]
    assert exits, f"{position.symbol} was not stopped out"
    return sum((max(sign * (stop - Decimal(f["price"])), Decimal(0)) * Decimal(f["qty"]) for f in exits), Decimal(0))


async def test_the_daily_loss_limit_caps_racing_entries_and_every_stop_hit_stays_within_it(
    flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16, hole 3: with a 20 USDT limit, entries were each sized to lose the whole headroom, ignoring the
    positions already open; three stop-outs lost 78 USDT. Now the open risk of every position spends it, also
    across a cycle and a manual signal racing for it: every stop hit loses the limit at most, plus slippage."""
    limit = Decimal(20)
    monkeypatch.setenv("ATS_LIMITS__MAX_DAILY_LOSS_USDT", str(limit))
    monkeypatch.setenv("ATS_LIMITS__RISK_PER_TRADE_PCT", "0.08")  # 8 USDT of the sim's 10,000: several entries fit
    wallet = Decimal(flow_env.control.state()["wallet_balance"])

    def cycle() -> Any:
        return asyncio.run(run(trading_cycle, symbols=LIQUID, min_score=0))

    def by_hand() -> Any:
        return asyncio.run(run(manual_signal, symbol=OTHERS[0], min_score=0))

    raced, manual = await asyncio.gather(asyncio.to_thread(cycle), asyncio.to_thread(by_hand))
    assert raced.is_completed(), raced.message
    assert manual.is_completed() or "refused: daily_loss_limit: " in (manual.message or ""), manual.message
    positions = flow_env.open_positions()
    assert len(positions) >= 2, "the test needs several positions open"
    refused = [s for s in signal_rows(flow_env) if s.status == "refused"]
    assert refused, "the cap must refuse some of the signals"
    assert {s.refusal_code for s in refused} == {"daily_loss_limit"}
    assert all("of the daily loss limit of 20 USDT" in (s.refusal_reason or "") for s in refused)
    assert all("open risk" in (s.refusal_reason or "") for s in refused)

    for position in positions:  # every stop is hit
        assert position.stop_price is not None
        flow_env.control.set_price(position.symbol, position.stop_price)
    assert flow_env.control.state()["positions"] == {}
    lost = wallet - Decimal(flow_env.control.state()["wallet_balance"])
    slippage = sum((stop_slippage(flow_env, p) for p in positions), Decimal(0))
    assert lost <= limit + slippage, f"{len(positions)} stopped out lost {lost} USDT, slippage {slippage}"


async def test_a_lost_entry_answer_is_adopted_by_the_task_retry(
    flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATS_EXCHANGE__TIMEOUT_S", "0.5")
    # The entry executes but its answer never arrives, and the look-ups right after fail too: only the task's
    # retry (which re-drives: look up first, then place) can finish the job.
    flow_env.control.add_fault("drop_response", path="/fapi/v1/order", method="POST", count=1, hold_s=2.0)
    flow_env.control.add_fault("unavailable", path="/fapi/v1/order", method="GET", count=3)
    state = await run(trading_cycle, symbols=LIQUID, min_score=0, max_new_positions=1)
    assert state.is_completed(), state.message

    (position,) = flow_env.open_positions()
    assert position.state == "open"
    assert flow_env.entry_orders(client_id(position.key, "E")) == 1
    assert len(flow_env.control.state()["positions"]) == 1
    assert set(protection_of(flow_env, position.key)) == {"S1", "T1", "T2"}
    with flow_env.database.session() as session:
        attempts = session.scalar(select(OrderRow.attempts).where(OrderRow.client_id == client_id(position.key, "E")))
    assert attempts == 2
    place = (await subflow_runs(run_id(state)))["place-orders"]
    (open_task,) = [t for t in await task_runs_of(place.id) if t.name.startswith("open-")]
    assert open_task.run_count == 2


async def test_an_unknown_leverage_answer_is_retried_not_a_failed_entry(flow_env: FlowEnv) -> None:
    # Setting the leverage may or may not have happened (503 "Unknown error"); setting it again is harmless.
    flow_env.control.add_fault("unknown_error", path="/fapi/v1/leverage", method="POST", count=1)
    state = await run(trading_cycle, symbols=LIQUID, min_score=0, max_new_positions=1)
    assert state.is_completed(), state.message

    (position,) = flow_env.open_positions()
    assert position.state == "open"
    assert flow_env.entry_orders(client_id(position.key, "E")) == 1
    assert set(protection_of(flow_env, position.key)) == {"S1", "T1", "T2"}
    place = (await subflow_runs(run_id(state)))["place-orders"]
    (open_task,) = [t for t in await task_runs_of(place.id) if t.name.startswith("open-")]
    assert open_task.run_count == 2


async def test_an_account_in_hedge_mode_is_switched_to_one_way_before_trading(flow_env: FlowEnv) -> None:
    flow_env.server.engine.dual_side = True  # nothing held: switching is safe
    state = await run(trading_cycle, symbols=LIQUID, min_score=0, max_new_positions=1)
    assert state.is_completed(), state.message
    assert flow_env.server.engine.dual_side is False
    assert len(flow_env.open_positions()) == 1


async def test_hedge_mode_with_positions_fails_the_run_and_sends_nothing(flow_env: FlowEnv) -> None:
    engine = flow_env.server.engine
    await run(trading_cycle, symbols=LIQUID, min_score=0, max_new_positions=1)
    engine.dual_side = True  # as if switched by hand on the exchange while holding a position
    orders_before = len(engine.orders)
    state = await run(place_orders, min_score=0)
    assert state.is_failed()
    assert "hedge mode" in str(state.message)
    assert len(engine.orders) == orders_before


async def test_an_unreachable_exchange_fails_the_run_with_the_reason(
    flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    monkeypatch.setenv("ATS_EXCHANGE__REST_URL", f"http://127.0.0.1:{dead_port}")
    state = await run(trading_cycle)
    assert state.is_failed()
    assert state.message is not None
    assert state.message.startswith("build-pools failed: exchange unreachable: GET /fapi/v1/exchangeInfo")
    assert "could not connect" in state.message
    runs = await subflow_runs(run_id(state))
    assert runs["build-pools"].state is not None
    assert runs["build-pools"].state.message == state.message.removeprefix("build-pools failed: ")


async def test_a_deployment_run_given_an_unknown_symbol_fails_at_once_naming_it(flow_env: FlowEnv) -> None:
    """Hole 9 of issue 16: the cycle checks its symbols against exchangeInfo before any subflow runs (a run from
    the UI or a deployment; the CLI refuses them before starting a run), and so does a factor scan."""
    cycle = await run(trading_cycle, symbols=["SOLUSDT", "nopeusdt"], min_score=0)
    assert cycle.is_failed()
    assert (cycle.message or "").startswith("NOPEUSDT is not a trading USDT perpetual on this exchange")
    assert await subflow_runs(run_id(cycle)) == {}
    scan = await run(factor_scan, symbols=["SOLUSDT", "NOPEUSDT", "XRPUSTD"])
    assert scan.is_failed()
    assert (scan.message or "").startswith("NOPEUSDT, XRPUSTD are not trading USDT perpetuals on this exchange")
    assert "XRPUSDT" in (scan.message or "")  # the look-alike
    with flow_env.database.session() as session:
        assert session.scalars(select(ScanResultRow)).first() is None
        assert session.scalars(select(SignalRow)).first() is None


async def test_a_dry_run_decides_but_records_and_sends_nothing(flow_env: FlowEnv) -> None:
    state = await run(place_orders, dry_run=True)
    assert state.is_completed(), state.message
    cycle = await run(trading_cycle, symbols=LIQUID, min_score=0, dry_run=True)
    assert cycle.is_completed(), cycle.message
    assert flow_env.open_positions() == []
    assert flow_env.control.state()["positions"] == {}
    report = await cycle.aresult()
    assert len(report.opened) == 5
    assert report.signals >= 5
    # Nothing a later run could act on, nothing announced.
    assert signal_rows(flow_env) == []
    with flow_env.database.session() as session:
        assert session.scalars(select(NotificationRow)).first() is None
    later = await run(place_orders, min_score=0)
    assert later.is_completed(), later.message
    assert (await later.aresult()).decided.decisions == []
    assert flow_env.control.state()["positions"] == {}
    # Its pages say so, under keys of their own: the latest `placements` is always what really happened.
    (summary,) = await artifacts_of(run_id(cycle))
    assert summary.key == "trading-cycle-dry-run"
    assert "dry run: nothing recorded, no order sent" in str(summary.data)
    runs = await subflow_runs(run_id(cycle))
    assert [a.key for a in await artifacts_of(runs["place-orders"].id)] == ["placements-dry-run"]
    assert runs["factor-scan"].name.endswith("(dry run)")
