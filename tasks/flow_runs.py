"""Every flow of the system is declared with `ats_flow`: a timeout, readable failures, and state hooks that record
how each run ended in PostgreSQL and tell a person when a run failed, crashed or timed out.

- The hooks run in the flow's own process when its final state is set. A top-level run that did not complete
  becomes one alert in the outbox (flow, how it ended, the one-sentence reason, a link to the run or its id),
  delivered at once; subflow failures are told by their parent, whose message names the subflow.
- A process that dies outright (SIGKILL, a lost host) runs no hook: Prefect's zombie automation (`ats deploy`)
  marks the run Crashed once its heartbeats stop, and the watchdog flow reads such runs from Prefect
  (`report_unfinished_runs`), under the same dedupe key, so each run is told once either way.
- Without a reachable database the alert goes straight to the notifier: nothing fails silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from prefect import Flow
from prefect import flow as prefect_flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterParentTaskRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.runtime import flow_run as current_run
from prefect.utilities.urls import url_for

from ats.clock import WallClock
from ats.config import Settings, load_settings
from ats.notify import AlertNote, flow_run_alert, make_notifier, render
from db.health import FinishedRun, record_flow_run
from db.journal import enqueue_notification
from db.outbox import deliver_pending
from db.secrets import with_secret_blocks
from db.session import Database
from tasks.runtime import prepare_logging, readable_failures, shared_database

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("tasks.flow_runs")

UNFINISHED = (StateType.FAILED, StateType.CRASHED)
CONCURRENCY_CANCEL = "Deployment concurrency limit reached"  # Prefect's message when CANCEL_NEW drops a run


def ats_flow(
    name: str, *, timeout_s: float, flow_run_name: str | Callable[[], str] | None = None
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Flow[P, Coroutine[Any, Any, R]]]:
    """A Prefect flow of this system: it ends TimedOut after `timeout_s` (so a hung run never blocks the next),
    fails with a readable message (tasks.runtime.readable_failures), and reports how it ended (`record_run`)."""

    def declare(fn: Callable[P, Coroutine[Any, Any, R]]) -> Flow[P, Coroutine[Any, Any, R]]:
        return prefect_flow(
            name=name,
            flow_run_name=flow_run_name,
            timeout_seconds=timeout_s,
            on_completion=[record_run],
            on_failure=[record_run],
            on_crashed=[record_run],
            on_cancellation=[record_run],
        )(readable_failures(fn))

    return declare


def timed_run_name(label: str) -> Callable[[], str]:
    """Runs named by what they are and when (UTC), marked when they are dry runs: the run list reads as a timeline,
    and a cycle's subflow runs say what they are instead of carrying Prefect's random names."""

    def name() -> str:
        dry = " (dry run)" if current_run.parameters.get("dry_run") else ""
        return f"{label} {datetime.now(UTC):%Y-%m-%d %H:%M}{dry}"

    return name


def run_link(run_id: UUID | str) -> str:
    """The run's page in the Prefect UI, or its id when the UI address is unknown (a temporary server)."""
    return url_for("flow-run", obj_id=str(run_id)) or f"id {run_id}"


def finished_run(flow_name: str, run: FlowRun, state: State[Any]) -> FinishedRun:
    ended: datetime = run.end_time or state.timestamp
    return FinishedRun(
        id=str(run.id),
        flow=flow_name,
        name=run.name,
        subflow=run.parent_task_run_id is not None,
        state=state.type.value,
        state_name=state.name or state.type.value,
        message=state.message,
        started_at=run.start_time,
        ended_at=ended,
    )


def run_alert(run: FinishedRun) -> AlertNote | None:
    """The alert for a top-level run that did not complete (None for a completed run or a subflow)."""
    if run.subflow or run.state == StateType.COMPLETED.value:
        return None
    if run.state == StateType.CANCELLED.value and CONCURRENCY_CANCEL not in (run.message or ""):
        return None  # cancelled by someone: they know
    state = run.state_name if run.state_name == "TimedOut" else run.state
    return flow_run_alert(run.flow, run.name, state, run.message, run_link(run.id))


def alert_key(run: FinishedRun) -> str:
    """One alert per run and outcome, whoever notices first (the run's hook or the watchdog)."""
    return f"flow-run:{run.id}:{run.state}"


async def record_run(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """State hook: record how the run ended; alert and deliver at once when a top-level run did not complete.

    Never raises (Prefect would only log it): when the database is unreachable the alert goes to the notifier
    directly, and when that fails too the error is logged for the worker's log.
    """
    finished = finished_run(flow.name, flow_run, state)
    try:
        settings = await with_secret_blocks(load_settings())
        prepare_logging(settings)
    except Exception:
        log.exception("cannot read the configuration to report the run %s (%s)", flow_run.name, state.type.value)
        return
    await report([finished], settings)


async def report(runs: list[FinishedRun], settings: Settings) -> int:
    """Record runs and queue an alert for each one that did not complete, then deliver the outbox.

    Returns the alerts newly queued (a run already told of, by its hook or an earlier watchdog, is not counted).
    """
    alerts = [(run, note) for run in runs if (note := run_alert(run)) is not None]
    try:
        database = await asyncio.to_thread(shared_database, settings)

        def write() -> int:
            with database.session() as session:
                for run in runs:
                    record_flow_run(session, settings.account, run)
                return sum(
                    enqueue_notification(session, settings.account, alert_key(r), n, language=settings.language)
                    for r, n in alerts
                )

        queued = await asyncio.to_thread(write)
    except Exception as exc:
        log.error("cannot record flow runs in the database (%s): alerting directly", type(exc).__name__)
        await _send_directly(settings, [note for _, note in alerts])
        return len(alerts)
    if queued:
        await deliver_outbox(settings, database)
    return queued


async def deliver_outbox(settings: Settings, database: Database) -> int:
    """Send what the outbox holds for the account (Telegram, and the log either way)."""
    notifier = make_notifier(settings.telegram, venue=settings.venue)
    try:
        return await deliver_pending(database, settings.account, notifier, WallClock())
    finally:
        await notifier.aclose()


async def _send_directly(settings: Settings, notes: list[AlertNote]) -> None:
    """The database is down: send the alerts without the outbox (logged when that fails too)."""
    notifier = make_notifier(settings.telegram, venue=settings.venue)
    try:
        for note in notes:
            try:
                await notifier.send(render(note, settings.language))
            except Exception:
                log.exception("cannot send the alert %r either: it is only in this log", note.title)
    finally:
        await notifier.aclose()


async def report_unfinished_runs(settings: Settings, since: datetime) -> int:
    """Every top-level flow run that ended Failed or Crashed (or was dropped by a concurrency limit) since `since`,
    as Prefect knows them, recorded and alerted unless already told (a zombie marked Crashed ran no hook)."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[*UNFINISHED, StateType.CANCELLED]),
                ),
                end_time=FlowRunFilterEndTime(after_=since),
                parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True),
            ),
            limit=200,
        )
        names: dict[UUID, str] = {}
        for run in runs:
            if run.flow_id not in names:
                names[run.flow_id] = (await client.read_flow(run.flow_id)).name
    finished = [finished_run(names[run.flow_id], run, run.state) for run in runs if run.state is not None]
    return await report(finished, settings)
