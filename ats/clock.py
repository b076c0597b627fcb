"""Injectable clocks: production code asks a Clock for the time, tests hand it a FakeClock.

All times are UTC. Milliseconds since the epoch are what Binance speaks, so `now_ms` is the primitive.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch, UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for timeouts and staleness)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait; a fake clock advances instead of waiting."""
        ...


class WallClock:
    """The real clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to (or when slept on), for deterministic tests."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:  # 2026-01-01T00:00:00Z
        self._now_ms = start_ms
        self._mono = 0.0

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now_ms += round(seconds * 1000)
        self._mono += seconds

    def set_ms(self, now_ms: int) -> None:
        if now_ms < self._now_ms:
            raise ValueError("a clock cannot go backwards")
        self.advance((now_ms - self._now_ms) / 1000)

    async def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def format_utc(ms: int) -> str:
    """A time for people to read, to the minute: '2026-01-01 00:00 UTC' (messages, reports, reasons)."""
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M UTC")


def datetime_to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
    return int(dt.timestamp() * 1000)


def parse_utc_ms(text: str) -> int:
    """A moment given as YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC unless it names its offset), in epoch ms."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)") from None
    return datetime_to_ms(moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment)


def utc_day_start_ms(ms: int) -> int:
    """Start of the UTC day containing `ms` (the daily loss limit resets there)."""
    return ms - ms % 86_400_000
