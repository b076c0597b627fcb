"""The executor's pure decisions: what follows a placement whose answer was lost and that a look-up did not find."""

from __future__ import annotations

from decimal import Decimal

from ats.domain import Side
from ats.execution import ExecutionSettings, Owner, Resend, after_not_found, owner
from ats.lifecycle import PlaceStop, PlaceTakeProfit

SETTINGS = ExecutionSettings(protective_resends=3, protective_resend_delay_s=0.25)
STOP = PlaceStop("ats_k_S1", "BTCUSDT", Side.SELL, Decimal(88000), None)
TARGET = PlaceTakeProfit("ats_k_T1", "BTCUSDT", Side.SELL, "T1", Decimal(95000), Decimal("0.010"))


def test_a_lost_stop_not_found_is_sent_again_at_once_then_with_a_short_backoff() -> None:
    assert [after_not_found(STOP, n, SETTINGS) for n in range(3)] == [Resend(0.0), Resend(0.25), Resend(0.5)]


def test_a_stop_that_still_cannot_be_placed_is_given_up_so_the_position_is_closed() -> None:
    assert after_not_found(STOP, 3, SETTINGS) == "give_up"


def test_a_target_is_resent_the_same_way_but_left_for_the_next_redrive_in_the_end() -> None:
    assert after_not_found(TARGET, 0, SETTINGS) == Resend(0.0)
    assert after_not_found(TARGET, 3, SETTINGS) == "defer"


def test_without_resends_a_stop_is_given_up_after_the_first_look_up() -> None:
    assert after_not_found(STOP, 0, ExecutionSettings(protective_resends=0)) == "give_up"


# ---------------------------------------------------------------------------------------------- whose execution


OURS = "ats_0123456789abcdef_S1"
HOLDERS = {"BTCUSDT": "0123456789abcdef"}


def _never(order_id: int) -> str | None:
    raise AssertionError(f"order {order_id} looked up")


def _unknown(order_id: int) -> str | None:
    return None


def test_our_client_id_names_the_position_without_a_lookup() -> None:
    assert owner(OURS, 7, "ETHUSDT", recorded=_never, holders={}) == Owner("0123456789abcdef", OURS, ours=True)


def test_a_triggered_order_is_ours_by_the_order_id_we_recorded() -> None:
    found = owner("x9f3k", 7, "BTCUSDT", recorded={7: OURS}.get, holders=HOLDERS)
    assert found == Owner("0123456789abcdef", OURS, ours=True)


def test_someone_elses_order_changes_the_position_holding_its_symbol() -> None:
    manual = owner("web_1", 8, "BTCUSDT", recorded=_unknown, holders=HOLDERS)
    assert manual == Owner("0123456789abcdef", "web_1", ours=False)
    liquidation = owner("autoclose-1700000000", 9, "BTCUSDT", recorded=_never, holders=HOLDERS)
    assert liquidation == Owner("0123456789abcdef", "autoclose-1700000000", ours=False)
    assert owner("web_1", 8, "ETHUSDT", recorded=_unknown, holders=HOLDERS) is None  # no position there
