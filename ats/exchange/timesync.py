"""Server-time offset estimation with round-trip compensation.

Each sample brackets one GET /fapi/v1/time between two local readings. The server read its clock somewhere
inside that bracket; assuming the middle errs by at most half the round trip, so the sample with the
shortest round trip gives the tightest estimate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimeSample:
    sent_ms: int  # local clock just before sending
    server_ms: int  # serverTime in the answer
    received_ms: int  # local clock just after the answer arrived

    @property
    def round_trip_ms(self) -> int:
        return self.received_ms - self.sent_ms

    @property
    def offset_ms(self) -> int:
        """serverTime minus the local midpoint of the round trip."""
        return self.server_ms - (self.sent_ms + self.received_ms) // 2


@dataclass(frozen=True, slots=True)
class TimeOffset:
    offset_ms: int  # add to the local clock to get server time
    round_trip_ms: int  # of the sample it came from: the uncertainty is half of this


def best_offset(samples: Iterable[TimeSample]) -> TimeOffset:
    """The offset from the sample with the shortest round trip (the first such sample on ties)."""
    usable = [s for s in samples if s.round_trip_ms >= 0]
    if not usable:
        raise ValueError("no usable time sample (a sample's local clock went backwards)")
    best = min(usable, key=lambda s: s.round_trip_ms)
    return TimeOffset(offset_ms=best.offset_ms, round_trip_ms=best.round_trip_ms)
