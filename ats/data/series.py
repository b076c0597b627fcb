"""What history is made of besides bars: funding settlements; and the checks files and REST answers share.

Times: Binance's newer public files stamp in microseconds, everything else in milliseconds; `to_ms` tells them
apart by size (a time in ms stays below 10^14 until the year 5138) and refuses what is neither (seconds,
garbage). Funding settlements are stamped a few ms after the hour by Binance and floored by some sources, so
the same settlement is stored under its hour (`funding_hour`): importing both kinds of source never counts a
settlement twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from ats.exchange.base import FundingRate

HOUR_MS = 3_600_000
MICROS_FROM = 10**14  # a time at or above this is in microseconds
EARLIEST_MS = 1_262_304_000_000  # 2010-01-01: no Binance futures data is older; an earlier time is a wrong unit
MAX_ABS_FUNDING_RATE = Decimal(1)  # Binance caps rates at a few percent; |rate| >= 1 is another column misread


class MalformedData(ValueError):
    """A row that cannot be history: names the file (or request) and the line, so it can be found and fixed."""

    def __init__(self, where: str, line: int | None, reason: str) -> None:
        self.where = where
        self.line = line
        self.reason = reason
        super().__init__(f"{where}:{line}: {reason}" if line is not None else f"{where}: {reason}")


def to_ms(raw: int) -> int | None:
    """A Binance time in ms, from ms or µs; None when it is neither (seconds, a negative or absurd value)."""
    ms = raw // 1000 if raw >= MICROS_FROM else raw
    return ms if ms >= EARLIEST_MS else None


def funding_hour(time_ms: int) -> int:
    """The hour a settlement belongs to: its time rounded to the nearest whole hour."""
    return (time_ms + HOUR_MS // 2) // HOUR_MS * HOUR_MS


@dataclass(frozen=True, slots=True)
class FundingRates:
    """Funding settlements of one symbol, oldest first: the rate and, where known, the mark price it settled at."""

    symbol: str
    time_ms: tuple[int, ...]  # the settlement's hour (funding_hour)
    rate: tuple[Decimal, ...]
    mark_price: tuple[Decimal | None, ...]  # None: unknown (the developer set stores only the rate)

    def __len__(self) -> int:
        return len(self.time_ms)


def check_funding(
    symbol: str,
    raw_times: Sequence[int],
    rates: Sequence[Decimal],
    marks: Sequence[Decimal | None],
    *,
    where: str,
    lines: Sequence[int | None],
) -> FundingRates:
    """Settlements checked and ordered: a time in ms or µs, a finite rate below 100 %, a positive mark price when
    one is given, one settlement per hour. Raises MalformedData naming the first bad row."""
    by_hour: dict[int, int] = {}
    for i, (raw, rate, mark) in enumerate(zip(raw_times, rates, marks, strict=True)):
        ms = to_ms(raw)
        if ms is None:
            raise MalformedData(where, lines[i], f"funding time {raw} is not a time in ms or µs")
        if not rate.is_finite() or abs(rate) >= MAX_ABS_FUNDING_RATE:
            raise MalformedData(where, lines[i], f"funding rate {rate} is not a rate")
        if mark is not None and (not mark.is_finite() or mark <= 0):
            raise MalformedData(where, lines[i], f"mark price {mark} is not a price")
        hour = funding_hour(ms)
        if hour in by_hour:
            earlier = lines[by_hour[hour]]
            seen = f"line {earlier}" if earlier is not None else "another entry"
            raise MalformedData(where, lines[i], f"a second settlement in the hour of {hour} ({seen} has one)")
        by_hour[hour] = i
    order = sorted(by_hour)
    return FundingRates(
        symbol,
        tuple(order),
        tuple(rates[by_hour[h]] for h in order),
        tuple(marks[by_hour[h]] for h in order),
    )


def funding_from_rest(symbol: str, entries: Sequence[FundingRate], *, where: str) -> FundingRates:
    """GET /fapi/v1/fundingRate answers under the same checks as a file's rows."""
    return check_funding(
        symbol,
        [e.funding_time_ms for e in entries],
        [e.funding_rate for e in entries],
        [e.mark_price for e in entries],
        where=where,
        lines=[None] * len(entries),
    )
