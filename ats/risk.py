"""Risk: entry limits, position sizing, leverage, protective levels and the stop rules.

Pure functions over Decimal: no I/O, no clock. Flows call `check_entry` inside the transaction that records an
intent; the lifecycle calls the level and stop functions as fills arrive; backtests call both.

The daily loss limit is a cap, not an entry gate: the day's headroom is spent by what was realised today and by
the open risk of every position and pending entry (what each loses if its exchange stop fills now, fees
included), so a new entry is sized to lose at most what is left even if every stop of the day is hit. Only the
slippage of stop-market fills past their trigger is beyond it.

Rounding sides, chosen so that rounding never works against the account:
- stop: AWAY from the entry (long: down, short: up) and at least one tick from it. The stop is never tighter
  than the factor-adjusted distance and at most one tick wider; sizing uses the rounded stop, so the money at
  risk stays within the budget.
- take-profits: TOWARD the entry (long: down, short: up), at least one tick beyond the entry, TP2 at least one
  tick beyond TP1. A target fires no later than planned.
- breakeven stop: to the side where closing there still covers every cost (long: up, short: down).
- reversal-tightened stop: away from the mark and at least one tick short of it, so tightening never places a
  stop that would trigger immediately.
- quantities: floored to the step, never rounded up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from ats.config import LevelSettings, OnReversal, RiskLimits
from ats.domain import Band, Direction, Levels, Signal, SymbolRules
from ats.messages import Text, say_text, text

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)

# Binance's regular-tier taker fee; callers pass the account's real rate (/fapi/v1/commissionRate) when known.
DEFAULT_TAKER_FEE_RATE = Decimal("0.0005")
# Share of the available balance left unused by sizing: a market order's open loss, mark drift, rounding.
MARGIN_BUFFER = Decimal("0.05")
# Conservative maintenance margin rate (Binance's first brackets are 0.4-1 %), used to keep liquidation away.
MAINTENANCE_MARGIN_RATE = Decimal("0.01")
# Isolated-margin liquidation must lie at least this many stop distances from the entry.
LIQUIDATION_STOP_MULTIPLE = 2
# Leverage grows linearly from RiskLimits.leverage at this strength to max_leverage at 100.
LEVERAGE_BASE_STRENGTH = 70.0
# On a reversal signal the stop moves this fraction of the way from where it is toward the mark.
REVERSAL_TIGHTEN_FRACTION = Decimal("0.5")


# ---------------------------------------------------------------------------------------------- levels


@dataclass(frozen=True, slots=True)
class LevelPlan:
    """Factor-adjusted level distances in percent of the entry price.

    Decided once per signal, applied to the actual fill price when the entry fills (the fill, not the signal's
    bar close, is what the protective orders must be measured from).
    """

    direction: Direction
    stop_pct: Decimal
    tp1_pct: Decimal
    tp2_pct: Decimal
    tp1_close_fraction: Decimal
    adjustments: tuple[str, ...] = ()


def plan_levels(direction: Direction, signal: Signal, settings: LevelSettings) -> LevelPlan:
    """Base distances adjusted by the signal's strength, trend, liquidity and volatility (factors.md).

    Adjustments multiply: a strong, liquid, volatile signal gets stop x 0.8 x 0.9 x 1.5.
    """
    stop = settings.stop_pct
    target_factor = ONE
    adjustments: list[str] = []
    if signal.strength >= settings.strong_signal_score:
        stop *= ONE - settings.strong_stop_tighten
        target_factor *= ONE + settings.strong_target_extend
        adjustments.append("strong signal")
    if signal.trend * direction.sign >= settings.strong_trend:
        target_factor *= ONE + settings.trend_target_extend
        adjustments.append("strong trend")
    if signal.liquidity >= settings.good_liquidity:
        stop *= ONE - settings.liquidity_stop_tighten
        adjustments.append("good liquidity")
    if signal.atr_pct > float(settings.high_volatility_atr_pct):
        stop *= ONE + settings.volatility_stop_widen
        adjustments.append("high volatility")
    return LevelPlan(
        direction=direction,
        stop_pct=stop,
        tp1_pct=settings.tp1_pct * target_factor,
        tp2_pct=settings.tp2_pct * target_factor,
        tp1_close_fraction=settings.tp1_close_fraction,
        adjustments=tuple(adjustments),
    )


def lowest_price(rules: SymbolRules) -> Decimal:
    """The lowest positive price the symbol accepts."""
    return max(rules.min_price, rules.tick_size)


def min_order_qty(rules: SymbolRules) -> Decimal:
    """The smallest quantity both the limit and the market lot filters accept (conditional orders fill at market)."""
    return max(rules.min_qty, rules.market_min_qty)


def stop_price_for(entry: Decimal, stop_pct: Decimal, direction: Direction, rules: SymbolRules) -> Decimal:
    """The initial stop: rounded away from the entry, at least one tick from it, within the price filter."""
    distance = entry * stop_pct / HUNDRED
    tick = rules.tick_size
    if direction is Direction.LONG:
        price = min(rules.price_down(entry - distance), rules.price_down(entry - tick))
        return max(price, lowest_price(rules))
    price = max(rules.price_up(entry + distance), rules.price_up(entry + tick))
    return min(price, rules.max_price) if rules.max_price > 0 else price


def _target_price(entry: Decimal, pct: Decimal, beyond: Decimal, direction: Direction, rules: SymbolRules) -> Decimal:
    """A take-profit rounded toward the entry but at least one tick beyond `beyond` (the entry, or TP1)."""
    raw = entry * (ONE + direction.sign * pct / HUNDRED)
    tick = rules.tick_size
    if direction is Direction.LONG:
        price = max(rules.price_down(raw), rules.price_up(beyond + tick))
        return min(price, rules.max_price) if rules.max_price > 0 else price
    price = min(rules.price_up(raw), rules.price_down(beyond - tick))
    return max(price, lowest_price(rules))


def level_prices(plan: LevelPlan, entry: Decimal, rules: SymbolRules) -> tuple[Decimal, Decimal, Decimal]:
    """(stop, tp1, tp2) on the tick grid for an entry price."""
    stop = stop_price_for(entry, plan.stop_pct, plan.direction, rules)
    tp1 = _target_price(entry, plan.tp1_pct, entry, plan.direction, rules)
    tp2 = _target_price(entry, plan.tp2_pct, tp1, plan.direction, rules)
    return stop, tp1, tp2


def split_take_profits(quantity: Decimal, fraction: Decimal, rules: SymbolRules) -> tuple[Decimal, Decimal]:
    """(tp1_qty, tp2_qty) on the step grid, each at least the minimum quantity.

    When the position is too small to split, TP1 takes everything and TP2 gets 0.
    """
    tp1 = rules.floor_qty(quantity * fraction)
    tp2 = rules.floor_qty(quantity - tp1)
    minimum = min_order_qty(rules)
    if tp1 <= 0 or tp2 <= 0 or tp1 < minimum or tp2 < minimum:
        return quantity, ZERO
    return tp1, tp2


def levels_for(plan: LevelPlan, entry: Decimal, quantity: Decimal, rules: SymbolRules) -> Levels:
    stop, tp1, tp2 = level_prices(plan, entry, rules)
    tp1_qty, tp2_qty = split_take_profits(quantity, plan.tp1_close_fraction, rules)
    return Levels(
        entry=entry,
        stop=stop,
        tp1=tp1,
        tp2=tp2,
        tp1_qty=tp1_qty,
        tp2_qty=tp2_qty,
        single_target=tp2_qty == 0,
        adjustments=plan.adjustments,
    )


# ---------------------------------------------------------------------------------------------- stop rules


def tighten_stop(current: Decimal, proposed: Decimal, direction: Direction) -> Decimal:
    """The tighter of two stops: a stop may move toward the price, never away from it."""
    return max(current, proposed) if direction is Direction.LONG else min(current, proposed)


def stop_crossed(stop: Decimal, mark: Decimal, direction: Direction) -> bool:
    """Whether a mark price has reached a stop (STOP_MARKET SELL fires at <= trigger, BUY at >=)."""
    return mark <= stop if direction is Direction.LONG else mark >= stop


def target_reached(target: Decimal, mark: Decimal, direction: Direction) -> bool:
    """Whether a mark price has reached a take-profit (TAKE_PROFIT_MARKET SELL fires at >= trigger, BUY at <=)."""
    return mark >= target if direction is Direction.LONG else mark <= target


def breakeven_stop_price(
    entry_avg: Decimal,
    direction: Direction,
    qty: Decimal,
    fees_paid: Decimal,
    taker_fee_rate: Decimal,
    rules: SymbolRules,
) -> Decimal:
    """The stop at which closing `qty` at market returns the costs already paid plus the closing order's fee.

    Long:  (P - E) q - P q f >= F  =>  P >= (E q + F) / (q (1 - f)), rounded up.
    Short: (E - P) q - P q f >= F  =>  P <= (E q - F) / (q (1 + f)), rounded down.
    """
    costs = max(fees_paid, ZERO)
    if direction is Direction.LONG:
        if qty <= 0:
            return rules.price_up(entry_avg)
        return rules.price_up((entry_avg * qty + costs) / (qty * (ONE - taker_fee_rate)))
    if qty <= 0:
        return rules.price_down(entry_avg)
    price = rules.price_down((entry_avg * qty - costs) / (qty * (ONE + taker_fee_rate)))
    return max(price, lowest_price(rules))


class ReversalResponse(StrEnum):
    NONE = "none"
    TIGHTEN = "tighten"
    CLOSE = "close"


def reversal_response(
    position: Direction,
    signal_direction: Direction,
    strength: float,
    *,
    on_reversal: OnReversal,
    reversal_score: float,
) -> ReversalResponse:
    """What a closed bar's opposite-direction score asks for (MonitorSettings.on_reversal and reversal_score)."""
    if signal_direction is position or not strength >= reversal_score or on_reversal == "ignore":
        return ReversalResponse.NONE
    return ReversalResponse.TIGHTEN if on_reversal == "tighten" else ReversalResponse.CLOSE


