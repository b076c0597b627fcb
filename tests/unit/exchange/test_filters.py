"""SymbolRules: parsing exchangeInfo filters and quantising to them (property tests).

The invariants that protect money: a quantity is never rounded up past what was asked, every quantised
value lies on the exchange's grid, and check_order agrees with the exchange about what it would reject.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ats.domain import FilterViolation, SymbolRules

BTCUSDT_INFO: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "pair": "BTCUSDT",
    "contractType": "PERPETUAL",
    "deliveryDate": 4133404800000,
    "onboardDate": 1569398400000,
    "status": "TRADING",
    "baseAsset": "BTC",
    "quoteAsset": "USDT",
    "marginAsset": "USDT",
    "pricePrecision": 2,
    "quantityPrecision": 3,
    "triggerProtect": "0.0500",
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "261.10", "maxPrice": "809484", "tickSize": "0.10"},
        {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
        {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120", "minQty": "0.001"},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
        {"filterType": "MIN_NOTIONAL", "notional": "100"},
        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500"},
        {"filterType": "POSITION_RISK_CONTROL", "positionControlSide": "NONE"},
    ],
    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    "someFieldAddedIn2027": {"nested": True},
}


def rules_with(tick: Decimal, step: Decimal, market_step: Decimal | None = None) -> SymbolRules:
    return SymbolRules(
        symbol="TESTUSDT",
        base_asset="TEST",
        quote_asset="USDT",
        status="TRADING",
        contract_type="PERPETUAL",
        tick_size=tick,
        min_price=Decimal(0),
        max_price=Decimal(0),
        step_size=step,
        min_qty=step,
        max_qty=Decimal(10**9),
        market_step_size=market_step or step,
        market_min_qty=market_step or step,
        market_max_qty=Decimal(10**9),
        min_notional=Decimal(5),
    )


def on_grid(value: Decimal, step: Decimal) -> bool:
    return (Fraction(value) / Fraction(step)).denominator == 1


# Grids as Binance publishes them (powers of ten and a few odd ones) plus arbitrary d x 10^e.
grids = st.one_of(
    st.sampled_from([Decimal(s) for s in ("0.10", "0.01", "0.001", "0.0001000", "0.00001", "1", "0.5", "0.005")]),
    st.builds(lambda d, e: Decimal(d).scaleb(e), st.integers(1, 9), st.integers(-10, 3)),
)
# Values with up to 40 significant digits: more than Decimal's default 28-digit context holds.
values = st.builds(
    lambda units, e: Decimal(units).scaleb(e),
    st.integers(1, 10**40),
    st.integers(-45, 0),
)


def test_from_exchange_info_reads_filters_and_ignores_unknown_ones() -> None:
    rules = SymbolRules.from_exchange_info(BTCUSDT_INFO)
    assert rules.symbol == "BTCUSDT"
    assert rules.tick_size == Decimal("0.10")
    assert (rules.min_price, rules.max_price) == (Decimal("261.10"), Decimal("809484"))
    assert (rules.step_size, rules.min_qty, rules.max_qty) == (Decimal("0.001"), Decimal("0.001"), Decimal(1000))
    assert rules.market_max_qty == Decimal(120)
    assert rules.min_notional == Decimal(100)
    assert rules.max_num_algo_orders == 10
    assert rules.trigger_protect == Decimal("0.05")
    assert rules.is_tradable_perpetual


def test_market_lot_size_falls_back_to_lot_size() -> None:
    entry = {**BTCUSDT_INFO, "filters": [f for f in BTCUSDT_INFO["filters"] if f["filterType"] != "MARKET_LOT_SIZE"]}
    rules = SymbolRules.from_exchange_info(entry)
    assert (rules.market_step_size, rules.market_max_qty) == (Decimal("0.001"), Decimal(1000))


def test_filters_sent_as_json_numbers_keep_their_exact_value() -> None:
    as_numbers = [
        {"filterType": "PRICE_FILTER", "minPrice": 0.1, "maxPrice": 100000, "tickSize": 0.1},
        {"filterType": "LOT_SIZE", "stepSize": 0.001, "maxQty": 1000, "minQty": 0.001},
        {"filterType": "MIN_NOTIONAL", "notional": 5.1},
    ]
    rules = SymbolRules.from_exchange_info({**BTCUSDT_INFO, "filters": as_numbers})
    assert (rules.tick_size, rules.step_size, rules.market_step_size) == (
        Decimal("0.1"),
        Decimal("0.001"),
        Decimal("0.001"),
    )
    assert (rules.min_price, rules.min_qty, rules.min_notional) == (Decimal("0.1"), Decimal("0.001"), Decimal("5.1"))
    assert rules.round_price(Decimal("90000.04")) == Decimal("90000.0")


@given(qty=values, step=grids, market=st.booleans())
def test_floor_qty_never_rounds_up_and_lands_on_the_grid(qty: Decimal, step: Decimal, market: bool) -> None:
    rules = rules_with(Decimal("0.01"), step, market_step=step * 10)
    grid = rules.market_step_size if market else rules.step_size
    floored = rules.floor_qty(qty, market=market)
    assert floored <= qty
    assert qty - floored < grid
    assert on_grid(floored, grid)


def test_floor_qty_with_more_digits_than_the_decimal_context() -> None:
    # 32 significant digits: plain Decimal division rounded this up to 0.123 before flooring.
    rules = rules_with(Decimal("0.01"), Decimal("0.001"))
    assert rules.floor_qty(Decimal("0.12299999999999999999999999999999")) == Decimal("0.122")


def test_floor_qty_refuses_negative_quantities() -> None:
    with pytest.raises(FilterViolation):
        rules_with(Decimal("0.01"), Decimal("0.001")).floor_qty(Decimal("-0.5"))


@given(price=values, tick=grids)
def test_prices_land_on_the_tick_grid_on_the_chosen_side(price: Decimal, tick: Decimal) -> None:
    rules = rules_with(tick, Decimal("0.001"))
    down, up, nearest = rules.price_down(price), rules.price_up(price), rules.round_price(price)
    assert all(on_grid(p, tick) for p in (down, up, nearest))
    assert down <= price <= up
    assert up - down in (0, tick)
    assert nearest in (down, up)
    assert abs(nearest - price) <= tick / 2


@given(units=st.integers(0, 10**6), tick=grids)
def test_prices_already_on_the_grid_are_unchanged(units: int, tick: Decimal) -> None:
    rules = rules_with(tick, Decimal("0.001"))
    price = Decimal(units) * tick
    assert rules.price_down(price) == rules.price_up(price) == rules.round_price(price) == price


def test_ties_follow_the_rounding_mode() -> None:
    rules = rules_with(Decimal("0.10"), Decimal("0.001"))
    assert rules.round_price(Decimal("100.05"), ROUND_HALF_EVEN) == Decimal("100.00")
    assert rules.round_price(Decimal("100.15"), ROUND_HALF_EVEN) == Decimal("100.20")
    assert rules.round_price(Decimal("100.05"), ROUND_HALF_UP) == Decimal("100.10")


@given(
    price_units=st.integers(10**3, 10**9),
    fraction=st.integers(0, 10**20),
    extra=st.integers(0, 100),
    step=grids,
    tick=grids,
    market=st.booleans(),
)
def test_check_order_accepts_what_quantisation_produces(
    price_units: int, fraction: int, extra: int, step: Decimal, tick: Decimal, market: bool
) -> None:
    """Orders built the way sizing builds them (a price rounded to the tick, a quantity floored to the step and
    above the minimum notional) always pass; built, not filtered, so that every example counts."""
    rules = rules_with(tick, step)
    p = rules.round_price((Decimal(price_units) + Decimal(fraction).scaleb(-20)) * tick)
    wanted = rules.min_notional / p * (1 + Decimal(extra) / 100) + 2 * step
    q = rules.floor_qty(wanted, market=market)
    rules.check_order(q, p, market=market)


@given(units=st.integers(1, 10**6), tick=grids)
def test_check_order_rejects_prices_off_the_grid(units: int, tick: Decimal) -> None:
    rules = rules_with(tick, Decimal("0.001"))
    price = Decimal(units) * tick + tick / 3
    with pytest.raises(FilterViolation, match="tick size"):
        rules.check_order(Decimal(1000), price, market=False)


@pytest.mark.parametrize(
    ("qty", "price", "market", "message"),
    [
        ("0.0015", "90000", False, "not a multiple of step size 0.001"),
        ("0", "90000", False, "quantity must be positive"),
        ("121", "90000", True, "above the maximum 120"),
        ("0.01", "90000.05", False, "not a multiple of tick size 0.10"),
        ("1", "200.00", False, "below the minimum 261.10"),
        ("0.01", "900000.0", False, "above the maximum 809484"),
        ("0.001", "90000", False, "notional 90.000 is below the minimum 100"),
    ],
)
def test_check_order_names_the_broken_filter(qty: str, price: str, market: bool, message: str) -> None:
    rules = SymbolRules.from_exchange_info(BTCUSDT_INFO)
    with pytest.raises(FilterViolation, match=message):
        rules.check_order(Decimal(qty), Decimal(price), market=market)


def test_check_order_accepts_valid_orders() -> None:
    rules = SymbolRules.from_exchange_info(BTCUSDT_INFO)
    rules.check_order(Decimal("0.002"), Decimal("90000.1"), market=False)
    rules.check_order(Decimal("0.001"), Decimal(90000), market=False, reduce_only=True)  # no minimum notional
