"""Which flow runs reach a person, and how the alert reads (tasks.flow_runs.run_alert, ats.notify.flow_run_alert)."""

from __future__ import annotations

from datetime import UTC, datetime

from ats.notify import alert_text, render
from db.health import FinishedRun
from tasks.flow_runs import alert_key, run_alert

ENDED = datetime(2026, 12, 3, 10, 1, tzinfo=UTC)


def finished(
    state: str, *, name: str = "", message: str | None = "why", flow: str = "trading-cycle", **kw: object
) -> FinishedRun:
    fields: dict[str, object] = {
        "id": "0b1c", "flow": flow, "name": "cycle 2026-12-03 10:01", "subflow": False, "state": state,
        "state_name": name or state.title(), "message": message, "started_at": None, "ended_at": ENDED,
    }  # fmt: skip
    return FinishedRun(**{**fields, **kw})  # type: ignore[arg-type]


def test_a_failed_top_level_run_is_one_alert_with_the_flow_the_reason_and_the_run() -> None:
    note = run_alert(finished("FAILED", message="build-pools failed: exchange unreachable: GET /fapi/v1/time"))
    assert note is not None
    text = render(note, "en")
    assert text.startswith("⚠️ <b>Alert</b>: trading-cycle failed")
    assert "build-pools failed: exchange unreachable: GET /fapi/v1/time" in text
    # Where to look: the run's page in the Prefect UI (by its id), or the id alone when no UI address is known.
    assert "(run cycle 2026-12-03 10:01: " in text
    assert text.endswith(("/runs/flow-run/0b1c)", ": id 0b1c)"))


def test_crashed_and_timed_out_runs_say_so_and_a_failed_close_all_is_critical() -> None:
    crashed = run_alert(finished("CRASHED", message="No heartbeat for 120 s"))
    assert crashed is not None
    assert alert_text(crashed, "en")[0] == "trading-cycle crashed"
    timed_out = run_alert(finished("FAILED", name="TimedOut", message="Flow run exceeded timeout of 1200.0 second(s)"))
    assert timed_out is not None
    assert alert_text(timed_out, "en")[0] == "trading-cycle timed out"
    emergency = run_alert(finished("FAILED", flow="close-all", message="close-all incomplete: still open: BTCUSDT"))
    assert emergency is not None
    assert emergency.severity == "critical"


def test_completed_runs_subflows_and_cancellations_by_a_person_are_not_alerts() -> None:
    assert run_alert(finished("COMPLETED", message=None)) is None
    assert run_alert(finished("FAILED", subflow=True)) is None  # its parent tells, naming it
    assert run_alert(finished("CANCELLED", message="Cancelled from the UI")) is None


def test_a_cycle_dropped_by_the_concurrency_limit_is_an_alert() -> None:
    note = run_alert(finished("CANCELLED", message="Deployment concurrency limit reached."))
    assert note is not None
    assert alert_text(note, "en")[0] == "trading-cycle was cancelled"


def test_the_hook_and_the_watchdog_tell_of_a_run_under_one_key() -> None:
    assert alert_key(finished("CRASHED")) == alert_key(finished("CRASHED", message="other words"))
    assert alert_key(finished("CRASHED")) != alert_key(finished("FAILED"))
