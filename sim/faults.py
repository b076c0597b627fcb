"""Fault injection for the simulated exchange: the failures a real venue produces, on demand.

Each `FaultRule` applies to requests whose path matches a glob pattern (and optionally a method), for a
limited number of occurrences or until cleared. Kinds:

- latency: answer `latency_ms` later.
- drop_response: execute the request, then never answer properly: hold the response past the client's
  timeout (`mode="hold"`, for `hold_s`) or break the connection mid-response (`mode="close"`).
- unavailable: HTTP 503 "Service Unavailable." (a definite failure); `execute=True` runs the request anyway.
- unknown_error: HTTP 503 "Unknown error, please check your request or try again later." (outcome unknown);
  executes the request unless `execute=False`.
- not_found: HTTP 404 -5000, as for a path the exchange does not serve (an endpoint a venue lacks or retired).
- rate_limit: HTTP 429 -1003 regardless of the weight actually used (a 429 storm). Its Retry-After is
  `retry_after_s` when given (a storm that tells clients when to come back), else the rest of the weight minute.
- malformed: an answer no Binance client expects, as a gateway or a bug between client and venue gives; executes
  the request unless `execute=False`. `shape`: "html" (an HTML error page with `status`, e.g. 502),
  "empty" (200 with no body), "missing_fields" (200 with the JSON object's fields dropped but one).

`clock_skew_ms` shifts the server's clock for /fapi/v1/time and the recvWindow check.

WebSockets (applied by the server to the connections open at the time, through the admin API):
- `StreamStall`: sockets stay open and deliver nothing, WebSocket pings answered (only the events stop, as when
  Binance's user stream silently dies) or not (a black-holed connection: the client's keepalive times out).
- disconnect (`POST /sim/ws/disconnect`) closes sockets at once; listenKey expiry (`POST /sim/listen-keys/expire`)
  pushes listenKeyExpired, or with `silent` pushes nothing (the key is gone, the socket open and mute).
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

MALFORMED_SHAPES = ("html", "empty", "missing_fields")


class FaultKind(StrEnum):
    LATENCY = "latency"
    DROP_RESPONSE = "drop_response"
    UNAVAILABLE = "unavailable"
    UNKNOWN_ERROR = "unknown_error"
    RATE_LIMIT = "rate_limit"
    MALFORMED = "malformed"
    NOT_FOUND = "not_found"


@dataclass
class FaultRule:
    kind: FaultKind
    path: str = "*"  # glob on the request path, e.g. "/fapi/v1/order" or "/fapi/*"
    method: str = "*"
    count: int | None = None  # occurrences left; None = until cleared
    latency_ms: int = 0
    execute: bool | None = None  # None = the kind's default (see module docstring)
    status: int = 503
    hold_s: float = 30.0
    mode: str = "hold"  # drop_response: "hold" or "close"
    shape: str = "html"  # malformed: "html", "empty" or "missing_fields"
    retry_after_s: int | None = None  # rate_limit: the Retry-After to announce (None: the rest of the minute)

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and fnmatch.fnmatchcase(path, self.path)

    @property
    def executes(self) -> bool:
        if self.execute is not None:
            return self.execute
        return self.kind in (FaultKind.UNKNOWN_ERROR, FaultKind.DROP_RESPONSE, FaultKind.LATENCY, FaultKind.MALFORMED)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = str(self.kind)
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> FaultRule:
        allowed = set(FaultRule.__dataclass_fields__)
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        values = dict(data)
        values["kind"] = FaultKind(values["kind"])
        if values.get("mode", "hold") not in ("hold", "close"):
            raise ValueError("mode must be 'hold' or 'close'")
        if values.get("shape", "html") not in MALFORMED_SHAPES:
            raise ValueError(f"shape must be one of {', '.join(MALFORMED_SHAPES)}")
        if values.get("retry_after_s") is not None and int(values["retry_after_s"]) < 1:
            raise ValueError("retry_after_s must be at least 1 (Retry-After counts whole seconds)")
        return FaultRule(**values)


@dataclass(frozen=True, slots=True)
class StreamStall:
    """A silent stall of the WebSockets open now whose path matches (e.g. "/private/*": the user streams).

    The events meant for them are lost, as a stalled stream loses them; reconnecting ends the stall.
    `pings`: keep answering WebSocket pings (the socket looks alive) or read nothing at all (a black hole).
    `seconds`: how long; None until cleared (`POST /sim/ws/resume`, `DELETE /sim/faults`, or a 0-second stall).
    """

    path: str = "*"
    seconds: float | None = None
    pings: bool = True

    @staticmethod
    def from_json(data: dict[str, Any]) -> StreamStall:
        unknown = set(data) - {"path", "seconds", "pings"}
        if unknown:
            raise ValueError(f"unknown stall fields: {', '.join(sorted(unknown))}")
        seconds = data.get("seconds")
        if seconds is not None and not float(seconds) >= 0:
            raise ValueError("seconds must be at least 0 (or null: until cleared)")
        pings = data.get("pings", True)
        if not isinstance(pings, bool):
            raise ValueError("pings must be true or false")
        return StreamStall(str(data.get("path", "*")), None if seconds is None else float(seconds), pings)


@dataclass
class Faults:
    """The mutable fault configuration of one simulated exchange."""

    rules: list[FaultRule] = field(default_factory=list)
    clock_skew_ms: int = 0

    def add(self, kind: FaultKind | str, **options: Any) -> FaultRule:
        rule = FaultRule(kind=FaultKind(kind), **options)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()
        self.clock_skew_ms = 0

    def take(self, method: str, path: str) -> list[FaultRule]:
        """The rules that apply to this request, each use counted (exhausted rules are removed)."""
        hits = [rule for rule in self.rules if rule.matches(method, path)]
        for rule in hits:
            if rule.count is not None:
                rule.count -= 1
                if rule.count <= 0:
                    self.rules.remove(rule)
        return hits

    def to_json(self) -> dict[str, Any]:
        return {"rules": [rule.to_json() for rule in self.rules], "clock_skew_ms": self.clock_skew_ms}
