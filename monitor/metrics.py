"""Prometheus metrics of one monitor process, in its own registry (several monitors can share a test process).

Latencies and counts are recorded as they happen; the current state (role, open positions, streams, request
weight, last reconciliation) is read at scrape time from `MonitorState`, which the worker keeps up to date.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ats.exchange.base import StreamHealth

ROLES = ("starting", "standby", "active", "stopping", "stopped")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class MonitorState:
    """What the health endpoints and the scrape report; written by the supervisor and the worker."""

    role: str = "starting"
    open_positions: int = 0
    streams: dict[str, StreamHealth] = field(default_factory=dict)
    weight_used: int = 0
    last_reconcile_ms: int | None = None  # end of the last successful pass
    alive_mono: float | None = None  # monotonic time the event loop last ran the liveness ticker
    problems: list[str] = field(default_factory=list)  # why it is not ready, for /readyz
    unready_since_ms: int | None = None  # when it last became not ready (None while ready), for the watchdog

    def set_problems(self, problems: list[str], now_ms: int) -> None:
        """Why it is not ready now (none: ready), remembering since when it has not been ready."""
        self.problems = problems
        if not problems:
            self.unready_since_ms = None
        elif self.unready_since_ms is None:
            self.unready_since_ms = now_ms


class MonitorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.state = MonitorState()
        self.tick_to_action = Histogram(
            "ats_monitor_tick_to_action_seconds",
            "From a mark-price tick that crossed a stop to the lifecycle's actions carried out",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.event_to_action = Histogram(
            "ats_monitor_event_to_action_seconds",
            "From a user-stream event to the lifecycle's actions carried out",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter("ats_monitor_events", "Stream events handled", ["kind"], registry=self.registry)
        self.reconciles = Counter(
            "ats_monitor_reconciles", "Reconciliation passes by outcome", ["outcome"], registry=self.registry
        )
        self.redrives = Counter(
            "ats_monitor_redrives", "Positions re-driven for legs without an outcome", registry=self.registry
        )
        self.fill_checks = Counter(
            "ats_monitor_fill_checks",
            "Symbols reconciled at once because an expected fill did not come, by cause (level, probe) and finding",
            ["trigger", "outcome"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self.state))


class _StateCollector(Collector):
    def __init__(self, state: MonitorState) -> None:
        self._state = state

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        state = self._state
        role = GaugeMetricFamily("ats_monitor_role", "1 for the role this process has now", labels=["role"])
        for name in ROLES:
            role.add_metric([name], 1.0 if state.role == name else 0.0)
        yield role
        yield GaugeMetricFamily(
            "ats_monitor_leader", "1 while this process is the active monitor", value=float(state.role == "active")
        )
        yield GaugeMetricFamily("ats_monitor_open_positions", "Open positions watched", value=state.open_positions)
        yield GaugeMetricFamily(
            "ats_monitor_request_weight_used", "Request weight used in the current minute", value=state.weight_used
        )
        yield GaugeMetricFamily(
            "ats_monitor_last_reconcile_timestamp_seconds",
            "End of the last successful reconciliation (Unix time)",
            value=(state.last_reconcile_ms or 0) / 1000,
        )
        connected = GaugeMetricFamily("ats_monitor_stream_connected", "1 while the stream is up", labels=["stream"])
        reconnects = CounterMetricFamily(
            "ats_monitor_stream_reconnects", "Reconnections since the process started", labels=["stream"]
        )
        last = GaugeMetricFamily(
            "ats_monitor_stream_last_message_timestamp_seconds", "Last frame received (Unix time)", labels=["stream"]
        )
        for name, health in sorted(state.streams.items()):
            connected.add_metric([name], float(health.connected))
            reconnects.add_metric([name], float(health.reconnects))
            last.add_metric([name], (health.last_message_ms or 0) / 1000)
        yield connected
        yield reconnects
        yield last
