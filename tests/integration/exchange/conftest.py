"""The simulated exchange on loopback and a BinanceFutures client pointed at it (real HTTP, real WebSockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from ats.exchange.binance import BinanceFutures
from sim.server import SimServer


class SimTime:
    """The client's clock in these tests: the sim's own clock, where waiting moves the sim's time forward.

    A 429's Retry-After or a ban is then waited out in no real time, and the client and the exchange agree
    on what time it is (the sim's manual clock runs ahead of the wall clock).
    """

    def __init__(self, sim: SimServer) -> None:
        self._clock: Any = sim.clock

    def now_ms(self) -> int:
        return int(self._clock.now_ms())

    def monotonic(self) -> float:
        return float(self._clock.monotonic())

    async def sleep(self, seconds: float) -> None:
        self._clock.advance(max(seconds, 0.0))
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self._clock.advance(seconds)


class CountingTransport(httpx.AsyncHTTPTransport):
    """A real HTTP transport that counts what actually leaves the process."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return await super().handle_async_request(request)


@pytest.fixture
async def exchange_sim(sim: SimServer) -> SimServer:
    """The shared `sim` fixture with BTCUSDT at a known price."""
    await sim.set_price("BTCUSDT", Decimal(91000))
    return sim


@pytest.fixture
def sim_time(exchange_sim: SimServer) -> SimTime:
    return SimTime(exchange_sim)


@pytest.fixture
def transport() -> CountingTransport:
    return CountingTransport()


Connect = Callable[..., BinanceFutures]


@pytest.fixture
async def connect(exchange_sim: SimServer, sim_time: SimTime, transport: CountingTransport) -> AsyncIterator[Connect]:
    """Build clients for the sim (closed at the end of the test); keyword arguments override the defaults."""
    made: list[BinanceFutures] = []

    def build(**overrides: Any) -> BinanceFutures:
        options: dict[str, Any] = {"clock": sim_time, "timeout_s": 5.0, "transport": transport, **overrides}
        secret = options.pop("api_secret", exchange_sim.api_secret)
        made.append(
            BinanceFutures(exchange_sim.rest_url, SecretStr(exchange_sim.api_key), SecretStr(secret), **options)
        )
        return made[-1]

    yield build
    for binance in made:
        await binance.aclose()


@pytest.fixture
def client(connect: Connect) -> BinanceFutures:
    return connect()
