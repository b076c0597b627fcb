"""`ats close-all` as an operator runs it in an emergency: the real command in its own process, the Prefect server
down (PREFECT_API_URL pointing at nothing), against the simulated exchange holding positions this system opened
(with their stop and take-profits) and positions and orders placed by hand; then with the database down too. It
needs nothing but the exchange."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from sqlalchemy import select

from ats.clock import WallClock
from ats.config import ExchangeSettings, Settings, Venue
from ats.domain import Direction, Side
from ats.exchange.base import OrderRequest, OrderType
from ats.exchange.binance import BinanceFutures
from ats.execution import Executor
from ats.lifecycle import Phase
from ats.reconcile import reconcile
from db.journal import PostgresJournal
from db.models import NotificationRow, PositionRow, RiskLedgerRow
from tests.integration.flows.conftest import FlowEnv
from tests.integration.flows.test_cycle import protection_of
from tests.integration.monitor.harness import ACCOUNT, Desk, client
from tests.integration.monitor.processes import ATS_CLI, ROOT, monitor_env

MANAGED = {"BNBUSDT": Direction.LONG, "SOLUSDT": Direction.SHORT}


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Account:
    managed_keys: list[str]


@pytest.fixture
async def exchange(exchange_env: FlowEnv) -> AsyncIterator[BinanceFutures]:
    sim = exchange_env.sim
    exchange = client(sim.rest_url, sim.api_key, sim.api_secret)
    yield exchange
    await exchange.aclose()


@pytest.fixture
async def busy_account(exchange_env: FlowEnv, exchange: BinanceFutures) -> Account:
    """Two positions this system opened and protected (stop, TP1, TP2 on the exchange), one position and two
    resting limit orders placed by hand (one on a symbol without a position)."""
    desk = Desk(exchange, exchange_env.database)
    keys = [await desk.open(symbol, direction) for symbol, direction in MANAGED.items()]
    # What the monitor does on the entry fills: reconciliation places the protection.
    settings = Settings(venue=Venue.SIM, account=ACCOUNT, exchange=ExchangeSettings(rest_url=exchange_env.sim.rest_url))
    journal = PostgresJournal(exchange_env.database, ACCOUNT, language="en")
    executor = Executor(exchange, journal, WallClock(), source="test")
    for _ in range(20):
        if all(desk.position(k).phase is Phase.OPEN for k in keys):
            break
        await reconcile(exchange, journal, executor, WallClock(), settings, since_ms=None)
    for key in keys:
        assert set(protection_of(exchange_env, key)) == {"S1", "T1", "T2"}, desk.position(key)

    await exchange.new_order(OrderRequest("TRXUSDT", Side.BUY, OrderType.MARKET, Decimal(100), "by-hand-1"))
    for number, symbol in enumerate(("TRXUSDT", "LINKUSDT"), 2):
        mark = (await exchange.premium_index(symbol))[0].mark_price
        price = (mark * Decimal("0.9")).quantize(Decimal("0.001") if symbol == "LINKUSDT" else Decimal("0.00001"))
        await exchange.new_order(
            OrderRequest(symbol, Side.BUY, OrderType.LIMIT, Decimal(100), f"by-hand-{number}", price=price,
                         time_in_force="GTC")
        )  # fmt: skip
    state = exchange_env.control.state()
    assert set(state["positions"]) == {*MANAGED, "TRXUSDT"}
    assert len(state["open_orders"]) == 2
    assert len(state["open_algo_orders"]) == 6
    return Account(keys)


def close_all(env: FlowEnv, tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`ats close-all --yes ...` in its own process, the environment pointing at the sim, the test database and
    a Prefect server that is not there (`extra` overrides): the finished process."""
    sim = env.sim
    extra = {"PREFECT_API_URL": f"http://127.0.0.1:{closed_port()}/api", **extra}
    environment = monitor_env(
        sim.rest_url, sim.ws_url, env.database, tmp_path / "data", PREFECT_HOME=str(tmp_path / "prefect"), **extra
    )
    return subprocess.run(
        [sys.executable, "-c", ATS_CLI, "close-all", "--yes", *args],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_flat(env: FlowEnv) -> None:
    state = env.control.state()
    assert state["positions"] == {}
    assert state["open_orders"] == []
    assert state["open_algo_orders"] == []


async def test_close_all_needs_no_prefect_server(exchange_env: FlowEnv, busy_account: Account, tmp_path: Path) -> None:
    done = close_all(exchange_env, tmp_path, "--reason", "test emergency")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    assert_flat(exchange_env)
    assert "Managed positions closed: BNBUSDT, SOLUSDT" in output
    assert "Other positions closed at market: TRXUSDT" in output
    assert "No position is open on the exchange." in output
    assert "warning: not recorded in Prefect" in done.stderr
    assert "temporary" not in output.lower()  # no temporary Prefect server was started

    with exchange_env.database.session() as session:
        positions = session.scalars(select(PositionRow)).all()
        ledger = session.scalars(select(RiskLedgerRow)).one()
        alerts = session.scalars(select(NotificationRow).where(NotificationRow.kind == "alert")).all()
    assert {p.symbol for p in positions} == set(MANAGED)
    assert {(p.state, p.exit_reason) for p in positions} == {("closed", "manual")}
    assert ledger.halted
    assert ledger.halted_reason == "close-all: test emergency"
    (alert,) = [a for a in alerts if "Close-all: test emergency" in a.text]
    assert alert.status == "sent"
    assert "New entries are halted until 00:00 UTC" in alert.text


async def test_close_all_needs_no_database(
    exchange_env: FlowEnv, busy_account: Account, exchange: BinanceFutures, tmp_path: Path
) -> None:
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/ats"
    done = close_all(exchange_env, tmp_path, "--reason", "test emergency", ATS_DATABASE_URL=dead)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    assert_flat(exchange_env)
    # Without the journal, the managed positions are closed like any other, and nothing is recorded.
    assert "Other positions closed at market: BNBUSDT, SOLUSDT, TRXUSDT" in output
    assert "Nothing was recorded in the database" in output
    assert "records the closes once the database is back" in output
    # The alert, sent directly: to the log here (no Telegram configured), marked with its venue.
    assert "notification (no Telegram configured):\n[SIM] 🚨 Alert: Close-all: test emergency" in done.stderr
    with exchange_env.database.session() as session:
        assert not any(day.halted for day in session.scalars(select(RiskLedgerRow)))
        assert not any("Close-all" in note.text for note in session.scalars(select(NotificationRow)))
    assert {p.symbol for p in exchange_env.open_positions()} == set(MANAGED)

    # The database is back: reconciliation records the closes.
    settings = Settings(venue=Venue.SIM, account=ACCOUNT, exchange=ExchangeSettings(rest_url=exchange_env.sim.rest_url))
    journal = PostgresJournal(exchange_env.database, ACCOUNT, language="en")
    executor = Executor(exchange, journal, WallClock(), source="test")
    await reconcile(exchange, journal, executor, WallClock(), settings, since_ms=None)
    assert exchange_env.open_positions() == []


async def test_close_all_leaves_its_report_in_prefect_when_it_answers(
    flow_env: FlowEnv, exchange: BinanceFutures, prefect_server: str, tmp_path: Path
) -> None:
    await exchange.new_order(OrderRequest("TRXUSDT", Side.BUY, OrderType.MARKET, Decimal(100), "by-hand-1"))
    done = close_all(flow_env, tmp_path, PREFECT_API_URL=prefect_server)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "recorded in Prefect" in done.stdout
    assert_flat(flow_env)
    async with get_client() as prefect:
        # The key keeps every close-all's report (the session's server also holds the close-all flow's): the newest
        (artifact,) = await prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["close-all"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert artifact.type == "markdown"
    assert "Other positions closed at market: TRXUSDT" in str(artifact.data)


def test_close_all_with_keys_in_unreachable_secret_blocks_says_how_to_fix_it(
    exchange_env: FlowEnv, tmp_path: Path
) -> None:
    done = close_all(exchange_env, tmp_path, ATS_EXCHANGE__API_KEY_BLOCK="key", ATS_EXCHANGE__API_SECRET_BLOCK="s")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "ATS_EXCHANGE__API_KEY_FILE" in done.stderr


def test_close_all_against_an_unreachable_exchange_says_so_and_fails(exchange_env: FlowEnv, tmp_path: Path) -> None:
    done = close_all(exchange_env, tmp_path, ATS_EXCHANGE__REST_URL=f"http://127.0.0.1:{closed_port()}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "close-all stopped, exchange unreachable: GET /fapi/v1/time" in done.stderr
