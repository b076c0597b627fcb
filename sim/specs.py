"""The simulated exchange's contract catalogue: symbols, filters, leverage brackets and market character.

Filters and brackets mirror the shape (not the exact numbers) of Binance USDⓈ-M futures: BTCUSDT trades
around 90 000 with tick 0.10 and step 0.001, low-priced coins have ticks down to 1e-7. Each symbol also
carries the parameters the synthetic market needs (volatility per bar, beta to BTC, typical volume).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Bracket:
    """One notional bracket: positions up to `notional_cap` may use up to `initial_leverage`."""

    bracket: int
    initial_leverage: int
    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal  # maintenance amount: maintenance margin = notional * ratio - cum


def _brackets(caps: list[int], leverages: list[int], ratios: list[str]) -> tuple[Bracket, ...]:
    """Build brackets with Binance's cumulative maintenance amounts, so the margin is continuous."""
    out: list[Bracket] = []
    floor = Decimal(0)
    cum = Decimal(0)
    previous_ratio = Decimal(0)
    for index, (cap, leverage, ratio_text) in enumerate(zip(caps, leverages, ratios, strict=True)):
        ratio = Decimal(ratio_text)
        cum += floor * (ratio - previous_ratio)
        out.append(Bracket(index + 1, leverage, floor, Decimal(cap), ratio, cum))
        floor = Decimal(cap)
        previous_ratio = ratio
    return tuple(out)


BRACKET_TIERS: dict[str, tuple[Bracket, ...]] = {
    "btc": _brackets(
        [
            50_000,
            600_000,
            3_000_000,
            12_000_000,
            70_000_000,
            100_000_000,
            230_000_000,
            480_000_000,
            600_000_000,
            800_000_000,
            1_200_000_000,
            1_800_000_000,
        ],
        [125, 100, 75, 50, 25, 20, 10, 5, 4, 3, 2, 1],
        ["0.004", "0.005", "0.0065", "0.01", "0.02", "0.025", "0.05", "0.1", "0.125", "0.15", "0.25", "0.5"],
    ),
    "eth": _brackets(
        [
            50_000,
            500_000,
            2_000_000,
            10_000_000,
            50_000_000,
            80_000_000,
            150_000_000,
            300_000_000,
            400_000_000,
            600_000_000,
            1_000_000_000,
        ],
        [125, 100, 75, 50, 25, 20, 10, 5, 4, 3, 1],
        ["0.004", "0.005", "0.0065", "0.01", "0.02", "0.025", "0.05", "0.1", "0.125", "0.15", "0.5"],
    ),
    "major": _brackets(
        [10_000, 100_000, 500_000, 1_000_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000, 100_000_000],
        [75, 50, 40, 25, 20, 10, 5, 4, 1],
        ["0.005", "0.0065", "0.01", "0.02", "0.025", "0.05", "0.1", "0.125", "0.5"],
    ),
    "alt": _brackets(
        [5_000, 25_000, 100_000, 250_000, 1_000_000, 3_000_000, 5_000_000, 10_000_000],
        [50, 25, 20, 10, 5, 4, 2, 1],
        ["0.01", "0.02", "0.025", "0.05", "0.1", "0.125", "0.25", "0.5"],
    ),
    "new": _brackets(
        [5_000, 25_000, 100_000, 500_000, 1_000_000, 2_000_000],
        [20, 10, 5, 4, 2, 1],
        ["0.025", "0.05", "0.1", "0.125", "0.25", "0.5"],
    ),
}