def reversal_stop(
    current: Decimal,
    mark: Decimal,
    direction: Direction,
    rules: SymbolRules,
    fraction: Decimal = REVERSAL_TIGHTEN_FRACTION,
) -> Decimal:
    """A stop `fraction` of the way from the current stop toward the mark: never looser than the current stop,
    at least one tick short of the mark. The current stop when the mark has already reached it."""
    if stop_crossed(current, mark, direction):
        return current
    target = current + (mark - current) * fraction
    tick = rules.tick_size
    if direction is Direction.LONG:
        candidate = min(rules.price_down(target), rules.price_down(mark - tick))
    else:
        candidate = max(rules.price_up(target), rules.price_up(mark + tick))
    return tighten_stop(current, candidate, direction)


# ---------------------------------------------------------------------------------------------- open risk


def planned_risk(reference: Decimal, stop: Decimal, qty: Decimal, taker_fee_rate: Decimal) -> Decimal:
    """What an entry of `qty` at `reference` loses if its stop fills at `stop`: the distance plus the entry's and
    the exit's taker fees (the exit's at the higher of the two prices, so neither side's is undercounted)."""
    return qty * (abs(reference - stop) + (reference + max(reference, stop)) * taker_fee_rate)


def loss_at_stop(
    direction: Direction,
    entry: Decimal,
    qty: Decimal,
    stop: Decimal,
    taker_fee_rate: Decimal,
    mark: Decimal | None = None,
) -> Decimal:
    """What closing `qty` of a filled position at its stop still loses against the average entry, the exit's taker
    fee included (the entry's is realised already); at the mark when the mark is already beyond the stop (the stop
    fills there or worse). 0 when the stop locks in a gain, as the breakeven stop after TP1 does."""
    exit_price = mark if mark is not None and stop_crossed(stop, mark, direction) else stop
    pnl = direction.sign * (exit_price - entry) * qty - exit_price * qty * taker_fee_rate
    return max(-pnl, ZERO)


