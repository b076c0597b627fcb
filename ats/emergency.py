"""The emergency stop (close-all), its decisions: what to cancel, what to close and in what pieces, what to say.

Pure: the shell (tasks/emergency.py, run by the close-all flow and by `ats close-all`) reads the exchange, calls
these and carries out what they return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from ats.exchange.base import AlgoOrder, Order, OrderRequest, OrderType, PositionInfo
from ats.messages import MESSAGES, text
from ats.notify import AlertNote

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class CloseAllReport:
    managed_closed: list[str]  # symbols closed through their lifecycle
    managed_deferred: dict[str, str]  # symbol -> why its close could not finish now
    cancelled_symbols: list[str]  # symbols whose open orders and algo orders were cancelled
    unmanaged_closed: list[str]  # symbols closed with a plain reduce-only market order
    failures: dict[str, str]  # symbol -> error
    still_open: list[str]  # positions the exchange still shows at the end
    halted: bool = False  # new entries are halted until 00:00 UTC (recorded in the database)
    not_recorded: str | None = None  # why the database recorded nothing (unreachable); None when it did
    notes: list[str] = field(default_factory=list)  # what else did not go as planned (a halt, the alert)

    @property
    def complete(self) -> bool:
        """Nothing is left open on the exchange and nothing failed there."""
        return not self.still_open and not self.failures

    def summary(self) -> str:
        """One line for a failed run's message."""
        return f"still open: {', '.join(self.still_open) or 'none'}; failures: {len(self.failures)}"


def symbols_to_cancel(
    orders: Iterable[Order], algos: Iterable[AlgoOrder], positions: Iterable[PositionInfo]
) -> list[str]:
    """Every symbol with an open order, an open algo order or a position: all its orders of both kinds go."""
    return sorted({o.symbol for o in orders} | {a.symbol for a in algos} | {p.symbol for p in positions})


def market_slices(quantity: Decimal, largest: Decimal) -> list[Decimal]:
    """`quantity` as market orders of at most `largest` each (all of it at once when there is no maximum)."""
    if largest <= 0 or quantity <= largest:
        return [quantity]
    whole, rest = divmod(quantity, largest)
    return [largest] * int(whole) + ([rest] if rest > 0 else [])


def closing_orders(
    positions: Iterable[PositionInfo], largest: Mapping[str, Decimal], stamp_ms: int
) -> list[tuple[str, list[OrderRequest]]]:
    """For each open position, the reduce-only market orders that close it: split by the symbol's largest market
    order (`largest`: symbol -> market max quantity; missing or 0 means no limit) so a big position is not refused
    as a whole. Client ids are unique to this close-all (`stamp_ms`), the position and the piece."""
    plans: list[tuple[str, list[OrderRequest]]] = []
    for number, position in enumerate((p for p in positions if p.amount != 0), 1):
        pieces = market_slices(abs(position.amount), largest.get(position.symbol, ZERO))
        orders = [
            OrderRequest(
                position.symbol,
                position.direction.exit_side,
                OrderType.MARKET,
                quantity,
                f"closeall-{stamp_ms}-{number}-{part}",
                reduce_only=True,
            )
            for part, quantity in enumerate(pieces, 1)
        ]
        plans.append((position.symbol, orders))
    return plans


NOT_RECORDED_ADVICE = MESSAGES["emergency.advice"]["en"]  # the markdown report is English, as Prefect's pages are


def close_all_alert(report: CloseAllReport, reason: str) -> AlertNote:
    """The alert that tells the user what the emergency stop did."""
    closed = report.managed_closed + report.unmanaged_closed
    detail = [text("emergency.closed", symbols=", ".join(closed) if closed else text("emergency.nothing_open"))]
    if report.still_open:
        detail.append(text("emergency.still_open", symbols=", ".join(report.still_open)))
    if report.failures:
        failures = "; ".join(f"{s}: {why}" for s, why in sorted(report.failures.items()))
        detail.append(text("emergency.failed", failures=failures))
    if report.halted:
        detail.append(text("emergency.halted"))
    if report.not_recorded is not None:
        detail.append(text("emergency.not_recorded", why=report.not_recorded, advice=text("emergency.advice")))
    return AlertNote(text("emergency.title", reason=reason), tuple(detail), severity="critical")


def close_all_markdown(report: CloseAllReport) -> str:
    """The report as markdown: the close-all artifact in Prefect, and what `ats close-all` prints."""
    lines = ["# Emergency close-all", ""]
    lines.append(f"- Managed positions closed: {', '.join(report.managed_closed) or 'none'}")
    if report.managed_deferred:
        lines += [f"- Close deferred for {s}: {why}" for s, why in sorted(report.managed_deferred.items())]
    lines.append(f"- Orders and algo orders cancelled on: {', '.join(report.cancelled_symbols) or 'none'}")
    lines.append(f"- Other positions closed at market: {', '.join(report.unmanaged_closed) or 'none'}")
    lines += [f"- **Failed** {s}: {why}" for s, why in sorted(report.failures.items())]
    if report.halted:
        lines.append("- New entries are halted until 00:00 UTC")
    lines += [f"- Note: {note}" for note in report.notes]
    if report.still_open:
        lines += ["", f"> **Still open on the exchange: {', '.join(report.still_open)}. Act now.**"]
    else:
        lines += ["", "No position is open on the exchange."]
    if report.not_recorded is not None:
        lines += ["", f"> **Nothing was recorded in the database** ({report.not_recorded}). {NOT_RECORDED_ADVICE}"]
    return "\n".join(lines)
