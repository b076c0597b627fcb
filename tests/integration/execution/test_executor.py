"""The executor and the PostgreSQL journal against the simulated exchange: placement, protection,
idempotency under lost answers and crashes, and refusals handled by the state machine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from ats.clock import WallClock
from ats.config import ExchangeSettings, LevelSettings, MonitorSettings, RiskLimits, Settings, Venue
from ats.domain import Band, Direction, Signal, client_id, intent_key
from ats.exchange.binance import BinanceFutures
from ats.execution import (
    ExecutionDeferred,
    ExecutionSettings,
    Executor,
    JournalUnavailable,
    OrderOutcome,
    action_for_leg,
)
from ats.lifecycle import Action, OrderState, Phase, Policy, Position, Role, open_position
from ats.reconcile import reconcile
from ats.risk import AccountSnapshot, Approved, check_entry
from db.journal import PostgresJournal, record_new_position
from db.models import FillRow, NotificationRow, OrderRow, OrderStatusRow, PositionRow
from db.session import Database
from sim.engine import SimError
from sim.server import SimServer
from tests.chaos.pgproxy import PgProxy
from tests.integration.monitor.harness import fills_in_db, fills_on_exchange

SYMBOL = "BTCUSDT"
FAST = ExecutionSettings(
    lookup_attempts=3, lookup_delay_s=0.05, send_retry_delay_s=0.05, protective_resend_delay_s=0.05
)


@pytest.fixture
async def exchange(sim: SimServer) -> AsyncIterator[BinanceFutures]:
    client = BinanceFutures(sim.rest_url, SecretStr(sim.api_key), SecretStr(sim.api_secret), timeout_s=1.0)
    yield client
    await client.aclose()


async def _open(exchange: BinanceFutures, journal: PostgresJournal, db: Database, *, bar: int = 1) -> str:
    """Record a new long BTCUSDT position the way the order-placement task does; return its key."""
    rules = (await exchange.exchange_info())[SYMBOL]
    price = (await exchange.premium_index(SYMBOL))[0].mark_price
    signal = Signal(SYMBOL, Direction.LONG, 82.0, Band.STRONG, bar, price, trend=60.0, liquidity=80.0)
    snapshot = AccountSnapshot(Decimal(10_000), Decimal(10_000), Decimal(0), Decimal(0))
    decision = check_entry(signal, snapshot, RiskLimits(), rules=rules, level_settings=LevelSettings())
    assert isinstance(decision, Approved)
    key = intent_key("main", SYMBOL, bar, Direction.LONG)
    policy = Policy.build(rules, decision.order.plan, MonitorSettings())
    position, actions = open_position(key=key, order=decision.order, policy=policy, time_ms=WallClock().now_ms())
    with db.session() as session:
        record_new_position(session, "main", position, actions, source="test", language="en")
    return key


def _executor(exchange: BinanceFutures, journal: PostgresJournal) -> Executor:
    return Executor(exchange, journal, WallClock(), source="test", settings=FAST)


async def test_entry_fills_and_protection_is_placed(sim: SimServer, exchange: BinanceFutures, db: Database) -> None:
    journal = PostgresJournal(db, "main", language="en")
    key = await _open(exchange, journal, db)
    position = journal.position(key)
    assert position is not None
    await _executor(exchange, journal).execute(key, [_entry_action(position)])

    position = journal.position(key)
    assert position is not None
    assert position.phase is Phase.OPEN
    assert position.entry_qty > 0
    roles = {o.role: o for o in position.orders if o.state is OrderState.ACTIVE}
    assert set(roles) == {Role.STOP, Role.TP1, Role.TP2}
    algos = await exchange.open_algo_orders(SYMBOL)
    assert sorted(a.type.value for a in algos) == ["STOP_MARKET", "TAKE_PROFIT_MARKET", "TAKE_PROFIT_MARKET"]
    stop = next(a for a in algos if a.type.value == "STOP_MARKET")
    assert stop.close_position
    assert stop.client_algo_id == client_id(key, "S1")
    exchange_position = (await exchange.positions(SYMBOL))[0]
    assert exchange_position.amount == position.entry_qty

    with db.session() as session:
        row = session.scalars(select(PositionRow).where(PositionRow.key == key)).one()
        assert row.state == "open"
        assert row.quantity == position.entry_qty
        assert row.stop_client_id == client_id(key, "S1")
        statuses = dict(session.execute(select(OrderRow.leg, OrderRow.status)).tuples().all())
        assert statuses == {"E": "FILLED", "S1": "NEW", "T1": "NEW", "T2": "NEW"}
        assert session.execute(select(func.count()).select_from(FillRow)).scalar_one() >= 1
        kinds = session.scalars(select(NotificationRow.kind)).all()
        assert kinds == ["entry"]


async def test_lost_answer_is_adopted_not_repeated(sim: SimServer, exchange: BinanceFutures, db: Database) -> None:
    journal = PostgresJournal(db, "main", language="en")
    key = await _open(exchange, journal, db)
    position = journal.position(key)
    assert position is not None
    sim.faults.add("drop_response", path="/fapi/v1/order", method="POST", count=1, hold_s=3.0)
    await _executor(exchange, journal).execute(key, [_entry_action(position)])

    entries = [o for o in sim.engine.orders.values() if o.client_order_id == client_id(key, "E")]
    assert len(entries) == 1
    position = journal.position(key)
    assert position is not None
    assert position.phase is Phase.OPEN
    assert (await exchange.positions(SYMBOL))[0].amount == position.entry_qty


@pytest.mark.parametrize("status", [503, 403])
async def test_an_entry_answered_by_a_gateway_after_it_executed_is_adopted_not_sent_again(
    sim: SimServer, exchange: BinanceFutures, db: Database, status: int
) -> None:
    """Issue 16, hole 5: a 503 "Service Unavailable." or a 403 (a WAF, a gateway) answered after the entry executed
    used to be re-sent: two fills under one client id, twice the approved size."""
    journal = PostgresJournal(db, "main", language="en")
    key = await _open(exchange, journal, db)
    position = journal.position(key)
    assert position is not None
    approved = position.requested_qty
    sim.faults.add("unavailable", path="/fapi/v1/order", method="POST", count=1, status=status, execute=True)
    await _executor(exchange, journal).execute(key, [_entry_action(position)])

    entries = [o for o in sim.engine.orders.values() if o.client_order_id == client_id(key, "E")]
    assert len(entries) == 1
    assert sum(Decimal(str(t["qty"])) for t in sim.engine.trades) == approved  # one execution of the approved size
    position = journal.position(key)
    assert position is not None
    assert position.phase is Phase.OPEN
    assert position.entry_qty == approved
    assert [(p.symbol, p.amount) for p in await exchange.positions()] == [(SYMBOL, approved)]
    with db.session() as session:
        recorded = {(t, q) for t, q in session.execute(select(FillRow.trade_id, FillRow.qty)).all()}
    assert recorded == {(int(t["id"]), Decimal(str(t["qty"]))) for t in sim.engine.trades}
    assert {a.client_algo_id for a in await exchange.open_algo_orders(SYMBOL)} == {
        client_id(key, leg) for leg in ("S1", "T1", "T2")
    }


async def test_crash_after_recording_then_redrive_places_once(
    sim: SimServer, exchange: BinanceFutures, db: Database
) -> None:
    journal = PostgresJournal(db, "main", language="en")
    key = await _open(exchange, journal, db)
    position = journal.position(key)
    assert position is not None
    stop_id = client_id(key, "S1")
    # The worst moment to crash: the stop reached the exchange, its answer was lost and it could not be looked up,
    # so the record still says "requested". A fresh executor ("after restart") must find it, not place another.
    sim.faults.add("unknown_error", path="/fapi/v1/algoOrder", method="POST", count=1)
    sim.faults.add("unavailable", path="/fapi/v1/algoOrder", method="GET")
    blind = BinanceFutures(
        sim.rest_url, SecretStr(sim.api_key), SecretStr(sim.api_secret), timeout_s=1.0, read_retries=0
    )
    try:
        with pytest.raises(ExecutionDeferred):
            await _executor(blind, journal).execute(key, [_entry_action(position)])
    finally:
        await blind.aclose()
    position = journal.position(key)
    assert position is not None
    stop = position.order(stop_id)
    assert stop is not None
    assert stop.state is OrderState.REQUESTED
    assert [a.client_algo_id for a in await exchange.open_algo_orders(SYMBOL)] == [stop_id]

    sim.faults.clear()
    await _executor(exchange, journal).redrive(key)
    position = journal.position(key)
    assert position is not None
    assert position.phase is Phase.OPEN
    stop = position.order(stop_id)
    assert stop is not None
    assert stop.state is OrderState.ACTIVE
    algos = [a.client_algo_id for a in sim.engine.algo_orders.values()]
    assert algos.count(stop_id) == 1
    assert sorted(algos) == sorted(client_id(key, leg) for leg in ("S1", "T1", "T2"))


@pytest.mark.parametrize("stop_fired_meanwhile", [False, True], ids=["stop_adopted", "stop_fired_meanwhile"])
async def test_the_database_down_when_the_entry_fills_does_not_hold_back_its_stop(
    sim: SimServer, exchange: BinanceFutures, db: Database, stop_fired_meanwhile: bool
) -> None:
    """The stop goes out though the journal cannot record it (it used to wait for the database, seconds without
    a stop). Once the database is back, reconciliation records the fill and finds the stop by its client id: it
    is adopted, never sent twice, also when it fired meanwhile (a second send would then land)."""
    url = db.engine.url.render_as_string(hide_password=False)
    proxy = PgProxy.for_url(url)
    proxy.start()
    down = Database(proxy.url(url))
    try:
        journal = PostgresJournal(down, "main", language="en")
        key = await _open(exchange, journal, db)
        position = journal.position(key)
        assert position is not None

        def stop_the_database_on_the_fill(event: dict[str, Any]) -> None:
            if event.get("e") == "ORDER_TRADE_UPDATE" and event["o"].get("x") == "TRADE":
                proxy.cut(600.0)

        unsubscribe = sim.engine.subscribe(stop_the_database_on_the_fill)
        with pytest.raises(JournalUnavailable):
            await _executor(exchange, journal).execute(key, [_entry_action(position)])
        unsubscribe()
        stop_id = client_id(key, "S1")
        (stop,) = await exchange.open_algo_orders(SYMBOL)
        assert (stop.client_algo_id, stop.close_position) == (stop_id, True)
        if stop_fired_meanwhile:  # and the price came back: a second send of the stop would be taken
            mark = (await exchange.premium_index(SYMBOL))[0].mark_price
            await sim.set_price(SYMBOL, stop.trigger_price - 10)
            await sim.set_price(SYMBOL, mark)
            assert not await exchange.open_algo_orders(SYMBOL)

        proxy.heal()
        settings = Settings(venue=Venue.SIM, account="main", exchange=ExchangeSettings(rest_url=sim.rest_url))
        await reconcile(exchange, journal, _executor(exchange, journal), WallClock(), settings, since_ms=None)
        position = journal.position(key)
        assert position is not None
        stops = [a for a in sim.engine.algo_orders.values() if a.client_algo_id == stop_id]
        assert len(stops) == 1
        if stop_fired_meanwhile:
            assert position.phase is Phase.CLOSED
            assert not await exchange.open_algo_orders(SYMBOL)
        else:
            leg = position.order(stop_id)
            assert leg is not None
            assert leg.state is OrderState.ACTIVE
            assert position.phase is Phase.OPEN
            assert stop_id in {a.client_algo_id for a in await exchange.open_algo_orders(SYMBOL)}  # not an orphan
        assert fills_in_db(db) == fills_on_exchange(sim.engine.trades)
    finally:
        down.dispose()
        proxy.stop()


async def test_exchange_down_defers_and_changes_nothing(sim: SimServer, exchange: BinanceFutures, db: Database) -> None:
    journal = PostgresJournal(db, "main", language="en")
    key = await _open(exchange, journal, db)
    position = journal.position(key)
    assert position is not None
    sim.faults.add("unavailable", path="/fapi/v1/order", method="POST")
    with pytest.raises(ExecutionDeferred):
        await _executor(exchange, journal).execute(key, [_entry_action(position)])
    assert sim.engine.orders == {}
    position = journal.position(key)
    assert position is not None
    assert position.phase is Phase.PENDING_ENTRY
    sim.faults.clear()
    await _executor(exchange, journal).redrive(key)
    position = journal.position(key)
    assert position is not None
    assert position.phase is Phase.OPEN


async def test_rejected_stop_closes_the_position_and_alerts(
    sim: SimServer, exchange: BinanceFutures, db: Database
) -> None:
    journal = PostgresJournal(db, "main", language="en")
    key = await _open(exchange, journal, db)
    position = journal.position(key)
    assert position is not None
    # Every algo order is refused (HTTP 400): the stop cannot be placed, so the position is closed at market.
    sim.faults.add("unavailable", path="/fapi/v1/algoOrder", method="POST", status=400)
    await _executor(exchange, journal).execute(key, [_entry_action(position)])

    position = journal.position(key)
    assert position is not None
    assert position.phase is Phase.CLOSED
    assert position.exit_reason is not None
    assert position.exit_reason.value == "stop_failed"
    assert await exchange.positions(SYMBOL) == []
    with db.session() as session:
        alerts = session.scalars(select(NotificationRow.text).where(NotificationRow.kind == "alert")).all()
        kinds = set(session.scalars(select(NotificationRow.kind)).all())
    assert any("Stop rejected" in text for text in alerts)
    assert "result" in kinds


async def test_a_stop_whose_sends_all_go_unanswered_is_resent_then_the_position_is_closed_and_alerted(
    sim: SimServer, exchange: BinanceFutures, db: Database
) -> None:
    """Issue 16, hole 7: a stop sent and answered 503 "Unknown error" but not executed is re-sent at once under the
    same client id (a few times); if it still is not there, the position must not stay unprotected."""
    journal = PostgresJournal(db, "main", language="en")
    key = await _open(exchange, journal, db)
    position = journal.position(key)
    assert position is not None
    sends = 1 + FAST.protective_resends
    sim.faults.add("unknown_error", path="/fapi/v1/algoOrder", method="POST", count=sends, execute=False)
    await _executor(exchange, journal).execute(key, [_entry_action(position)])

    position = journal.position(key)
    assert position is not None
    assert position.phase is Phase.CLOSED
    assert position.exit_reason is not None
    assert position.exit_reason.value == "stop_failed"
    assert await exchange.positions(SYMBOL) == []
    assert not [a for a in sim.engine.algo_orders.values() if a.client_algo_id == client_id(key, "S1")]
    with db.session() as session:
        alerts = session.scalars(select(NotificationRow.text).where(NotificationRow.kind == "alert")).all()
        stop_row = session.scalars(select(OrderRow).where(OrderRow.client_id == client_id(key, "S1"))).one()
    assert any("Stop rejected" in text and f"no answer to {sends} sends" in text for text in alerts)
    assert (stop_row.status, stop_row.attempts) == ("REJECTED", sends)


@pytest.mark.parametrize("refusal", [-4116, -4130])
async def test_a_stop_that_landed_but_was_not_found_yet_is_adopted_when_its_resend_is_refused(
    sim: SimServer, exchange: BinanceFutures, db: Database, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    """The stop executed but was answered 503 "Unknown error", and the look-up right after said "does not exist"
    (the query lags the placement). The re-send is refused because the first one is there: as a duplicate client
    id (-4116, the sim's order of checks) or, should Binance check it first, as a second closePosition stop
    (-4130). Either way the stop is looked up again and adopted: no second stop, no market close, no alert."""
    journal = PostgresJournal(db, "main", language="en")
    key = await _open(exchange, journal, db)
    position = journal.position(key)
    assert position is not None
    stop_id = client_id(key, "S1")
    engine = sim.engine
    query, place = engine.query_algo, engine.new_algo_order
    lagged: list[str] = []

    def lagging_query(params: Mapping[str, str]) -> dict[str, Any]:
        if params.get("clientAlgoId") == stop_id and not lagged:
            lagged.append(stop_id)
            raise SimError(-2013, "Order does not exist.")
        return query(params)

    def close_position_checked_first(params: Mapping[str, str]) -> dict[str, Any]:
        if params.get("closePosition") == "true" and any(
            a.close_position and a.side == params["side"] and a.symbol == params["symbol"]
            for a in engine.open_algos.values()
        ):
            raise SimError(-4130, "An open stop or take profit order with GTE and closePosition in the direction "
                           "is existing.")  # fmt: skip
        return place(params)

    monkeypatch.setattr(engine, "query_algo", lagging_query)
    if refusal == -4130:
        monkeypatch.setattr(engine, "new_algo_order", close_position_checked_first)
    sim.faults.add("unknown_error", path="/fapi/v1/algoOrder", method="POST", count=1)
    await _executor(exchange, journal).execute(key, [_entry_action(position)])

    assert lagged == [stop_id]
    position = journal.position(key)
    assert position is not None
    assert position.phase is Phase.OPEN
    stop = position.order(stop_id)
    assert stop is not None
    assert stop.state is OrderState.ACTIVE
    assert [a.client_algo_id for a in engine.algo_orders.values()].count(stop_id) == 1
    with db.session() as session:
        assert session.scalars(select(NotificationRow.kind)).all() == ["entry"]


def _entry_action(position: Position) -> Action:
    entry = position.entry_order
    assert entry is not None
    action = action_for_leg(position, entry)
    assert action is not None
    return action


async def test_a_late_answer_never_turns_a_final_status_back(
    sim: SimServer, exchange: BinanceFutures, db: Database
) -> None:
    journal = PostgresJournal(db, "main", language="en")
    key = await _open(exchange, journal, db)
    entry = client_id(key, "E")
    journal.record_outcome(entry, OrderOutcome("FILLED", exchange_order_id=7, executed_qty=Decimal(2)))
    journal.record_outcome(entry, OrderOutcome("NEW", exchange_order_id=7, executed_qty=Decimal(0)))
    with db.session() as session:
        row = session.scalars(select(OrderRow).where(OrderRow.client_id == entry)).one()
        history = session.scalars(
            select(OrderStatusRow.status).where(OrderStatusRow.order_id == row.id).order_by(OrderStatusRow.id)
        ).all()
    assert (row.status, row.executed_qty) == ("FILLED", Decimal(2))
    assert history == ["PENDING", "FILLED", "NEW"]