# ---------------------------------------------------------------------------------------------- entry check


@dataclass(frozen=True, slots=True)
class Exposure:
    """An open position or a pending intent (recorded, entry not yet filled) of the account."""

    symbol: str
    notional: Decimal  # absolute USDT value; for a pending intent its planned notional
    pending: bool = False
    # What it can still add to today's loss: a position's loss at its exchange stop (loss_at_stop), a pending
    # entry's planned risk (planned_risk), a position we do not manage its unrealised loss (its stop is unknown).
    risk: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """What the entry check needs to know about the account, read in the same transaction as the intent."""

    wallet_balance: Decimal
    available_balance: Decimal
    realized_pnl_today: Decimal  # since 00:00 UTC, net of fees and funding; negative is a loss
    unrealized_pnl: Decimal  # all open positions, now
    exposures: tuple[Exposure, ...] = ()

    @property
    def equity(self) -> Decimal:
        return self.wallet_balance + self.unrealized_pnl

    @property
    def daily_pnl(self) -> Decimal:
        """Today's PnL so far: realised today plus unrealised now (what halts the day once at the limit)."""
        return self.realized_pnl_today + self.unrealized_pnl

    @property
    def open_risk(self) -> Decimal:
        """What every open position and pending entry together can still lose, each stopped out now."""
        return sum((e.risk for e in self.exposures), ZERO)

    @property
    def committed_pnl(self) -> Decimal:
        """Today's PnL if every stop were hit now: realised less the open risk. What the daily loss limit caps.

        Never above realised + unrealised: the exchange's own unrealised PnL also counts what no exposure knows of.
        """
        return min(self.realized_pnl_today - self.open_risk, self.daily_pnl)

    @property
    def total_notional(self) -> Decimal:
        return sum((e.notional for e in self.exposures), ZERO)