def decimals_of(value: Decimal) -> int:
    """Number of decimal places a grid step like Decimal('0.010') really needs (2 here)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """A contract's exchange rules plus the character of its synthetic market."""

    symbol: str
    base_asset: str
    price: float  # level the market trades near when the simulation starts
    tick: str
    step: str
    min_qty: str
    max_qty: str
    market_max_qty: str
    min_notional: str
    vol: float  # idiosyncratic volatility per bar (fraction of price)
    beta: float  # sensitivity to BTC's per-bar return
    quote_volume: float  # typical traded value per bar, USDT
    tier: str = "alt"
    price_precision_override: int | None = None  # Binance's pricePrecision is not always the tick's decimals
    quantity_precision_override: int | None = None  # nor quantityPrecision the step's (BTCUSDT: 2 vs tick 0.1)
    listed_bars: int | None = None  # a new listing: only this many bars of history exist
    mover: float = 0.0  # a strong mover: extra drift per bar (fraction) over the recent bars
    contract_type: str = "PERPETUAL"
    delivery_date_ms: int = 4_133_404_800_000  # Binance's "perpetual" delivery date, 2100-12-25
    quote_asset: str = "USDT"

    @property
    def tick_size(self) -> Decimal:
        return Decimal(self.tick)

    @property
    def step_size(self) -> Decimal:
        return Decimal(self.step)

    @property
    def price_precision(self) -> int:
        if self.price_precision_override is not None:
            return self.price_precision_override
        return decimals_of(self.tick_size)

    @property
    def quantity_precision(self) -> int:
        if self.quantity_precision_override is not None:
            return self.quantity_precision_override
        return decimals_of(self.step_size)

    @property
    def brackets(self) -> tuple[Bracket, ...]:
        return BRACKET_TIERS[self.tier]

    @property
    def max_leverage(self) -> int:
        return self.brackets[0].initial_leverage

    @property
    def default_leverage(self) -> int:
        return min(20, self.max_leverage)


@dataclass(frozen=True, slots=True)
class FilterSet:
    """A symbol's filters as Decimals, the numbers the matching engine validates orders against."""

    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    multiplier_up: Decimal
    multiplier_down: Decimal
    price_precision: int
    quantity_precision: int
    max_num_orders: int = 200
    max_num_algo_orders: int = 10


def filters_for(spec: SymbolSpec) -> FilterSet:
    tick = spec.tick_size
    return FilterSet(
        tick_size=tick,
        min_price=tick,
        max_price=(Decimal(str(spec.price)) * 100).quantize(tick),
        step_size=spec.step_size,
        min_qty=Decimal(spec.min_qty),
        max_qty=Decimal(spec.max_qty),
        market_step_size=spec.step_size,
        market_min_qty=Decimal(spec.min_qty),
        market_max_qty=Decimal(spec.market_max_qty),
        min_notional=Decimal(spec.min_notional),
        multiplier_up=Decimal("1.0500") if spec.tier in ("btc", "eth") else Decimal("1.1500"),
        multiplier_down=Decimal("0.9500") if spec.tier in ("btc", "eth") else Decimal("0.8500"),
        price_precision=spec.price_precision,
        quantity_precision=spec.quantity_precision,
    )


def _spec(
    symbol: str, price: float, tick: str, step: str, max_qty: str, market_max_qty: str,
    vol: float, beta: float, quote_volume: float, *, tier: str = "alt", min_notional: str = "5",
    min_qty: str | None = None, **extra: object,
) -> SymbolSpec:  # fmt: skip
    base = symbol.split("_")[0].removesuffix("USDT")
    return SymbolSpec(
        symbol=symbol,
        base_asset=base,
        price=price,
        tick=tick,
        step=step,
        min_qty=min_qty or step,
        max_qty=max_qty,
        market_max_qty=market_max_qty,
        min_notional=min_notional,
        vol=vol,
        beta=beta,
        quote_volume=quote_volume,
        tier=tier,
        **extra,  # type: ignore[arg-type]
    )


