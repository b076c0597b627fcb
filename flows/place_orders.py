"""place-orders: risk checks and intents under one lock, then retry-safe entries with protection."""

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import cast

from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import State

from ats.domain import Signal
from ats.placement import Candidate, Placement, PlacementResult
from flows.parameters import Count, Score
from tasks.account import send_notifications
from tasks.flow_runs import ats_flow, timed_run_name
from tasks.placement import Decided, open_on_exchange, read_exchange_account, record_entries
from tasks.reports import ArtifactKey, artifact_key, placement_markdown
from tasks.runtime import RunFailed, Runtime, describe_failure, open_runtime, refused


@dataclass(frozen=True, slots=True)
class PlacementReport:
    """What one run decided and where each approved position stands."""

    decided: Decided
    placements: dict[str, Placement | str]  # intent key -> outcome, or the error that stopped it

    @property
    def opened(self) -> list[str]:
        """Symbols whose entry filled and whose position is open (protected, or being protected)."""
        holding = (PlacementResult.OPENED, PlacementResult.PROTECTING)
        return [p.symbol for p in self.placements.values() if isinstance(p, Placement) and p.result in holding]

    @property
    def failed(self) -> dict[str, str]:
        symbols = {d.key: d.signal.symbol for d in self.decided.decisions if d.key}
        return {
            symbols.get(key, key): (p if isinstance(p, str) else p.detail)
            for key, p in self.placements.items()
            if isinstance(p, str) or p.result is PlacementResult.FAILED
        }


async def place(
    rt: Runtime,
    *,
    signal_ids: list[int] | None = None,
    min_score: float = 0.0,
    max_new: int | None = None,
    dry_run: bool = False,
    unsaved: Sequence[Candidate] = (),
    require_monitor: bool = True,
) -> PlacementReport:
    """Decide on the signals (stored ones, plus `unsaved` ones in a dry run) and open the approved entries."""
    exchange = await read_exchange_account(rt)
    decided = await record_entries(
        rt,
        exchange,
        signal_ids=signal_ids,
        min_score=min_score,
        max_new=max_new,
        dry_run=dry_run,
        unsaved=unsaved,
        require_monitor=require_monitor,
    )
    placements: dict[str, Placement | str] = {}
    approved = [(d.key, d.signal.symbol, d.order) for d in decided.decisions if d.key is not None and d.order]
    if approved and not dry_run:
        # Prefect types an async task called with return_state=True as returning the State; it is awaitable.
        calls = [
            cast(Awaitable[State[Placement]], open_on_exchange(rt, key, symbol, order.leverage, return_state=True))
            for key, symbol, order in approved
        ]
        states = await asyncio.gather(*calls)
        for (key, _, _), state in zip(approved, states, strict=True):
            if state.is_completed():
                placements[key] = await state.aresult()
            else:
                placements[key] = await why_placement_failed(state)
    return PlacementReport(decided, placements)


async def why_placement_failed(state: State[Placement]) -> str:
    """The reason a placement task ended without a result, as one sentence."""
    error = await state.aresult(raise_on_failure=False)
    if isinstance(error, BaseException):
        reason = describe_failure(error) or f"{type(error).__name__}: {error}"
        return f"{reason} (reconciliation looks the entry up again)"
    return state.message or f"the placement task ended {state.type.value}"


@ats_flow("place-orders", timeout_s=10 * 60, flow_run_name=timed_run_name("placement"))
async def place_orders(
    signal_ids: list[int] | None = None,
    min_score: Score | None = None,
    max_new_positions: Count | None = None,
    dry_run: bool = False,
    require_monitor: bool = True,
    unrecorded_signals: list[Signal] | None = None,
) -> PlacementReport:
    """Check each new signal against the risk limits and open the approved ones with stop, TP1 and TP2.

    Limits: max concurrent positions, one position per symbol, max notional, max leverage, min order size,
    available balance, and the daily loss limit (a cap: today's realised PnL plus what every open position and
    pending entry loses at its stop; once realised + unrealised reach it, the day stays halted). Decisions are
    taken in one transaction under a per-account lock and recorded on the signals (refusals with their reason).
    Entries are sent with deterministic client ids: a retry never doubles one.

    Args:
        signal_ids: The signals to act on; default: every new signal of the newest closed bar.
        min_score: Ignore signals weaker than this (0-100); default ATS_MIN_SCORE (85).
        max_new_positions: Open at most this many positions in this run (the limits apply anyway).
        dry_run: Decide and report, but record nothing and send no order.
        require_monitor: Refuse every entry while no monitor runs (nothing would move its stop or close it when
            the exchange stop does not fire); the run ends Completed, its message saying so. Untick to trade anyway.
        unrecorded_signals: A dry run's signals, never stored (a dry-run cycle's scan): decided along with the others.
    """
    if unrecorded_signals and not dry_run:
        raise RunFailed("unrecorded_signals are a dry run's: a real run acts only on recorded signals")
    async with open_runtime() as rt:
        threshold = rt.settings.min_score if min_score is None else min_score
        unsaved = [Candidate(0, signal, "scan") for signal in unrecorded_signals or ()]
        try:
            report = await place(
                rt,
                signal_ids=signal_ids,
                min_score=threshold,
                max_new=max_new_positions,
                dry_run=dry_run,
                unsaved=[s for s in unsaved if s.signal.strength >= threshold],
                require_monitor=require_monitor,
            )
        finally:
            if not dry_run:
                await send_notifications(rt)
        await acreate_markdown_artifact(
            placement_markdown(report.decided, report.placements),
            key=artifact_key(ArtifactKey.PLACEMENTS, dry_run=dry_run),
            description="What was opened, refused and why, and the account it was decided against"
            + (" (dry run: nothing recorded, no order sent)" if dry_run else ""),
        )
        if report.failed:
            details = "; ".join(f"{symbol}: {why}" for symbol, why in sorted(report.failed.items()))
            total = sum(1 for d in report.decided.decisions if d.approved)
            raise RunFailed(f"{len(report.failed)} of {total} entries failed: {details}")
        if report.decided.no_monitor and report.decided.decisions:
            return refused(f"{len(report.decided.decisions)} entries: {report.decided.no_monitor}", report)
        return report
