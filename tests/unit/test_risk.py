"""Risk: every refusal reason, the sizing caps and their edges, every level adjustment and rounding side."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ats.config import LevelSettings, RiskLimits
from ats.domain import Band, Direction, Signal, SymbolRules
from ats.risk import (
    AccountSnapshot,
    Approved,
    Exposure,
    LevelPlan,
    RefusalReason,
    Refused,
    ReversalResponse,
    SizingCap,
    breakeven_stop_price,
    check_entry,
    choose_leverage,
    level_prices,
    levels_for,
    liquidation_safe_leverage,
    loss_at_stop,
    plan_levels,
    planned_risk,
    reversal_response,
    reversal_stop,
    split_take_profits,
    stop_crossed,
    stop_price_for,
    tighten_stop,
)

LONG, SHORT = Direction.LONG, Direction.SHORT
FEE = D("0.0005")


def make_rules(
    symbol: str = "TESTUSDT",
    *,
    tick: str = "0.01",
    step: str = "0.001",
    min_qty: str = "0.001",
    max_qty: str = "1000",
    min_notional: str = "5",
    status: str = "TRADING",
) -> SymbolRules:
    return SymbolRules(
        symbol=symbol,
        base_asset="TEST",
        quote_asset="USDT",
        status=status,
        contract_type="PERPETUAL",
        tick_size=D(tick),
        min_price=D(tick),
        max_price=D("1000000"),
        step_size=D(step),
        min_qty=D(min_qty),
        max_qty=D(max_qty),
        market_step_size=D(step),
        market_min_qty=D(min_qty),
        market_max_qty=D(max_qty),
        min_notional=D(min_notional),
    )


RULES = make_rules()
SETTINGS = LevelSettings()


def make_signal(
    direction: Direction = LONG,
    *,
    strength: float = 75.0,
    price: str = "100",
    trend: float = 0.0,
    liquidity: float = 50.0,
    atr_pct: float = 0.01,
    symbol: str = "TESTUSDT",
) -> Signal:
    return Signal(
        symbol=symbol,
        direction=direction,
        strength=strength,
        band=Band.of(strength),
        bar_open_time_ms=1_767_225_600_000,
        price=D(price),
        atr_pct=atr_pct,
        trend=trend,
        liquidity=liquidity,
    )


def snapshot(
    balance: str = "10000",
    *,
    available: str | None = None,
    realized: str = "0",
    unrealized: str = "0",
    exposures: tuple[Exposure, ...] = (),
) -> AccountSnapshot:
    return AccountSnapshot(
        wallet_balance=D(balance),
        available_balance=D(available if available is not None else balance),
        realized_pnl_today=D(realized),
        unrealized_pnl=D(unrealized),
        exposures=exposures,
    )


def approve(
    signal: Signal, snap: AccountSnapshot, limits: RiskLimits | None = None, *, rules: SymbolRules = RULES
) -> Approved:
    decision = check_entry(signal, snap, limits or RiskLimits(), rules=rules, level_settings=SETTINGS)
    assert isinstance(decision, Approved), decision
    return decision


def refuse(
    signal: Signal, snap: AccountSnapshot, limits: RiskLimits | None = None, *, rules: SymbolRules = RULES
) -> Refused:
    decision = check_entry(signal, snap, limits or RiskLimits(), rules=rules, level_settings=SETTINGS)
    assert isinstance(decision, Refused), decision
    assert decision.message
    return decision


# ---------------------------------------------------------------------------------------------- levels


def test_base_levels_long_and_short() -> None:
    plan = plan_levels(LONG, make_signal(), SETTINGS)
    assert plan.adjustments == ()
    assert level_prices(plan, D("100.00"), RULES) == (D("98.00"), D("104.00"), D("108.00"))
    short = plan_levels(SHORT, make_signal(SHORT), SETTINGS)
    assert level_prices(short, D("100.00"), RULES) == (D("102.00"), D("96.00"), D("92.00"))


@pytest.mark.parametrize(
    ("signal", "stop_pct", "target_factor", "adjustments"),
    [
        (make_signal(strength=80), D("1.6"), D("1.3"), ("strong signal",)),
        (make_signal(strength=79.9), D("2"), D("1"), ()),
        (make_signal(trend=50), D("2"), D("1.2"), ("strong trend",)),
        (make_signal(trend=-80), D("2"), D("1"), ()),  # a strong trend against a long does not extend targets
        (make_signal(liquidity=70), D("1.8"), D("1"), ("good liquidity",)),
        (make_signal(atr_pct=0.031), D("3.0"), D("1"), ("high volatility",)),
        (make_signal(atr_pct=0.03), D("2"), D("1"), ()),  # at the threshold is not above it
        (
            make_signal(strength=90, trend=60, liquidity=80, atr_pct=0.05),
            D("2") * D("0.8") * D("0.9") * D("1.5"),
            D("1.3") * D("1.2"),
            ("strong signal", "strong trend", "good liquidity", "high volatility"),
        ),
    ],
)
def test_each_level_adjustment(signal: Signal, stop_pct: D, target_factor: D, adjustments: tuple[str, ...]) -> None:
    plan = plan_levels(LONG, signal, SETTINGS)
    assert plan.stop_pct == stop_pct
    assert plan.tp1_pct == D(4) * target_factor
    assert plan.tp2_pct == D(8) * target_factor
    assert plan.adjustments == adjustments


def test_strong_trend_counts_in_the_trades_direction_for_shorts() -> None:
    assert plan_levels(SHORT, make_signal(SHORT, trend=-55), SETTINGS).adjustments == ("strong trend",)
    assert plan_levels(SHORT, make_signal(SHORT, trend=55), SETTINGS).adjustments == ()


def test_rounding_sides() -> None:
    """Stops round away from the entry, targets toward it (entry 100.03 puts every raw level off the grid)."""
    long_plan = plan_levels(LONG, make_signal(), SETTINGS)
    stop, tp1, tp2 = level_prices(long_plan, D("100.03"), RULES)
    assert (stop, tp1, tp2) == (D("98.02"), D("104.03"), D("108.03"))  # raw 98.0294, 104.0312, 108.0324
    short_plan = plan_levels(SHORT, make_signal(SHORT), SETTINGS)
    stop, tp1, tp2 = level_prices(short_plan, D("100.03"), RULES)
    assert (stop, tp1, tp2) == (D("102.04"), D("96.03"), D("92.03"))  # raw 102.0306, 96.0288, 92.0276


def test_levels_keep_a_tick_away_on_a_coarse_grid() -> None:
    coarse = make_rules(tick="0.1")
    plan = plan_levels(LONG, make_signal(), SETTINGS)
    assert level_prices(plan, D("1.0"), coarse) == (D("0.9"), D("1.1"), D("1.2"))
    short = plan_levels(SHORT, make_signal(SHORT), SETTINGS)
    assert level_prices(short, D("1.0"), coarse) == (D("1.1"), D("0.9"), D("0.8"))


@given(
    entry=st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4),
    tick_exp=st.integers(min_value=-4, max_value=1),
    stop_pct=st.decimals(min_value=D("0.1"), max_value=D("20"), places=2),
    direction=st.sampled_from(Direction),
)
def test_stop_is_never_tighter_than_intended_and_at_most_one_tick_wider(
    entry: D, tick_exp: int, stop_pct: D, direction: Direction
) -> None:
    tick = D(1).scaleb(tick_exp)
    rules = replace(make_rules(), tick_size=tick, min_price=tick)
    plan = LevelPlan(direction, stop_pct, D(4), D(8), D("0.5"))
    stop, tp1, tp2 = level_prices(plan, entry, rules)
    intended = entry * stop_pct / 100
    distance = (entry - stop) * direction.sign
    assert stop % tick == 0
    assert tp1 % tick == 0
    assert tp2 % tick == 0
    if stop > rules.min_price:  # not clamped to the lowest valid price
        assert distance >= tick
        assert distance > intended - tick
        assert distance < max(intended, tick) + tick
    assert (tp1 - entry) * direction.sign >= tick or tp1 == rules.min_price
    assert (tp2 - tp1) * direction.sign >= tick or tp2 == rules.min_price


@pytest.mark.parametrize(
    ("qty", "min_qty", "expected"),
    [
        ("0.010", "0.001", ("0.005", "0.005")),
        ("0.007", "0.001", ("0.003", "0.004")),
        ("0.003", "0.001", ("0.001", "0.002")),
        ("0.001", "0.001", ("0.001", "0")),  # cannot split: TP1 takes all
        ("0.003", "0.002", ("0.003", "0")),  # TP1 half would be below the minimum
        ("0.005", "0.003", ("0.005", "0")),
    ],
)
def test_take_profit_split(qty: str, min_qty: str, expected: tuple[str, str]) -> None:
    rules = make_rules(min_qty=min_qty)
    assert split_take_profits(D(qty), D("0.5"), rules) == (D(expected[0]), D(expected[1]))


def test_levels_say_when_the_position_is_too_small_to_split() -> None:
    levels = levels_for(plan_levels(LONG, make_signal(strength=85), SETTINGS), D("100"), D("0.001"), RULES)
    assert levels.single_target
    assert levels.tp1_qty == D("0.001")
    assert levels.tp2_qty == 0
    assert levels.adjustments == ("strong signal",)
    split = levels_for(plan_levels(LONG, make_signal(), SETTINGS), D("100"), D("0.010"), RULES)
    assert not split.single_target
    assert split.quantity == D("0.010")


# ---------------------------------------------------------------------------------------------- stop rules


def test_breakeven_covers_fees_paid_and_the_closing_fee() -> None:
    long_stop = breakeven_stop_price(D("100"), LONG, D("1"), D("0.1"), FEE, RULES)
    assert long_stop == D("100.16")  # (100 + 0.1) / 0.9995 = 100.1500..., rounded up
    short_stop = breakeven_stop_price(D("100"), SHORT, D("1"), D("0.1"), FEE, RULES)
    assert short_stop == D("99.85")  # (100 - 0.1) / 1.0005 = 99.8500..., rounded down


@given(
    entry=st.decimals(min_value=D("0.01"), max_value=D("50000"), places=2),
    qty=st.decimals(min_value=D("0.001"), max_value=D("100"), places=3),
    fees=st.decimals(min_value=D("0"), max_value=D("50"), places=4),
    direction=st.sampled_from(Direction),
)
def test_breakeven_stop_nets_the_costs_and_is_at_most_one_tick_beyond(
    entry: D, qty: D, fees: D, direction: Direction
) -> None:
    price = breakeven_stop_price(entry, direction, qty, fees, FEE, RULES)

    def net(at: D) -> D:
        return direction.sign * (at - entry) * qty - at * qty * FEE

    assert price % RULES.tick_size == 0
    if price > RULES.min_price:
        assert net(price) >= fees
        assert net(price - direction.sign * RULES.tick_size) < fees


def test_breakeven_without_quantity_is_the_entry() -> None:
    assert breakeven_stop_price(D("100.005"), LONG, D(0), D(1), FEE, RULES) == D("100.01")
    assert breakeven_stop_price(D("100.005"), SHORT, D(0), D(1), FEE, RULES) == D("100.00")


@given(current=st.integers(1, 10_000), proposed=st.integers(1, 10_000), direction=st.sampled_from(Direction))
def test_tighten_stop_never_loosens(current: int, proposed: int, direction: Direction) -> None:
    result = tighten_stop(D(current), D(proposed), direction)
    assert result in (D(current), D(proposed))
    assert (result - D(current)) * direction.sign >= 0


def test_stop_crossed_matches_the_exchange_trigger_rule() -> None:
    assert stop_crossed(D("98"), D("98"), LONG)
    assert stop_crossed(D("98"), D("97.99"), LONG)
    assert not stop_crossed(D("98"), D("98.01"), LONG)
    assert stop_crossed(D("102"), D("102"), SHORT)
    assert not stop_crossed(D("102"), D("101.99"), SHORT)


@pytest.mark.parametrize(
    ("mode", "signal_direction", "strength", "expected"),
    [
        ("tighten", SHORT, 75.0, ReversalResponse.TIGHTEN),
        ("close", SHORT, 75.0, ReversalResponse.CLOSE),
        ("ignore", SHORT, 95.0, ReversalResponse.NONE),
        ("tighten", SHORT, 69.9, ReversalResponse.NONE),  # below reversal_score
        ("close", LONG, 95.0, ReversalResponse.NONE),  # same direction is no reversal
    ],
)
def test_reversal_response(mode: str, signal_direction: Direction, strength: float, expected: ReversalResponse) -> None:
    got = reversal_response(LONG, signal_direction, strength, on_reversal=mode, reversal_score=70)  # type: ignore[arg-type]
    assert got is expected


def test_reversal_stop_moves_halfway_to_the_mark_and_stays_short_of_it() -> None:
    assert reversal_stop(D("98.00"), D("102.00"), LONG, RULES) == D("100.00")
    assert reversal_stop(D("98.00"), D("102.01"), LONG, RULES) == D("100.00")  # 100.005 rounds away from the mark
    assert reversal_stop(D("102.00"), D("98.00"), SHORT, RULES) == D("100.00")
    assert reversal_stop(D("102.00"), D("97.99"), SHORT, RULES) == D("100.00")  # 99.995 rounds away from the mark
    assert reversal_stop(D("98.00"), D("98.01"), LONG, RULES) == D("98.00")  # no room: unchanged
    assert reversal_stop(D("98.00"), D("97.00"), LONG, RULES) == D("98.00")  # mark past the stop: unchanged


@given(
    stop=st.integers(1_000, 20_000),
    mark=st.integers(1_000, 20_000),
    direction=st.sampled_from(Direction),
)
def test_reversal_stop_never_loosens_nor_crosses_the_mark(stop: int, mark: int, direction: Direction) -> None:
    current, at = D(stop) / 100, D(mark) / 100
    new = reversal_stop(current, at, direction, RULES)
    assert tighten_stop(current, new, direction) == new
    if new != current:
        assert not stop_crossed(new, at, direction)


# ---------------------------------------------------------------------------------------------- entry check


def test_approved_entry_is_sized_by_risk_with_levels_and_leverage() -> None:
    order = approve(make_signal(strength=75), snapshot("10000")).order
    # 1 % of 10000 at a 2 % stop plus 0.1 % fees -> 100 / 0.021 = 4761.9 USDT -> 47.619 qty
    assert order.cap is SizingCap.RISK
    assert order.quantity == D("47.619")
    assert order.notional == D("4761.900")
    assert order.risk_usdt <= D("100")
    assert order.leverage == 5  # strength 75: base 5 + floor(5/30 * 5)
    assert order.levels.stop == D("98.00")
    assert order.levels.tp1_qty + order.levels.tp2_qty == order.quantity
    assert order.margin == order.notional / 5


def test_huge_balance_is_capped_by_max_notional() -> None:
    order = approve(make_signal(), snapshot("100000000")).order
    assert order.cap is SizingCap.MAX_NOTIONAL
    assert order.notional <= RiskLimits().max_position_size_usdt
    assert order.quantity == D("100.000")


def test_symbol_max_quantity_caps_the_size() -> None:
    order = approve(make_signal(), snapshot("100000000"), rules=make_rules(max_qty="20")).order
    assert order.cap is SizingCap.MAX_QTY
    assert order.quantity == D("20")


def test_available_margin_caps_the_size() -> None:
    order = approve(make_signal(), snapshot("10000", available="100")).order
    assert order.cap is SizingCap.MARGIN
    assert order.margin + order.notional * FEE <= D("100") * D("0.95")


def test_daily_loss_headroom_caps_the_size() -> None:
    limits = RiskLimits(max_daily_loss_usdt=D("1000"))
    order = approve(make_signal(), snapshot("100000", realized="-970"), limits).order
    assert order.cap is SizingCap.DAILY_LOSS
    assert D("29.9") < order.risk_usdt <= D("30")


@given(
    balance=st.decimals(min_value=D("1"), max_value=D("1000000"), places=2),
    price=st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2),
    strength=st.floats(min_value=60, max_value=100),
)
def test_sizing_never_rounds_up_nor_exceeds_any_cap(balance: D, price: D, strength: float) -> None:
    limits = RiskLimits()
    decision = check_entry(
        make_signal(strength=strength, price=str(price)),
        snapshot(str(balance)),
        limits,
        rules=RULES,
        level_settings=SETTINGS,
    )
    if isinstance(decision, Refused):
        assert decision.reason in (
            RefusalReason.BELOW_MIN_ORDER,
            RefusalReason.INSUFFICIENT_MARGIN,
            RefusalReason.MAX_NOTIONAL,
        )
        return
    order = decision.order
    assert order.quantity % RULES.step_size == 0
    assert order.notional <= limits.max_position_size_usdt
    assert order.risk_usdt <= balance * limits.risk_per_trade_pct / 100
    assert order.margin + order.notional * FEE <= balance * D("0.95")
    assert order.notional >= max(RULES.min_notional, limits.min_order_size_usdt)
    safe = liquidation_safe_leverage(abs(price - order.levels.stop) / price)  # liquidation stays beyond the stop
    assert min(limits.leverage, safe) <= order.leverage <= min(limits.max_leverage, safe)


def test_tiny_balance_is_refused_below_the_minimum_order() -> None:
    refused = refuse(make_signal(), snapshot("20"))  # risks 0.20 USDT -> about 9.5 USDT, below the 10 USDT minimum
    assert refused.reason is RefusalReason.BELOW_MIN_ORDER
    assert "risk" in refused.message


def test_margin_too_small_for_the_minimum_order() -> None:
    assert refuse(make_signal(), snapshot("10000", available="1")).reason is RefusalReason.INSUFFICIENT_MARGIN


def test_leverage_choice() -> None:
    limits = RiskLimits(leverage=5, max_leverage=10)
    stop = D("0.02")
    assert choose_leverage(60, limits, stop) == 5
    assert choose_leverage(70, limits, stop) == 5
    assert choose_leverage(85, limits, stop) == 7
    assert choose_leverage(100, limits, stop) == 10
    levels = [choose_leverage(s, limits, stop) for s in range(60, 101)]
    assert levels == sorted(levels)
    # a 10 % stop: liquidation must stay two stops away -> 1 / (0.2 + 0.01) = 4
    assert liquidation_safe_leverage(D("0.1")) == 4
    assert choose_leverage(100, limits, D("0.1")) == 4


@pytest.mark.parametrize(
    ("signal", "snap", "limits", "rules", "reason"),
    [
        (make_signal(symbol="OTHERUSDT"), snapshot(), None, RULES, RefusalReason.INVALID_SIGNAL),
        (make_signal(price="0"), snapshot(), None, RULES, RefusalReason.INVALID_SIGNAL),
        (make_signal(price="NaN"), snapshot(), None, RULES, RefusalReason.INVALID_SIGNAL),
        (make_signal(strength=float("nan")), snapshot(), None, RULES, RefusalReason.INVALID_SIGNAL),
        (make_signal(), snapshot(), None, make_rules(status="SETTLING"), RefusalReason.SYMBOL_NOT_TRADABLE),
        (
            make_signal(),
            snapshot(exposures=(Exposure("TESTUSDT", D("500")),)),
            None,
            RULES,
            RefusalReason.SYMBOL_BUSY,
        ),
        (
            make_signal(),
            snapshot(exposures=(Exposure("TESTUSDT", D("500"), pending=True),)),
            None,
            RULES,
            RefusalReason.SYMBOL_BUSY,
        ),
        (
            make_signal(),
            snapshot(exposures=(Exposure("AUSDT", D("1")), Exposure("BUSDT", D("1"), pending=True))),
            RiskLimits(max_concurrent_positions=2),
            RULES,
            RefusalReason.MAX_POSITIONS,
        ),
        (make_signal(), snapshot(realized="-2000"), None, RULES, RefusalReason.DAILY_LOSS_LIMIT),
        (make_signal(), snapshot(realized="-1500", unrealized="-500"), None, RULES, RefusalReason.DAILY_LOSS_LIMIT),
        (make_signal(), snapshot("0"), None, RULES, RefusalReason.INSUFFICIENT_BALANCE),
        (
            make_signal(),
            snapshot("100", unrealized="-150", realized="0"),
            None,
            RULES,
            RefusalReason.INSUFFICIENT_BALANCE,
        ),
        (make_signal(), snapshot("10000", available="0"), None, RULES, RefusalReason.INSUFFICIENT_MARGIN),
        (
            make_signal(),
            snapshot("1000", exposures=(Exposure("AUSDT", D("10000")),)),
            RiskLimits(max_leverage=10),
            RULES,
            RefusalReason.MAX_LEVERAGE,
        ),
        (
            make_signal(price="60000"),
            snapshot("1000000"),
            RiskLimits(max_position_size_usdt=D("50"), min_order_size_usdt=D("10")),
            make_rules(min_qty="0.001"),
            RefusalReason.MAX_NOTIONAL,
        ),
    ],
)
def test_every_refusal_reason(
    signal: Signal, snap: AccountSnapshot, limits: RiskLimits | None, rules: SymbolRules, reason: RefusalReason
) -> None:
    assert refuse(signal, snap, limits, rules=rules).reason is reason


# ---------------------------------------------------------------------------------------------- the daily loss cap


def test_loss_at_stop_counts_the_exit_fee_and_a_mark_beyond_the_stop() -> None:
    # long 2 @ 100, stop 98: 2 x 2 + 98 x 2 x 0.0005 = 4.098; short 2 @ 100, stop 102: 4 + 0.102
    assert loss_at_stop(LONG, D("100"), D("2"), D("98"), FEE) == D("4.098")
    assert loss_at_stop(SHORT, D("100"), D("2"), D("102"), FEE) == D("4.102")
    # the mark on the safe side of the stop changes nothing; beyond it, the stop fills there or worse
    assert loss_at_stop(LONG, D("100"), D("2"), D("98"), FEE, mark=D("99")) == D("4.098")
    assert loss_at_stop(LONG, D("100"), D("2"), D("98"), FEE, mark=D("97")) == D("6.097")
    assert loss_at_stop(SHORT, D("100"), D("2"), D("102"), FEE, mark=D("103")) == D("6.103")
    # a stop that locks in a gain (breakeven after TP1, or beyond) loses nothing more
    breakeven = breakeven_stop_price(D("100"), LONG, D("1"), D("0.1"), FEE, RULES)
    assert loss_at_stop(LONG, D("100"), D("1"), breakeven, FEE) == 0
    assert loss_at_stop(SHORT, D("100"), D("1"), D("95"), FEE) == 0


@given(
    price=st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2),
    stop_pct=st.decimals(min_value=D("0.1"), max_value=D("20"), places=1),
    qty=st.decimals(min_value=D("0.001"), max_value=D("1000"), places=3),
    direction=st.sampled_from(Direction),
)
def test_planned_risk_covers_the_entry_fee_and_the_loss_at_the_stop(
    price: D, stop_pct: D, qty: D, direction: Direction
) -> None:
    """What sizing plans is never less than what an entry filled at its reference then stopped out loses."""
    stop = stop_price_for(price, stop_pct, direction, RULES)
    entry_fee = price * qty * FEE
    actual = entry_fee + loss_at_stop(direction, price, qty, stop, FEE)
    assert planned_risk(price, stop, qty, FEE) >= actual
    if direction is SHORT:
        assert planned_risk(price, stop, qty, FEE) == actual


def test_the_open_risk_of_every_position_spends_the_daily_loss_limit() -> None:
    """The hole: with a 20 USDT limit each entry used to risk what was left of it, ignoring the positions already
    open, and three stop-outs lost 78 USDT. Now the open risk counts: 8 + 8 + what is left, then nothing."""
    limits = RiskLimits(max_daily_loss_usdt=D("20"), risk_per_trade_pct=D("0.08"))
    snap = snapshot("10000")
    orders = []
    for symbol in ("AUSDT", "BUSDT", "CUSDT"):
        order = approve(make_signal(symbol=symbol), snap, limits, rules=make_rules(symbol)).order
        orders.append(order)
        snap = replace(snap, exposures=(*snap.exposures, Exposure(symbol, order.notional, True, order.risk_usdt)))
    assert [o.cap for o in orders] == [SizingCap.RISK, SizingCap.RISK, SizingCap.DAILY_LOSS]
    assert D("19.9") < snap.open_risk <= D("20")
    assert snap.committed_pnl >= -limits.max_daily_loss_usdt
    refused = refuse(make_signal(symbol="DUSDT"), snap, limits, rules=make_rules("DUSDT"))
    assert refused.reason is RefusalReason.DAILY_LOSS_LIMIT
    assert "DUSDT" in refused.message
    assert "daily loss limit of 20 USDT" in refused.message
    assert f"open risk {snap.open_risk:.2f} USDT" in refused.message
    assert "3 positions and pending entries" in refused.message
    # All three filled at their reference and stopped out: the day loses at most the limit.
    stopped = (loss_at_stop(o.direction, o.reference_price, o.quantity, o.levels.stop, FEE) for o in orders)
    lost = sum(stopped, D(0)) + sum((o.notional * FEE for o in orders), D(0))  # plus the entry fees
    assert lost <= limits.max_daily_loss_usdt


def test_a_headroom_too_small_for_the_smallest_order_is_refused_as_the_daily_loss_limit() -> None:
    limits = RiskLimits(max_daily_loss_usdt=D("20"))
    snap = snapshot(realized="-19.9")  # 0.10 USDT left: about 4.76 USDT of notional at a 2 % stop, below 10 USDT
    refused = refuse(make_signal(), snap, limits)
    assert refused.reason is RefusalReason.DAILY_LOSS_LIMIT
    assert "0.10 USDT is left of the daily loss limit of 20 USDT" in refused.message
    assert "below the smallest order of 10 USDT" in refused.message


def test_realised_losses_and_open_risk_spend_the_limit_unrealised_gains_do_not() -> None:
    """An unrealised gain is not locked in (the price can still go to the stop); a realised one is."""
    limits = RiskLimits(max_daily_loss_usdt=D("100"))
    at_risk = (Exposure("AUSDT", D("5000"), risk=D("60")),)
    assert snapshot(realized="-30", unrealized="+50", exposures=at_risk).committed_pnl == D("-90")
    order = approve(make_signal(), snapshot(realized="-30", unrealized="+50", exposures=at_risk), limits).order
    assert order.cap is SizingCap.DAILY_LOSS
    assert order.risk_usdt <= D("10")
    gained = snapshot(realized="+40", exposures=at_risk)
    assert approve(make_signal(), gained, limits).order.risk_usdt <= D("80")
    spent = snapshot(realized="-40", exposures=at_risk)
    assert "nothing is left" in refuse(make_signal(), spent, limits).message
    # The exchange's unrealised loss counts when it is worse than the stops say (a position nobody recorded).
    worse = snapshot(realized="-10", unrealized="-95", exposures=at_risk)
    assert worse.committed_pnl == D("-105")
    assert refuse(make_signal(), worse, limits).reason is RefusalReason.DAILY_LOSS_LIMIT


@given(
    limit=st.integers(min_value=5, max_value=500),
    realized=st.integers(min_value=-100, max_value=100),
    prices=st.lists(st.decimals(min_value=D("0.5"), max_value=D("5000"), places=2), min_size=1, max_size=8),
    pct=st.decimals(min_value=D("0.01"), max_value=D("2"), places=2),
    directions=st.lists(st.sampled_from(Direction), min_size=8, max_size=8),
)
def test_entries_in_a_row_never_commit_more_than_the_daily_loss_limit(
    limit: int, realized: int, prices: list[D], pct: D, directions: list[Direction]
) -> None:
    limits = RiskLimits(max_daily_loss_usdt=D(limit), risk_per_trade_pct=pct, max_concurrent_positions=10)
    snap = snapshot("10000", realized=str(realized))
    for i, price in enumerate(prices):
        symbol = f"S{i}USDT"
        decision = check_entry(
            make_signal(directions[i], price=str(price), symbol=symbol),
            snap,
            limits,
            rules=make_rules(symbol),
            level_settings=SETTINGS,
        )
        if isinstance(decision, Approved):
            order = decision.order
            snap = replace(snap, exposures=(*snap.exposures, Exposure(symbol, order.notional, True, order.risk_usdt)))
    assert snap.committed_pnl >= min(-limits.max_daily_loss_usdt, D(realized))


def test_pending_intents_count_towards_account_leverage() -> None:
    snap = snapshot("1000", exposures=(Exposure("AUSDT", D("9995"), pending=True),))
    decision = check_entry(make_signal(), snap, RiskLimits(max_leverage=10), rules=RULES, level_settings=SETTINGS)
    assert isinstance(decision, Refused)
    assert decision.reason is RefusalReason.MAX_LEVERAGE