# Per-bar volatilities are hourly-like: BTC ~0.6 % per bar, mid caps ~1 %, small caps 1.5-2.5 %.
CATALOGUE: tuple[SymbolSpec, ...] = (
    _spec("BTCUSDT", 90_000, "0.10", "0.001", "1000", "120", 0.0, 1.0, 900e6, tier="btc",
          min_notional="100", price_precision_override=2),
    _spec("ETHUSDT", 3_000, "0.01", "0.001", "10000", "2000", 0.004, 1.15, 500e6, tier="eth",
          min_notional="20"),
    _spec("BNBUSDT", 650, "0.010", "0.01", "100000", "2000", 0.005, 0.8, 40e6, tier="major"),
    _spec("SOLUSDT", 180, "0.0100", "0.01", "1000000", "5000", 0.007, 1.3, 150e6, tier="major"),
    _spec("XRPUSDT", 2.2, "0.0001", "0.1", "10000000", "1000000", 0.007, 1.2, 120e6, tier="major"),
    _spec("DOGEUSDT", 0.18, "0.00001", "1", "50000000", "30000000", 0.009, 1.4, 90e6, tier="major"),
    _spec("ADAUSDT", 0.70, "0.0001", "1", "10000000", "5000000", 0.008, 1.3, 40e6),
    _spec("AVAXUSDT", 25.0, "0.0010", "1", "1000000", "50000", 0.009, 1.35, 30e6),
    _spec("LINKUSDT", 15.0, "0.001", "0.01", "1000000", "20000", 0.008, 1.25, 35e6),
    _spec("DOTUSDT", 4.0, "0.001", "0.1", "1000000", "100000", 0.008, 1.2, 15e6),
    _spec("LTCUSDT", 90.0, "0.01", "0.001", "100000", "5000", 0.007, 1.0, 25e6),
    _spec("BCHUSDT", 450.0, "0.01", "0.001", "10000", "850", 0.007, 1.0, 20e6),
    _spec("TRXUSDT", 0.25, "0.00001", "1", "50000000", "5000000", 0.005, 0.6, 12e6),
    _spec("TONUSDT", 3.0, "0.0001", "0.1", "10000000", "500000", 0.009, 0.9, 10e6),
    _spec("NEARUSDT", 3.0, "0.001", "1", "1000000", "150000", 0.010, 1.35, 14e6),
    _spec("APTUSDT", 6.0, "0.0001", "0.1", "1000000", "100000", 0.010, 1.35, 12e6),
    _spec("ARBUSDT", 0.45, "0.0001", "0.1", "10000000", "1000000", 0.011, 1.4, 14e6),
    _spec("OPUSDT", 0.90, "0.0001", "0.1", "10000000", "500000", 0.011, 1.4, 10e6),
    _spec("SUIUSDT", 3.5, "0.0001", "0.1", "10000000", "500000", 0.012, 1.5, 40e6),
    _spec("INJUSDT", 15.0, "0.001", "0.1", "1000000", "50000", 0.012, 1.45, 9e6),
    _spec("FILUSDT", 3.0, "0.001", "0.1", "1000000", "200000", 0.010, 1.2, 8e6),
    _spec("ATOMUSDT", 5.0, "0.001", "0.01", "1000000", "100000", 0.009, 1.2, 8e6),
    _spec("UNIUSDT", 9.0, "0.0010", "1", "1000000", "50000", 0.010, 1.3, 10e6),
    _spec("AAVEUSDT", 250.0, "0.010", "0.1", "100000", "2000", 0.011, 1.3, 18e6, quantity_precision_override=2),
    _spec("ETCUSDT", 18.0, "0.001", "0.01", "1000000", "20000", 0.009, 1.1, 8e6),
    _spec("XLMUSDT", 0.35, "0.00001", "1", "10000000", "2000000", 0.008, 1.1, 7e6),
    _spec("HBARUSDT", 0.22, "0.00001", "1", "10000000", "5000000", 0.011, 1.3, 9e6),
    _spec("WIFUSDT", 0.80, "0.0001", "0.1", "10000000", "1000000", 0.018, 1.8, 25e6, mover=0.02),
    _spec("1000PEPEUSDT", 0.010, "0.0000001", "1", "800000000", "80000000", 0.016, 1.7, 60e6),
    _spec("1000SHIBUSDT", 0.013, "0.000001", "1", "100000000", "10000000", 0.011, 1.4, 10e6),
    _spec("ENAUSDT", 0.50, "0.0001", "1", "10000000", "2000000", 0.016, 1.6, 20e6, mover=-0.015),
    _spec("SEIUSDT", 0.30, "0.0001", "1", "10000000", "2000000", 0.014, 1.5, 8e6),
    _spec("TIAUSDT", 3.0, "0.0010", "1", "1000000", "200000", 0.015, 1.5, 9e6),
    _spec("FETUSDT", 0.70, "0.0001", "1", "10000000", "1000000", 0.014, 1.5, 12e6),
    _spec("KAITOUSDT", 1.2, "0.0001", "1", "5000000", "500000", 0.025, 1.2, 15e6, tier="new",
          listed_bars=120),
    _spec("PLUMEUSDT", 0.10, "0.00001", "1", "20000000", "5000000", 0.028, 1.1, 8e6, tier="new",
          listed_bars=60),
    _spec("BTCUSDT_260626", 91_500, "0.10", "0.001", "500", "50", 0.0005, 1.0, 20e6, tier="btc",
          min_notional="5", price_precision_override=1, contract_type="CURRENT_QUARTER",
          delivery_date_ms=1_782_460_800_000),
)  # fmt: skip
