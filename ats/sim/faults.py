"""Fault injection for the simulated exchange: the failures a real venue produces, on demand.

Each `FaultRule` applies to requests whose path matches a glob pattern (and optionally a method), for a
limited number of occurrences or until cleared. Kinds:

- latency: answer `latency_ms` later.
- drop_response: execute the request, then never answer properly: hold the response past the client's
  timeout (`mode="hold"`, for `hold_s`) or break the connection mid-response (`mode="close"`).
- unavailable: HTTP 503 "Service Unavailable." (a definite failure); `execute=True` runs the request anyway.
- unknown_error: HTTP 503 "Unknown error, please check your request or try again later." (outcome unknown);
  executes the request unless `execute=False`.
- rate_limit: HTTP 429 -1003 regardless of the weight actually used (a 429 storm). Its Retry-After is
  `retry_after_s` when given (a storm that tells clients when to come back), else the rest of the weight minute.

`clock_skew_ms` shifts the server's clock for /fapi/v1/time and the recvWindow check.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    LATENCY = "latency"
    DROP_RESPONSE = "drop_response"
    UNAVAILABLE = "unavailable"
    UNKNOWN_ERROR = "unknown_error"
    RATE_LIMIT = "rate_limit"


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
    retry_after_s: int | None = None  # rate_limit: the Retry-After to announce (None: the rest of the minute)

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and fnmatch.fnmatchcase(path, self.path)

    @property
    def executes(self) -> bool:
        if self.execute is not None:
            return self.execute
        return self.kind in (FaultKind.UNKNOWN_ERROR, FaultKind.DROP_RESPONSE, FaultKind.LATENCY)

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
        if values.get("retry_after_s") is not None and int(values["retry_after_s"]) < 1:
            raise ValueError("retry_after_s must be at least 1 (Retry-After counts whole seconds)")
        return FaultRule(**values)


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
