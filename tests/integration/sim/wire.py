"""A hand-signed Binance client for driving the simulated exchange over real HTTP in tests."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlencode

import httpx

from sim.server import SimServer

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def signed(secret: str, params: dict[str, Any], *, timestamp_ms: int | None = None) -> str:
    query = urlencode({**params, "timestamp": timestamp_ms or int(time.time() * 1000)})
    return query + "&signature=" + hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


class Client:
    """Just enough of a Binance client to drive the sim: HMAC signing (timestamps from the sim's clock, as a
    client synchronised with the exchange would send after `advance`), params in query or body."""

    def __init__(self, sim: SimServer) -> None:
        self.sim = sim
        self.http = httpx.AsyncClient(base_url=sim.rest_url, timeout=5)
        self.headers = {"X-MBX-APIKEY": sim.api_key}

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(
            f"{path}?{signed(self.sim.api_secret, params, timestamp_ms=self.sim.clock.now_ms())}", headers=self.headers
        )

    async def post(self, path: str, **params: Any) -> httpx.Response:
        body = signed(self.sim.api_secret, params, timestamp_ms=self.sim.clock.now_ms())
        return await self.http.post(path, content=body, headers={**self.headers, **FORM})

    async def put(self, path: str, **params: Any) -> httpx.Response:
        body = signed(self.sim.api_secret, params, timestamp_ms=self.sim.clock.now_ms())
        return await self.http.put(path, content=body, headers={**self.headers, **FORM})

    async def delete(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.delete(
            f"{path}?{signed(self.sim.api_secret, params, timestamp_ms=self.sim.clock.now_ms())}", headers=self.headers
        )

    async def aclose(self) -> None:
        await self.http.aclose()
