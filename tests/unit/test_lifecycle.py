"""The position state machine, transition by transition (property tests live in tests/unit/lifecycle/)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal as D

import pytest

from ats.codec import from_jsonable, to_jsonable
from ats.domain import Direction
from ats.lifecycle import (
    CancelOrder,
    CloseRequested,
    Event,
    Fill,
    FundingPaid,
    MarketClose,
    MarkPrice,
    Notify,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderState,
    Phase,
    PlaceEntry,
    PlaceStop,
    PlaceTakeProfit,
    Position,
    PositionHeld,
    PositionVanished,
    RecordAnomaly,
    RecordFill,
    RecordResult,
    RequestReconcile,
    ReversalSignal,
    Role,
    adopt_position,
    awaiting_fills,
    event_from_jsonable,
    event_to_jsonable,
    exit_triggers,
    open_risk,
    triggers_reached,
)
from ats.messages import say_text
from ats.notify import AlertNote, EntryNote, ExitReason, NoteKind, ResultNote, TakeProfitNote, alert_text, render
from tests.unit.lifecycle.harness import FEE_RATE as FEE
from tests.unit.lifecycle.harness import KEY, RULES, Driver, of_type, policy
from tests.unit.test_notify import NOTES

LONG, SHORT = Direction.LONG, Direction.SHORT


def kinds(actions: Sequence[object]) -> list[str]:
    return [type(a).__name__ for a in actions]


def only_notes(actions: Sequence[object]) -> list[Notify]:
    return [a for a in actions if isinstance(a, Notify)]


def alert_of(notify: Notify) -> AlertNote:
    assert isinstance(notify.note, AlertNote)
    return notify.note


# ---------------------------------------------------------------------------------------------- entry


def test_open_position_sends_a_deterministic_market_entry() -> None:
    d = Driver()
    assert d.phase() is Phase.PENDING_ENTRY
    (entry,) = d.actions
    assert isinstance(entry, PlaceEntry)
    assert entry.client_id == f"ats_{KEY}_E"
    assert entry.quantity == D("1.000")
    assert entry.request().reduce_only is False
    assert d.accept("E") == []
    assert d.phase() is Phase.PENDING_ENTRY
    assert d.leg("E").state is OrderState.ACTIVE


def test_entry_rejected_fails_once_with_an_alert() -> None:
    d = Driver()
    actions = d.reject("E", -2019, "Margin is insufficient.")
    assert d.phase() is Phase.FAILED
    (note,) = only_notes(actions)
    assert isinstance(note.note, AlertNote)
    assert "-2019" in alert_text(note.note, "en")[1]
    assert d.reject("E", -2019, "Margin is insufficient.") == []


def test_entry_expired_without_fill_fails() -> None:
    d = Driver()
    d.accept("E")
    actions = d.cancel("E", expired=True, filled="0")
    assert d.phase() is Phase.FAILED
    assert "expired" in alert_text(alert_of(only_notes(actions)[0]), "en")[1]


def test_complete_entry_fill_places_stop_first_then_targets_and_notifies_once() -> None:
    d = Driver()
    d.accept("E")
    actions = d.fill("E", "1.000", "100.00", done=True)
    assert kinds(actions) == ["RecordFill", "PlaceStop", "PlaceTakeProfit", "PlaceTakeProfit", "Notify"]
    stop, tp1, tp2 = of_type(actions, PlaceStop)[0], *of_type(actions, PlaceTakeProfit)
    assert stop.client_id == d.cid("S1")
    assert stop.trigger == D("98.00")
    assert stop.quantity is None
    request = stop.request()
    assert request.close_position
    assert not request.reduce_only
    assert request.type.value == "STOP_MARKET"
    assert (tp1.leg, tp1.trigger, tp1.quantity) == ("T1", D("104.00"), D("0.500"))
    assert (tp2.leg, tp2.trigger, tp2.quantity) == ("T2", D("108.00"), D("0.500"))
    assert tp1.request().reduce_only
    entry_note = only_notes(actions)[0]
    assert entry_note.key == f"{KEY}:entry"
    assert isinstance(entry_note.note, EntryNote)
    assert d.phase() is Phase.PROTECTING


def test_all_protection_acknowledged_is_open() -> None:
    d = Driver()
    d.open_fully()
    assert d.phase() is Phase.OPEN
    assert d.p.levels is not None
    assert d.p.levels.stop == D("98.00")


def test_partial_entry_fills_protect_the_first_fill_and_target_the_total() -> None:
    d = Driver()
    d.accept("E")
    first = d.fill("E", "0.400", "100.00", done=False)
    assert kinds(first) == ["RecordFill", "PlaceStop"]  # protected at once, closePosition covers what follows
    second = d.fill("E", "0.600", "100.10", done=True)
    assert not of_type(second, PlaceStop)
    targets = of_type(second, PlaceTakeProfit)
    assert [t.quantity for t in targets] == [D("0.500"), D("0.500")]
    assert d.p.entry_price == D("100.06")
    assert targets[0].trigger == D("104.06")  # 100.06 * 1.04 = 104.0624, rounded toward the entry


def test_entry_fills_out_of_order_wait_for_the_missing_fill() -> None:
    d = Driver()
    late = d.make_fill("E", "0.400", "100.00", done=False, cum="0.400", trade_id=11)
    final = d.make_fill("E", "0.600", "100.00", done=True, cum="1.000", trade_id=12)
    d.send(final)
    before = d.p
    assert not before.entry_done  # the exchange says 1.000 in total, 0.600 seen
    assert not of_type(d.actions, PlaceTakeProfit)
    assert len(of_type(d.actions, PlaceStop)) == 1
    d.send(late)
    assert d.p.entry_done
    assert [t.quantity for t in of_type(d.actions, PlaceTakeProfit)] == [D("0.500"), D("0.500")]


def test_duplicate_fill_changes_nothing() -> None:
    d = Driver()
    fill = d.make_fill("E", "1.000", "100.00", done=True)
    d.send(fill)
    before = d.p
    assert d.send(fill) == []
    assert d.p == before


def test_entry_expired_after_partial_fill_protects_what_filled() -> None:
    d = Driver()
    d.accept("E")
    d.fill("E", "0.300", "100.00", done=False)
    actions = d.cancel("E", expired=True, filled="0.300")
    assert [t.quantity for t in of_type(actions, PlaceTakeProfit)] == [D("0.150"), D("0.150")]
    assert d.p.entry_done
    assert d.p.entry_qty == D("0.300")


def test_expiry_reporting_a_fill_before_the_fill_itself_waits_for_it() -> None:
    d = Driver()
    d.accept("E")
    assert d.cancel("E", expired=True, filled="0.300") == []
    assert d.phase() is Phase.PENDING_ENTRY  # the exchange said 0.300 filled: not a failure
    actions = d.fill("E", "0.300", "100.00", done=False)
    assert of_type(actions, PlaceStop)
    assert [t.quantity for t in of_type(actions, PlaceTakeProfit)] == [D("0.150"), D("0.150")]


def test_close_requested_while_the_entry_looked_failed_applies_to_a_late_fill() -> None:
    d = Driver()
    d.cancel("E", expired=True, filled="0")
    d.close()
    actions = d.fill("E", "1.000", "100.00", done=True)
    assert of_type(actions, MarketClose)[0].reason is ExitReason.MANUAL


def test_fill_after_reported_failure_reopens_and_protects() -> None:
    d = Driver()
    d.cancel("E", expired=True, filled="0")
    assert d.phase() is Phase.FAILED
    actions = d.fill("E", "1.000", "100.00", done=True)
    assert d.phase() is Phase.PROTECTING
    assert d.p.closed_ms is None
    assert of_type(actions, PlaceStop)
    assert any(n.key.endswith("late_entry") for n in only_notes(actions))


def test_close_requested_before_the_fill_cancels_the_entry() -> None:
    d = Driver()
    d.accept("E")
    actions = d.close()
    assert of_type(actions, CancelOrder) == [CancelOrder(d.cid("E"), "TESTUSDT", False)]
    actions = d.cancel("E", filled="0")
    assert d.phase() is Phase.FAILED
    assert alert_text(alert_of(only_notes(actions)[0]), "en")[0] == "Entry canceled on request"


def test_close_requested_before_the_fill_closes_a_late_fill_at_market() -> None:
    d = Driver()
    d.accept("E")
    d.close()
    actions = d.fill("E", "1.000", "100.00", done=True)
    (close,) = of_type(actions, MarketClose)
    assert (close.client_id, close.quantity, close.reason) == (d.cid("X1"), D("1.000"), ExitReason.MANUAL)
    assert close.request().reduce_only
    assert d.phase() is Phase.CLOSING


# ---------------------------------------------------------------------------------------------- protection failures


@pytest.mark.parametrize(
    ("code", "message"), [(-2021, "Order would immediately trigger."), (-4130, "exists"), (None, "")]
)
def test_any_stop_rejection_closes_at_market_and_alerts(code: int | None, message: str) -> None:
    d = Driver()
    d.accept("E")
    d.fill("E", "1.000", "100.00", done=True)
    actions = d.reject("S1", code, message)
    (close,) = of_type(actions, MarketClose)
    assert close.reason is ExitReason.STOP_FAILED
    assert close.quantity == D("1.000")
    (alert,) = only_notes(actions)
    assert alert_of(alert).severity == "critical"
    assert d.phase() is Phase.CLOSING
    done = d.fill("X1", "1.000", "97.50")
    assert d.phase() is Phase.CLOSED
    assert d.p.exit_reason is ExitReason.STOP_FAILED
    cancels = {c.client_id for c in of_type(done, CancelOrder)}
    assert cancels == {d.cid("T1"), d.cid("T2")}  # S1 was rejected, nothing to cancel there


def test_stop_canceled_on_the_exchange_is_replaced_and_alerted() -> None:
    d = Driver()
    d.open_fully()
    actions = d.cancel("S1")
    (stop,) = of_type(actions, PlaceStop)
    assert stop.client_id == d.cid("S2")
    assert stop.trigger == D("98.00")
    assert stop.quantity is None  # S1 is gone, so closePosition is allowed again
    assert "replacing" in alert_text(alert_of(only_notes(actions)[0]), "en")[0]
    assert d.cancel("S1") == []


def test_triggered_stop_that_expired_unfilled_is_replaced_and_closes_at_market_if_passed() -> None:
    d = Driver()
    d.open_fully()
    d.mark("97.90")
    d.cancel("S1", expired=True)
    assert d.leg("S2").state is OrderState.REQUESTED
    actions = d.reject("S2", -2021)
    assert of_type(actions, MarketClose)[0].reason is ExitReason.STOP_FAILED


def test_target_that_would_trigger_immediately_is_taken_at_market() -> None:
    d = Driver()
    d.accept("E")
    d.fill("E", "1.000", "100.00", done=True)
    actions = d.reject("T1", -2021)
    (take,) = of_type(actions, MarketClose)
    assert (take.client_id, take.quantity, take.reason) == (d.cid("T1M"), D("0.500"), ExitReason.TP1)
    assert not only_notes(actions)
    actions = d.fill("T1M", "0.500", "104.20")
    assert d.phase() is Phase.TP1_DONE
    assert of_type(actions, PlaceStop)  # breakeven stop for the rest


def test_target_rejected_otherwise_only_alerts() -> None:
    d = Driver()
    d.accept("E")
    d.fill("E", "1.000", "100.00", done=True)
    actions = d.reject("T2", -2022, "ReduceOnly Order is rejected.")
    assert kinds(actions) == ["Notify"]
    assert "T2" in alert_text(alert_of(only_notes(actions)[0]), "en")[0]


def test_target_canceled_on_the_exchange_alerts_without_replacing() -> None:
    d = Driver()
    d.open_fully()
    actions = d.cancel("T2")
    assert kinds(actions) == ["Notify"]


def test_target_expired_by_the_exchange_is_not_an_alert() -> None:
    """Binance expires a reduce-only order that outlives its position (the stop filled first, the fill not seen
    yet): an alert would send someone to look at nothing (found by the chaos bench, monitor killed at the exit)."""
    d = Driver()
    d.open_fully()
    assert d.cancel("T2", expired=True) == []
    assert d.leg("T2").state is OrderState.CANCELED


# ---------------------------------------------------------------------------------------------- TP1 and breakeven


def test_tp1_places_the_breakeven_stop_first_and_cancels_the_old_only_after_its_ack() -> None:
    d = Driver()
    d.open_fully()
    actions = d.fill("T1", "0.500", "104.00")
    assert d.phase() is Phase.TP1_DONE
    (stop,) = of_type(actions, PlaceStop)
    # costs: entry fee 0.05 + TP1 fee 0.026; (100 * 0.5 + 0.076) / (0.5 * 0.9995) = 100.2021 -> 100.21
    assert stop.trigger == D("100.21")
    assert stop.quantity == D("0.500")  # reduce-only: S1 (closePosition) still lives, a second one would be -4130
    assert not of_type(actions, CancelOrder)
    (note,) = only_notes(actions)
    assert isinstance(note.note, TakeProfitNote)
    assert note.note.new_stop == D("100.21")
    assert note.note.pnl == D("2.000") - D("0.026")
    actions = d.accept("S2")
    assert of_type(actions, CancelOrder) == [CancelOrder(d.cid("S1"), "TESTUSDT", True)]
    assert d.cancel("S1") == []
    live_stop = d.p.current_order(Role.STOP)
    assert live_stop is not None
    assert live_stop.client_id == d.cid("S2")


def test_partial_tp1_does_not_move_the_stop_until_complete() -> None:
    d = Driver()
    d.open_fully()
    assert d.fill("T1", "0.200", "104.00", done=False) == [
        RecordFill(KEY, "T1", "tp1", of_type(d.actions, RecordFill)[-1].fill)
    ]
    assert d.phase() is Phase.OPEN
    actions = d.fill("T1", "0.300", "104.00")
    assert of_type(actions, PlaceStop)
    assert d.phase() is Phase.TP1_DONE


def test_tp1_waits_for_a_fill_that_arrives_after_the_final_one() -> None:
    d = Driver()
    d.open_fully()
    early = d.make_fill("T1", "0.200", "104.00", done=False, cum="0.200", trade_id=50)
    final = d.make_fill("T1", "0.300", "104.00", done=True, cum="0.500", trade_id=51)
    d.send(final)
    assert not d.p.tp1_done
    live_stop = d.p.current_order(Role.STOP)
    assert live_stop is not None
    assert live_stop.client_id == d.cid("S1")
    actions = d.send(early)
    (stop,) = of_type(actions, PlaceStop)
    assert stop.quantity == D("0.500")


def test_tp2_before_the_breakeven_stop_is_acknowledged_closes_and_cancels_both_stops() -> None:
    d = Driver()
    d.open_fully()
    d.fill("T1", "0.500", "104.00")
    actions = d.fill("T2", "0.500", "108.00")
    assert d.phase() is Phase.CLOSED
    assert d.p.exit_reason is ExitReason.TP2
    assert {c.client_id for c in of_type(actions, CancelOrder)} == {d.cid("S1"), d.cid("S2")}
    (result,) = of_type(actions, RecordResult)
    assert result.result.kind is NoteKind.TP2
    assert result.result.gross_pnl == D("6.000")
    # the late acknowledgement of S2 and the cancel confirmations change nothing visible
    assert d.accept("S2") == []
    assert d.cancel("S2") == []
    assert d.cancel("S1") == []
    assert len([n for n in d.notes() if n.key.endswith(":result")]) == 1


def test_stop_fires_after_tp1_before_the_breakeven_ack() -> None:
    d = Driver()
    d.open_fully()
    d.fill("T1", "0.500", "104.00")
    actions = d.fill("S1", "0.500", "97.95", done=True)
    assert d.phase() is Phase.CLOSED
    assert d.p.exit_reason is ExitReason.BREAKEVEN_STOP
    assert {c.client_id for c in of_type(actions, CancelOrder)} == {d.cid("S2"), d.cid("T2")}


def test_breakeven_covers_funding_paid() -> None:
    d = Driver()
    d.open_fully()
    d.funding("-0.5", "f1")
    actions = d.fill("T1", "0.500", "104.00")
    # costs 0.076 fees + 0.5 funding: (50 + 0.576) / 0.49975 = 101.2026 -> 101.21
    assert of_type(actions, PlaceStop)[0].trigger == D("101.21")


# ---------------------------------------------------------------------------------------------- stop and races


def test_stop_fill_closes_the_position_and_cancels_the_targets() -> None:
    d = Driver()
    d.open_fully()
    actions = d.fill("S1", "1.000", "97.98", done=True)
    assert d.phase() is Phase.CLOSED
    assert d.p.exit_reason is ExitReason.STOP
    assert {c.client_id for c in of_type(actions, CancelOrder)} == {d.cid("T1"), d.cid("T2")}
    assert all(c.algo for c in of_type(actions, CancelOrder))
    (note,) = only_notes(actions)
    assert note.key == f"{KEY}:result"
    assert isinstance(note.note, ResultNote)
    assert note.note.kind is NoteKind.STOP
    assert note.note.gross_pnl == D("-2.020")
    assert note.note.net_pnl == D("-2.020") - D("0.05") - D("0.04899")
    assert d.p.entry_qty == d.p.exit_qty


def test_stop_filling_in_parts_is_closing_until_done() -> None:
    d = Driver()
    d.open_fully()
    d.fill("S1", "0.600", "97.98", done=False)
    assert d.phase() is Phase.CLOSING
    d.mark("97.00", after_ms=60_000)  # the stop is executing: no supervision close
    assert not of_type(d.actions, MarketClose)
    d.fill("S1", "0.400", "97.90", done=True)
    assert d.phase() is Phase.CLOSED


def test_stop_and_target_racing_conserve_quantity() -> None:
    d = Driver()
    d.open_fully()
    d.fill("T1", "0.200", "104.00", done=False)
    d.fill("S1", "0.800", "97.98", done=True)
    assert d.phase() is Phase.CLOSED
    assert d.p.exit_qty == d.p.entry_qty
    assert d.p.exit_reason is ExitReason.STOP


def test_impossible_exit_beyond_the_position_is_recorded_and_ignored() -> None:
    d = Driver()
    d.open_fully()
    d.fill("T1", "0.500", "104.00")
    actions = d.fill("T2", "0.700", "108.00")
    assert kinds(actions) == ["RequestReconcile", "RecordAnomaly"]
    assert d.p.exit_qty == D("0.500")


# ---------------------------------------------------------------------------------------------- supervision


def test_mark_beyond_the_stop_without_a_fill_closes_after_the_grace() -> None:
    d = Driver()
    d.open_fully()
    assert d.mark("97.99") == []
    assert d.p.stop_crossed_ms is not None
    assert d.mark("97.90", after_ms=2_000) == []
    actions = d.mark("97.80", after_ms=3_000)
    (close,) = of_type(actions, MarketClose)
    assert close.reason is ExitReason.SUPERVISION
    assert not only_notes(actions)  # told once the exchange takes the close: the stop may have fired unseen
    assert d.mark("97.00", after_ms=10_000) == []  # one close only
    (alert,) = only_notes(d.accept("X1"))
    assert alert_of(alert).severity == "critical"
    assert alert_text(alert_of(alert), "en")[0] == "Exchange stop did not fire: closing at market"
    assert "without a stop fill" in alert_text(alert_of(alert), "en")[1]
    assert [n.key for n in only_notes(d.fill("X1", "1.000", "97.70"))] == [f"{KEY}:result"]  # told once


def test_a_supervision_close_whose_acknowledgement_was_lost_alerts_with_its_fill() -> None:
    d = Driver()
    d.open_fully()
    d.mark("97.99")
    d.mark("97.80", after_ms=5_000)
    keys = [n.key for n in only_notes(d.fill("X1", "1.000", "97.70"))]
    assert keys == [f"{KEY}:alert:supervision", f"{KEY}:result"]


def test_mark_recovering_resets_supervision() -> None:
    d = Driver()
    d.open_fully()
    d.mark("97.99")
    d.mark("98.50", after_ms=1_000)
    assert d.p.stop_crossed_ms is None
    assert d.mark("97.99", after_ms=4_500) == []


def test_supervision_uses_the_tightened_stop_level() -> None:
    d = Driver()
    d.open_fully()
    d.fill("T1", "0.500", "104.00")
    d.mark("100.20")  # below the breakeven level 100.21 while S2 is not acknowledged yet
    actions = d.mark("100.10", after_ms=5_000)
    assert of_type(actions, MarketClose)


# ---------------------------------------------------------------------------------------------- reversal


def test_reversal_tightens_halfway_with_a_replacement_stop_first() -> None:
    d = Driver()
    d.open_fully()
    actions = d.reversal(80, "102.00", bar_ms=3_600_000)
    (stop,) = of_type(actions, PlaceStop)
    assert stop.trigger == D("100.00")
    assert stop.quantity == D("1.000")
    assert d.p.stop_price == D("100.00")
    assert d.reversal(80, "103.00", bar_ms=3_600_000) == []  # same bar again
    d.accept("S2")
    assert d.leg("S1").state is OrderState.CANCELING
    # a later reversal with the mark below the stop level changes nothing: stops never loosen
    d.reversal(90, "99.00", bar_ms=7_200_000)
    assert d.p.stop_price == D("100.00")


def test_reversal_below_the_score_or_same_direction_does_nothing() -> None:
    d = Driver()
    d.open_fully()
    assert d.reversal(60, "102.00", bar_ms=1) == []
    assert d.reversal(95, "102.00", bar_ms=2, direction=LONG) == []
    assert d.p.stop_price == D("98.00")


def test_reversal_close_mode_closes_at_market() -> None:
    d = Driver(on_reversal="close")
    d.open_fully()
    actions = d.reversal(85, "101.00", bar_ms=1)
    assert of_type(actions, MarketClose)[0].reason is ExitReason.REVERSAL
    d.fill("X1", "1.000", "101.00")
    assert d.p.exit_reason is ExitReason.REVERSAL


def test_reversal_ignore_mode() -> None:
    d = Driver(on_reversal="ignore")
    d.open_fully()
    assert d.reversal(99, "101.00", bar_ms=1) == []


# ---------------------------------------------------------------------------------------------- closing


def test_manual_close_retries_with_new_ids_then_asks_for_a_human() -> None:
    d = Driver()
    d.open_fully()
    assert of_type(d.close("emergency"), MarketClose)[0].client_id == d.cid("X1")
    assert d.close("emergency") == []
    actions = d.reject("X1", -1008, "throttled")
    assert of_type(actions, RequestReconcile)
    assert of_type(actions, MarketClose)[0].client_id == d.cid("X2")
    d.reject("X2", -1008, "throttled")
    actions = d.reject("X3", -1008, "throttled")
    assert not of_type(actions, MarketClose)
    refused = d.p
    assert refused.needs_attention
    assert alert_text(alert_of(only_notes(actions)[0]), "en")[0] == "Cannot close the position: act now"
    assert d.reject("X3", -1008, "throttled") == []
    # the operator asks again: a new round of attempts, and a new alert if it fails too; a replay is no request
    request = CloseRequested("operator", d.tick())
    assert of_type(d.send(request), MarketClose)[0].client_id == d.cid("X4")
    assert d.send(request) == []
    assert not d.p.needs_attention
    d.reject("X4", -1008, "throttled")
    d.reject("X5", -1008, "throttled")
    assert len(only_notes(d.reject("X6", -1008, "throttled"))) == 1
    d.close("operator")
    d.fill("X7", "1.000", "99.00")
    assert d.phase() is Phase.CLOSED


def test_a_close_that_reduced_nothing_waits_for_the_exchange_instead_of_retrying() -> None:
    """-2022: the exchange holds nothing to reduce. Typically the stop fired and its fill was not seen (a stalled
    user stream): reconciliation replays it and the position closes on the stop, with no alert."""
    d = Driver()
    d.open_fully()
    d.mark("97.99")
    d.mark("97.50", after_ms=5_000)  # supervision closes at market (X1)
    actions = d.reject("X1", -2022, "ReduceOnly Order is rejected.")
    (request,) = of_type(actions, RequestReconcile)
    assert "reduced nothing" in request.reason
    assert not of_type(actions, MarketClose)  # no retry before the exchange was asked
    assert not only_notes(actions)
    assert d.p.close_paused
    assert d.phase() is Phase.CLOSING
    actions = d.fill("S1", "1.000", "97.98", done=True)  # the replayed stop fill
    assert d.phase() is Phase.CLOSED
    assert d.p.exit_reason is ExitReason.STOP
    assert [n.key for n in d.notes()] == [f"{KEY}:entry", f"{KEY}:result"]  # no alert at all


def test_a_paused_close_goes_ahead_when_the_exchange_still_holds_the_position() -> None:
    d = Driver()
    d.open_fully()
    d.close("emergency")
    d.reject("X1", -2022, "ReduceOnly Order is rejected.")
    assert d.send(PositionHeld(d.tick(), D("1.000"))) == [
        MarketClose(d.cid("X2"), RULES.symbol, d.direction.exit_side, D("1.000"), ExitReason.MANUAL)
    ]
    assert not d.p.close_paused
    assert d.send(PositionHeld(d.tick(), D("1.000"))) == []  # nothing paused: nothing to do
    d.reject("X2", -2022, "ReduceOnly Order is rejected.")
    d.send(PositionHeld(d.tick(), D("1.000")))
    actions = d.reject("X3", -2022, "ReduceOnly Order is rejected.")
    assert not only_notes(actions)  # paused, not given up: the exchange is asked once more
    actions = d.send(PositionHeld(d.tick(), D("1.000")))
    assert not of_type(actions, MarketClose)
    assert d.p.needs_attention  # three closes refused while the exchange holds it: a human must look
    assert alert_text(alert_of(only_notes(actions)[0]), "en")[0] == "Cannot close the position: act now"


def test_the_levels_a_mark_reaches_are_the_live_stops_and_targets_it_fires() -> None:
    d = Driver()
    d.open_fully()
    triggers = exit_triggers(d.p)
    assert [(t.leg, t.price, t.stop) for t in triggers] == [
        ("S1", D("98.00"), True),
        ("T1", D("104.00"), False),
        ("T2", D("108.00"), False),
    ]
    assert triggers_reached(triggers, d.direction, D("100")) == ()
    assert [t.leg for t in triggers_reached(triggers, d.direction, D("104.00"))] == ["T1"]
    assert [t.leg for t in triggers_reached(triggers, d.direction, D("109"))] == ["T1", "T2"]
    assert [t.leg for t in triggers_reached(triggers, d.direction, D("98.00"))] == ["S1"]
    reached = triggers_reached(triggers, d.direction, D("104.50"))
    assert awaiting_fills(d.p, reached) == reached  # no fill yet
    d.fill("T1", "0.500", "104.00")
    assert awaiting_fills(d.p, reached) == ()  # the fill came
    assert [t.leg for t in exit_triggers(d.p)] == ["S1", "T2", "S2"]  # the breakeven stop is requested
    assert awaiting_fills(None, reached) == ()
    short = Driver(SHORT)
    short.open_fully()
    reached = triggers_reached(exit_triggers(short.p), SHORT, D("95.00"))
    assert [t.leg for t in reached] == ["T1"]
    assert [t.leg for t in triggers_reached(exit_triggers(short.p), SHORT, D("102.00"))] == ["S1"]


def test_market_close_expiring_partly_filled_closes_the_rest() -> None:
    d = Driver()
    d.open_fully()
    d.close()
    d.fill("X1", "0.400", "99.00", done=False)
    actions = d.cancel("X1", expired=True)
    (close,) = of_type(actions, MarketClose)
    assert (close.client_id, close.quantity) == (d.cid("X2"), D("0.600"))
    d.fill("X2", "0.600", "98.90")
    assert d.phase() is Phase.CLOSED
    assert d.p.exit_reason is ExitReason.MANUAL


def test_short_position_mirrors_levels_and_breakeven() -> None:
    d = Driver(direction=SHORT)
    d.accept("E")
    actions = d.fill("E", "1.000", "100.00", done=True)
    assert of_type(actions, PlaceStop)[0].trigger == D("102.00")
    assert of_type(actions, PlaceStop)[0].side.value == "BUY"
    assert [t.trigger for t in of_type(actions, PlaceTakeProfit)] == [D("96.00"), D("92.00")]
    for leg in ("S1", "T1", "T2"):
        d.accept(leg)
    actions = d.fill("T1", "0.500", "96.00")
    # (100 * 0.5 - 0.074) / (0.5 * 1.0005) = 99.8021 -> 99.80 (rounded down: still covers the costs)
    assert of_type(actions, PlaceStop)[0].trigger == D("99.80")
    d.fill("T2", "0.500", "92.00")
    assert d.p.realized_pnl == D("6.000")


# ---------------------------------------------------------------------------------------------- exchange surprises


def test_liquidation_fill_closes_with_a_critical_alert() -> None:
    d = Driver()
    d.open_fully()
    fill = Fill(
        "autoclose-123", 99, d.direction.exit_side, D("1.000"), D("80.00"), D("0.5"), d.tick(), liquidation=True
    )
    actions = d.send(fill)
    assert d.phase() is Phase.CLOSED
    assert d.p.exit_reason is ExitReason.LIQUIDATION
    (note,) = only_notes(actions)  # one message: the result says LIQUIDATED
    assert note.key == f"{KEY}:result"
    assert render(note.note, "en").startswith("🚨")
    assert of_type(actions, RecordFill)[0].leg == "LIQ"
    assert len(of_type(actions, CancelOrder)) == 3


def test_partial_liquidation_alerts_and_keeps_managing_the_rest() -> None:
    d = Driver()
    d.open_fully()
    fill = Fill("adl_autoclose", 98, d.direction.exit_side, D("0.400"), D("90.00"), D("0"), d.tick(), liquidation=True)
    (record, alert) = d.send(fill)
    assert isinstance(record, RecordFill)
    assert isinstance(alert, Notify)
    assert alert_text(alert_of(alert), "en")[0] == "Position partly liquidated"
    assert d.phase() is Phase.CLOSING
    d.fill("S1", "0.600", "97.00", done=True)
    assert d.p.exit_reason is ExitReason.LIQUIDATION


def test_manual_reduction_on_the_exchange_is_tracked() -> None:
    d = Driver()
    d.open_fully()
    fill = Fill("web_abc", 77, d.direction.exit_side, D("0.300"), D("101.00"), D("0.01"), d.tick())
    actions = d.send(fill)
    assert d.p.open_qty == D("0.700")
    assert d.phase() is Phase.OPEN  # the stop (closePosition) and the targets still manage the rest
    assert of_type(actions, RecordFill)[0].leg == "EXT"
    assert d.send(fill) == []


def test_vanished_position_closes_with_an_estimate() -> None:
    d = Driver()
    d.open_fully()
    actions = d.vanish("95.00")
    assert d.phase() is Phase.CLOSED
    assert d.p.exit_reason is ExitReason.EXTERNAL
    (result,) = of_type(actions, RecordResult)
    assert result.result.estimated
    assert result.result.exit_price == D("95.00")
    assert result.result.detail is not None
    assert "vanished on the exchange" in say_text("en", result.result.detail)
    # The result is an estimate and the cause unknown: a person is alerted to look at the account, once.
    (alert,) = [n.note for n in only_notes(actions) if isinstance(n.note, AlertNote)]
    assert alert.severity == "critical"
    assert "vanished from the exchange" in alert_text(alert, "en")[0]
    assert len(only_notes(actions)) == 2
    assert d.p.exit_qty == d.p.entry_qty
    assert d.vanish("95.00") == []


def test_events_that_cannot_happen_are_recorded_and_ignored() -> None:
    d = Driver()
    before = d.p
    for actions in (
        d.accept("S7"),
        d.vanish(),
        d.send(Fill("ats_ffffffffffffffff_E", 5, d.direction.entry_side, D(1), D(100), D(0), d.tick())),
    ):
        assert kinds(actions)[-1] == "RecordAnomaly"
    assert d.p == before


def test_funding_may_arrive_before_the_entry_fill_but_not_after_a_failure() -> None:
    d = Driver()
    d.accept("E")
    assert d.funding("-0.1", "early") == []
    assert d.p.funding == D("-0.1")
    failed = Driver()
    failed.reject("E", -2019)
    assert kinds(failed.funding("-0.1", "late")) == ["RecordAnomaly"]


def test_fill_after_close_asks_for_reconciliation() -> None:
    d = Driver()
    d.open_fully()
    d.fill("S1", "1.000", "97.98", done=True)
    actions = d.fill("T1", "0.500", "104.00")
    assert kinds(actions) == ["RequestReconcile", "RecordAnomaly"]


def test_placement_that_lands_after_its_cancel_is_cancelled_again() -> None:
    d = Driver()
    d.open_fully()
    d.fill("T1", "0.500", "104.00")
    d.fill("T2", "0.500", "108.00")
    d.cancel("S2")  # the cancel overtook the placement ("unknown order")
    actions = d.accept("S2")  # ... which then landed
    assert of_type(actions, CancelOrder) == [CancelOrder(d.cid("S2"), "TESTUSDT", True)]
    assert d.accept("S2") == []


def test_non_finite_numbers_are_anomalies_not_crashes() -> None:
    d = Driver()
    d.open_fully()
    assert kinds(d.mark("NaN")) == ["RecordAnomaly"]
    assert kinds(d.fill("S1", "NaN", "97")) == ["RecordAnomaly"]
    assert kinds(d.funding("Infinity", "fx")) == ["RecordAnomaly"]
    assert kinds(d.vanish("NaN")) == ["RecordAnomaly"]


# ---------------------------------------------------------------------------------------------- funding, adoption, json


def test_funding_is_counted_once() -> None:
    d = Driver()
    d.open_fully()
    d.funding("-0.25", "tran-1")
    assert d.funding("-0.25", "tran-1") == []
    d.fill("S1", "1.000", "98.00", done=True)
    result = of_type(d.actions, RecordResult)[0].result
    assert result.funding == D("-0.25")
    assert result.net_pnl == result.gross_pnl - result.fees - D("0.25")


def test_adopted_position_is_protected_at_once() -> None:
    position, actions = adopt_position(
        key=KEY,
        symbol="TESTUSDT",
        direction=LONG,
        quantity=D("2.000"),
        entry_price=D("50.00"),
        leverage=3,
        policy=policy(),
        time_ms=5,
    )
    assert kinds(actions) == ["PlaceStop", "PlaceTakeProfit", "PlaceTakeProfit", "Notify"]
    assert of_type(actions, PlaceStop)[0].trigger == D("49.00")
    assert position.phase is Phase.PROTECTING
    with pytest.raises(ValueError, match="positive"):
        adopt_position(
            key=KEY,
            symbol="TESTUSDT",
            direction=LONG,
            quantity=D(0),
            entry_price=D("50"),
            leverage=3,
            policy=policy(),
            time_ms=5,
        )


def test_too_small_to_split_uses_one_target() -> None:
    d = Driver(qty="0.001")
    d.accept("E")
    actions = d.fill("E", "0.001", "100.00", done=True)
    (target,) = of_type(actions, PlaceTakeProfit)
    assert target.quantity == D("0.001")
    assert d.p.levels is not None
    assert d.p.levels.single_target
    d.accept("S1")
    d.accept("T1")
    d.fill("T1", "0.001", "104.00")
    assert d.p.exit_reason is ExitReason.TP1


def test_position_survives_a_json_round_trip_at_every_step() -> None:
    d = Driver()
    states: list[Position] = [d.p]
    d.accept("E")
    states.append(d.p)
    d.fill("E", "1.000", "100.00", done=True)
    states.append(d.p)
    d.accept("S1")
    d.fill("T1", "0.500", "104.00")
    d.funding("0.1", "f1")
    states.append(d.p)
    d.fill("T2", "0.500", "108.00")
    states.append(d.p)
    for state in states:
        assert from_jsonable(Position, json.loads(json.dumps(to_jsonable(state)))) == state


def test_a_stored_reason_round_trips_and_an_older_row_still_loads() -> None:
    """Why a position closes (or failed) is stored as a catalogue text; rows written before it was one held English
    strings under close_note and error: they still load, without the reason."""
    d = Driver()
    d.open_fully()
    d.send(CloseRequested("close-all: test", d.tick()))
    stored = json.loads(json.dumps(to_jsonable(d.p)))
    assert from_jsonable(Position, stored) == d.p
    assert d.p.close_note == "close-all: test"
    old = {k: v for k, v in stored.items() if k != "close_why"} | {"close_note": "old text", "error": "old text"}
    assert from_jsonable(Position, old) == replace(d.p, close_why=None)


def test_events_round_trip_for_the_event_log() -> None:
    d = Driver()
    events: list[Event] = [
        d.make_fill("E", "1.000", "100.00", done=True),
        d.make_fill("S1", "0.5", "98", done=False),
        PositionHeld(5, D("-0.250")),
    ]
    for event in events:
        assert event_from_jsonable(json.loads(json.dumps(event_to_jsonable(event)))) == event


def test_notification_payloads_round_trip_for_the_outbox() -> None:
    for note in NOTES:
        assert from_jsonable(type(note), json.loads(json.dumps(to_jsonable(note)))) == note


def test_anomaly_records_name_the_event() -> None:
    d = Driver()
    (record,) = d.accept("S9")
    assert isinstance(record, RecordAnomaly)
    assert record.event == "OrderAccepted"
    assert record.key == KEY


# ---------------------------------------------------------------------------------------------- open risk


def test_open_risk_follows_the_exchange_stop_through_the_lifecycle() -> None:
    """What the daily loss limit counts for one position: 1.000 long, stop 98, TP1 0.500 at 104, fee 0.05 %."""
    d = Driver()
    # Pending: the planned risk at the price it was sized at (2 + entry and exit fees 0.05 + 0.05).
    assert open_risk(d.p, reference=D("100")) == D("2.1")
    assert open_risk(d.p, mark=D("100")) == D("2.1")
    with pytest.raises(ValueError, match="reference price or a mark"):
        open_risk(d.p)
    d.accept("E")
    d.fill("E", "0.400", "100.00", done=False, cum="0.400")
    # Part filled, the rest may still fill: all of it counts at the wanted stop (not acknowledged yet).
    assert d.p.exchange_stop == D("98.00")
    assert open_risk(d.p) == D("2") + D("98") * FEE
    d.fill("E", "0.600", "100.00", done=True, cum="1.000")
    for leg in ("S1", "T1", "T2"):
        d.accept(leg)
    at_stop = D("2") + D("98") * FEE  # the entry fee is realised already
    assert open_risk(d.p, mark=D("99")) == at_stop
    assert open_risk(d.p, mark=D("97")) == D("3") + D("97") * FEE  # the mark is past the stop
    d.fill("T1", "0.500", "104.00")
    # TP1 done, the breakeven stop S2 requested: until it is acknowledged S1 at 98 still guards the rest.
    assert d.p.stop_price == D("100.21")
    assert d.p.exchange_stop == D("98.00")
    assert open_risk(d.p) == (D("2") + D("98") * FEE) / 2
    d.accept("S2")
    assert d.p.exchange_stop == D("100.21")
    assert open_risk(d.p) == 0
    d.fill("S2", "0.500", "100.21", done=True)
    assert d.p.is_terminal
    assert open_risk(d.p, mark=D("50")) == 0


def test_open_risk_of_a_short_and_of_a_failed_entry() -> None:
    d = Driver(SHORT)
    d.open_fully()
    assert d.p.exchange_stop == D("102.00")
    assert open_risk(d.p) == D("2") + D("102") * FEE
    failed = Driver()
    failed.reject("E", -2019, "Margin is insufficient.")
    assert failed.p.is_terminal
    assert open_risk(failed.p, reference=D("100")) == 0


# ---------------------------------------------------------------------------------------------- totality


def _in_phase(phase: Phase) -> Driver:
    d = Driver()
    if phase is Phase.FAILED:
        d.reject("E", -2019)
    elif phase is not Phase.PENDING_ENTRY:
        d.accept("E")
        d.fill("E", "1.000", "100.00", done=True)
        if phase is not Phase.PROTECTING:
            for leg in ("S1", "T1", "T2"):
                d.accept(leg)
        if phase in (Phase.TP1_DONE, Phase.CLOSING, Phase.CLOSED):
            d.fill("T1", "0.500", "104.00")
        if phase is Phase.CLOSING:
            d.close()
        if phase is Phase.CLOSED:
            d.fill("T2", "0.500", "108.00")
    assert d.phase() is phase
    return d


EVENT_MAKERS: dict[str, Callable[[Driver], Event]] = {
    "entry fill": lambda d: d.make_fill("E", "0.100", "100.00", done=False),
    "stop fill": lambda d: d.make_fill("S1", "0.100", "98.00", done=False),
    "target fill": lambda d: d.make_fill("T2", "0.100", "108.00", done=False),
    "close fill": lambda d: d.make_fill("X1", "0.100", "99.00", done=False),
    "liquidation": lambda d: Fill("autoclose-9", 900, SHORT.entry_side, D("0.1"), D("90"), D(0), 5, liquidation=True),
    "accepted": lambda d: OrderAccepted(d.cid("S2"), 5),
    "rejected": lambda d: OrderRejected(d.cid("S1"), 5, -2021, "Order would immediately trigger."),
    "canceled": lambda d: OrderCanceled(d.cid("T1"), 5),
    "mark": lambda d: MarkPrice(D("97.00"), 10**9),
    "funding": lambda d: FundingPaid(D("-0.1"), 5, "m1"),
    "vanished": lambda d: PositionVanished(5, D("99")),
    "held": lambda d: PositionHeld(5, D("1.000")),
    "close reduced nothing": lambda d: OrderRejected(d.cid("X1"), 5, -2022, "ReduceOnly Order is rejected."),
    "reversal": lambda d: ReversalSignal(SHORT, 95.0, D("103"), 10**9, 5),
    "close": lambda d: CloseRequested("manual", 10**9),
}


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("event_name", list(EVENT_MAKERS))
def test_every_event_in_every_phase_has_a_defined_result(phase: Phase, event_name: str) -> None:
    d = _in_phase(phase)
    before = d.p
    d.send(EVENT_MAKERS[event_name](d))
    after = d.p
    if before.stop_price is not None:
        assert after.stop_price is not None
        assert after.stop_price >= before.stop_price  # long: only ever up
    if after.phase is Phase.CLOSED:
        assert after.entry_qty == after.exit_qty
    if not after.is_terminal and after.open_qty > 0 and not after.needs_attention and not after.close_paused:
        assert any(o.role is Role.STOP and o.state.working for o in after.orders) or any(
            o.role is Role.CLOSE and o.state.live for o in after.orders
        )
    if before.phase is Phase.CLOSED:
        assert after.phase is Phase.CLOSED