class RefusalReason(StrEnum):
    INVALID_SIGNAL = "invalid_signal"
    SYMBOL_NOT_TRADABLE = "symbol_not_tradable"
    SYMBOL_BUSY = "symbol_busy"
    MAX_POSITIONS = "max_positions"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    INSUFFICIENT_MARGIN = "insufficient_margin"
    MAX_LEVERAGE = "max_leverage"
    MAX_NOTIONAL = "max_notional"
    BELOW_MIN_ORDER = "below_min_order"


class SizingCap(StrEnum):
    """Which limit decided the position size."""

    MAX_NOTIONAL = "max_notional"  # RiskLimits.max_position_size_usdt
    RISK = "risk"  # risk_per_trade_pct of equity lost at the stop
    DAILY_LOSS = "daily_loss"  # what is left of the daily loss limit after today's realised PnL and open risk
    MARGIN = "margin"  # the available balance at the chosen leverage, less a buffer
    ACCOUNT_LEVERAGE = "account_leverage"  # all exposure together at most equity x max_leverage
    MAX_QTY = "max_qty"  # the symbol's largest market order


@dataclass(frozen=True, slots=True)
class SizedOrder:
    """An approved entry: what to send and why it is this size."""

    symbol: str
    direction: Direction
    quantity: Decimal
    reference_price: Decimal  # the price sizing used (the signal's close unless given)
    notional: Decimal
    leverage: int
    margin: Decimal  # initial margin at that leverage
    risk_usdt: Decimal  # loss if the stop is hit, entry and exit fees included (planned_risk)
    levels: Levels  # at the reference price; the lifecycle re-applies `plan` to the actual fill price
    plan: LevelPlan
    strength: float
    band: Band
    cap: SizingCap


@dataclass(frozen=True, slots=True)
class Approved:
    order: SizedOrder
    approved: Literal[True] = True


@dataclass(frozen=True, slots=True)
class Refused:
    reason: RefusalReason
    why: Text  # the figures behind the refusal, told in the configured language by the refusal's message
    approved: Literal[False] = False

    @property
    def message(self) -> str:
        """`why` in English: for the signal's record, logs and the CLI."""
        return say_text("en", self.why)


