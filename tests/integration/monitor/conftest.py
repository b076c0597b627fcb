"""Fixtures of the in-process monitor tests: a REST client of the sim, a desk that opens positions like the
place-orders task, and the monitor itself (after its first reconciliation). A module may define its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ats.exchange.binance import BinanceFutures
from db.session import Database
from sim.server import SimServer
from tests.integration.monitor.harness import Desk, RunningMonitor, client, start_monitor


@pytest.fixture
async def exchange(sim: SimServer) -> AsyncIterator[BinanceFutures]:
    exchange = client(sim.rest_url, sim.api_key, sim.api_secret)
    yield exchange
    await exchange.aclose()


@pytest.fixture
def desk(exchange: BinanceFutures, db: Database) -> Desk:
    return Desk(exchange, db)


@pytest.fixture
async def monitor(sim: SimServer, db: Database) -> AsyncIterator[RunningMonitor]:
    running = await start_monitor(sim.rest_url, sim.ws_url, sim.api_key, sim.api_secret, db)
    yield running
    await running.shutdown()