Decision = Approved | Refused


def liquidation_safe_leverage(stop_fraction: Decimal) -> int:
    """The highest leverage whose isolated-margin liquidation lies LIQUIDATION_STOP_MULTIPLE stops away.

    Liquidation sits about 1/leverage - maintenance rate from the entry; a stop beyond it would never fire.
    """
    return max(1, int(ONE / (LIQUIDATION_STOP_MULTIPLE * stop_fraction + MAINTENANCE_MARGIN_RATE)))


def choose_leverage(strength: float, limits: RiskLimits, stop_fraction: Decimal) -> int:
    """Stronger signals get more leverage, from limits.leverage up to limits.max_leverage, never so much
    that liquidation could come before the stop."""
    share = min(max((strength - LEVERAGE_BASE_STRENGTH) / (100.0 - LEVERAGE_BASE_STRENGTH), 0.0), 1.0)
    leverage = limits.leverage + math.floor(share * (limits.max_leverage - limits.leverage))
    return max(1, min(leverage, limits.max_leverage, liquidation_safe_leverage(stop_fraction)))


_REASON_FOR_CAP = {
    SizingCap.MARGIN: RefusalReason.INSUFFICIENT_MARGIN,
    SizingCap.ACCOUNT_LEVERAGE: RefusalReason.MAX_LEVERAGE,
    SizingCap.MAX_NOTIONAL: RefusalReason.MAX_NOTIONAL,
    SizingCap.RISK: RefusalReason.BELOW_MIN_ORDER,
    SizingCap.DAILY_LOSS: RefusalReason.DAILY_LOSS_LIMIT,
    SizingCap.MAX_QTY: RefusalReason.BELOW_MIN_ORDER,
}


def _daily_loss_figures(snapshot: AccountSnapshot) -> Text:
    """What the daily loss limit was spent on, for the refusal's message."""
    return text(
        "risk.loss_figures",
        realised=f"{snapshot.realized_pnl_today:.2f}",
        risk=f"{snapshot.open_risk:.2f}",
        count=len(snapshot.exposures),
        unrealised=f"{snapshot.unrealized_pnl:.2f}",
    )


def check_entry(
    signal: Signal,
    snapshot: AccountSnapshot,
    limits: RiskLimits,
    *,
    rules: SymbolRules,
    level_settings: LevelSettings,
    taker_fee_rate: Decimal = DEFAULT_TAKER_FEE_RATE,
    entry_price: Decimal | None = None,
) -> Decision:
    """Approve a sized entry for `signal` or refuse it with a machine-readable reason and a message.

    Size = the smallest of: max_position_size_usdt; what loses risk_per_trade_pct of equity at the stop; what
    loses at the stop what is left of the daily loss limit once today's realised PnL and the open risk of every
    position and pending entry are counted (AccountSnapshot.committed_pnl); what the available margin carries at
    the chosen leverage; the account's total exposure headroom (equity x max_leverage); the symbol's max quantity.
    """
    price = signal.price if entry_price is None else entry_price
    if rules.symbol != signal.symbol:
        why = text("risk.rules_mismatch", rules=rules.symbol, symbol=signal.symbol)
        return Refused(RefusalReason.INVALID_SIGNAL, why)
    if not rules.is_tradable_perpetual:
        return Refused(RefusalReason.SYMBOL_NOT_TRADABLE, text("risk.not_perpetual", symbol=signal.symbol))
    if not (price.is_finite() and price > 0) or not math.isfinite(signal.strength):
        return Refused(RefusalReason.INVALID_SIGNAL, text("risk.unusable", symbol=signal.symbol, price=price))
    busy = next((e for e in snapshot.exposures if e.symbol == signal.symbol), None)
    if busy is not None:
        why = text("risk.busy_pending" if busy.pending else "risk.busy_open", symbol=signal.symbol)
        return Refused(RefusalReason.SYMBOL_BUSY, why)
    if len(snapshot.exposures) >= limits.max_concurrent_positions:
        why = text("risk.max_positions", count=len(snapshot.exposures), limit=limits.max_concurrent_positions)
        return Refused(RefusalReason.MAX_POSITIONS, why)
    headroom = limits.max_daily_loss_usdt + snapshot.committed_pnl
    if headroom <= 0:
        why = text(
            "risk.loss_spent",
            symbol=signal.symbol,
            limit=limits.max_daily_loss_usdt,
            figures=_daily_loss_figures(snapshot),
        )
        return Refused(RefusalReason.DAILY_LOSS_LIMIT, why)
    equity = snapshot.equity
    if equity <= 0 or snapshot.wallet_balance <= 0:
        return Refused(RefusalReason.INSUFFICIENT_BALANCE, text("risk.no_equity", equity=equity))
    if snapshot.available_balance <= 0:
        return Refused(RefusalReason.INSUFFICIENT_MARGIN, text("risk.no_margin"))

    plan = plan_levels(signal.direction, signal, level_settings)
    stop = stop_price_for(price, plan.stop_pct, signal.direction, rules)
    stop_fraction = abs(price - stop) / price
    leverage = choose_leverage(signal.strength, limits, stop_fraction)
    loss_fraction = planned_risk(price, stop, ONE, taker_fee_rate) / price  # per USDT of notional
    caps: dict[SizingCap, Decimal] = {
        SizingCap.MAX_NOTIONAL: limits.max_position_size_usdt,
        SizingCap.RISK: equity * limits.risk_per_trade_pct / HUNDRED / loss_fraction,
        SizingCap.DAILY_LOSS: headroom / loss_fraction,
        SizingCap.MARGIN: snapshot.available_balance * (ONE - MARGIN_BUFFER) / (ONE / leverage + taker_fee_rate),
        SizingCap.ACCOUNT_LEVERAGE: equity * limits.max_leverage - snapshot.total_notional,
    }
    if rules.market_max_qty > 0:
        caps[SizingCap.MAX_QTY] = rules.market_max_qty * price
    cap, allowed = min(caps.items(), key=lambda item: item[1])
    quantity = rules.floor_qty(max(allowed, ZERO) / price)
    notional = quantity * price

    minimum_qty = min_order_qty(rules)
    smallest = max(minimum_qty * price, rules.min_notional, limits.min_order_size_usdt)
    too_small = notional < rules.min_notional or notional < limits.min_order_size_usdt
    if quantity <= 0 or quantity < minimum_qty or too_small:
        smallest_text = format(smallest, "f")
        if smallest > limits.max_position_size_usdt:
            why = text(
                "risk.too_big", symbol=signal.symbol, smallest=smallest_text, limit=limits.max_position_size_usdt
            )
            return Refused(RefusalReason.MAX_NOTIONAL, why)
        allows = f"{max(allowed, ZERO):.2f}"
        if cap is SizingCap.DAILY_LOSS:
            why = text(
                "risk.loss_left",
                symbol=signal.symbol,
                headroom=f"{headroom:.2f}",
                limit=limits.max_daily_loss_usdt,
                figures=_daily_loss_figures(snapshot),
                allowed=allows,
                smallest=smallest_text,
            )
            return Refused(_REASON_FOR_CAP[cap], why)
        why = text(
            "risk.cap", symbol=signal.symbol, cap=text(f"cap.{cap.value}"), allowed=allows, smallest=smallest_text
        )
        return Refused(_REASON_FOR_CAP[cap], why)

    levels = levels_for(plan, price, quantity, rules)
    return Approved(
        SizedOrder(
            symbol=signal.symbol,
            direction=signal.direction,
            quantity=quantity,
            reference_price=price,
            notional=notional,
            leverage=leverage,
            margin=notional / leverage,
            risk_usdt=planned_risk(price, levels.stop, quantity, taker_fee_rate),
            levels=levels,
            plan=plan,
            strength=signal.strength,
            band=signal.band,
            cap=cap,
        )
    )
