"""Configuration: one pydantic-settings model from ATS_* environment variables and an optional TOML file.

Precedence (highest first): explicit arguments, environment (ATS_*, nested with "__", e.g.
ATS_LIMITS__MAX_LEVERAGE), the TOML file named by ATS_CONFIG, then defaults. Secrets are SecretStr and can
also come from files (ATS_EXCHANGE__API_SECRET_FILE) or from Prefect Secret blocks (ATS_EXCHANGE__API_SECRET_BLOCK),
which the shell (db/secrets.py) resolves: this module does not import Prefect.
Invalid values fail at load with `ConfigError`, whose message names each field, its variable and the rule.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ats.domain import BINANCE_INTERVALS
from ats.exchange.signing import make_signer
from ats.messages import Language
from ats.universe import UniverseConfig

ENV_PREFIX = "ATS_"
NESTED_DELIMITER = "__"


# The walk-forward on real Binance data (README, "Backtests") found no setting that beats its baselines; its test
# windows chose 85-90 most of the time. Until a model earns more, the default trades fewer, stronger signals.
DEFAULT_MIN_SCORE = 85.0


class Venue(StrEnum):
    SIM = "sim"
    TESTNET = "testnet"
    MAINNET = "mainnet"


# Binance's documented base URLs (binance-futures-api.md); all overridable.
DEFAULT_URLS: dict[Venue, tuple[str, str]] = {
    Venue.SIM: ("http://127.0.0.1:8765", "ws://127.0.0.1:8765"),
    Venue.TESTNET: ("https://demo-fapi.binance.com", "wss://fstream.binancefuture.com"),
    Venue.MAINNET: ("https://fapi.binance.com", "wss://fstream.binance.com"),
}

# The drivers a database URL may name; the database layer (db.session.normalise_url) always uses psycopg 3.
POSTGRES_DRIVERS = ("postgresql+psycopg", "postgresql", "postgres", "postgresql+psycopg2")

# The simulated exchange's own key pair: a local paper-trading credential, not a secret of anyone's.
SIM_API_KEY = "ats-sim-api-key"
SIM_API_SECRET = "ats-sim-api-secret"  # noqa: S105


class ConfigError(ValueError):
    """Invalid configuration. The message names every offending field and never echoes a secret."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExchangeSettings(_Section):
    rest_url: str | None = Field(None, description="REST base URL; default depends on the venue")
    ws_url: str | None = Field(None, description="WebSocket base URL (paths /market, /public, /private)")
    api_key: SecretStr | None = Field(None, description="API key (X-MBX-APIKEY)")
    api_secret: SecretStr | None = Field(None, description="API secret (HMAC) or Ed25519 private key (PEM)")
    api_key_file: Path | None = Field(None, description="File holding the API key")
    api_secret_file: Path | None = Field(None, description="File holding the API secret")
    api_key_block: str | None = Field(None, description="Name of a Prefect Secret block holding the API key")
    api_secret_block: str | None = Field(None, description="Name of a Prefect Secret block holding the API secret")
    key_type: Literal["hmac", "ed25519"] = "hmac"
    recv_window_ms: int = Field(5000, ge=100, le=60000, description="recvWindow; Binance advises <= 5000")
    timeout_s: float = Field(10.0, gt=0, le=120)
    weight_limit_per_minute: int = Field(2400, ge=1, description="REQUEST_WEIGHT per IP per minute")
    weight_safety_margin: float = Field(0.2, ge=0, lt=1, description="fraction of the budget kept unused")
    protective_reserve: float = Field(
        0.15,
        ge=0,
        lt=1,
        description="fraction of the weight and order limits that only stops, closes and reconciliation may use",
    )
    time_resync_s: float = Field(300.0, gt=0, description="server-time offset re-measure period")

    @model_validator(mode="after")
    def _read_secret_files(self) -> Self:
        _fill_secrets_from_files(self, ("api_key", "api_secret"))
        return self

    @model_validator(mode="after")
    def _budget_left(self) -> Self:
        if self.weight_safety_margin + self.protective_reserve >= 1:
            raise ValueError("weight_safety_margin + protective_reserve must stay below 1 (nothing left to use)")
        return self


def _fill_secrets_from_files(section: BaseModel, names: tuple[str, ...]) -> None:
    """For each secret left unset, read `<name>_file` if given (keeps secrets out of the environment)."""
    for name in names:
        path: Path | None = getattr(section, f"{name}_file")
        if path is not None and getattr(section, name) is None:
            try:
                value = path.expanduser().read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read {name}_file {path}: {exc.strerror}") from None
            object.__setattr__(section, name, SecretStr(value))


class RiskLimits(_Section):
    max_concurrent_positions: int = Field(5, ge=1, le=100)
    max_position_size_usdt: Decimal = Field(Decimal(10000), gt=0, description="max notional per position")
    max_daily_loss_usdt: Decimal = Field(
        Decimal(2000), gt=0, description="cap on today's realised loss plus every open position's loss at its stop"
    )
    max_leverage: int = Field(10, ge=1, le=125)
    leverage: int = Field(5, ge=1, le=125, description="leverage for medium signals; stronger ones scale up")
    min_order_size_usdt: Decimal = Field(Decimal(10), gt=0)
    risk_per_trade_pct: Decimal = Field(
        Decimal(1), gt=0, le=10, description="equity % lost if the stop is hit; caps the position size"
    )

    @field_validator("leverage")
    @classmethod
    def _leverage_within_max(cls, value: int, info: ValidationInfo) -> int:
        maximum = info.data.get("max_leverage")
        if maximum is not None and value > maximum:
            raise ValueError(f"must not exceed max_leverage ({maximum})")
        return value

    @field_validator("min_order_size_usdt")
    @classmethod
    def _min_below_max(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        maximum = info.data.get("max_position_size_usdt")
        if maximum is not None and value > maximum:
            raise ValueError(f"must not exceed max_position_size_usdt ({maximum})")
        return value


class LevelSettings(_Section):
    """Base levels in percent of the entry price and the factor adjustments (factors.md)."""

    stop_pct: Decimal = Field(Decimal(2), gt=0, lt=50)
    tp1_pct: Decimal = Field(Decimal(4), gt=0, lt=100)
    tp2_pct: Decimal = Field(Decimal(8), gt=0, lt=200)
    tp1_close_fraction: Decimal = Field(Decimal("0.5"), gt=0, lt=1)
    strong_signal_score: float = Field(80, ge=0, le=100, description="strength at which a signal counts as strong")
    strong_stop_tighten: Decimal = Field(Decimal("0.2"), ge=0, lt=1)
    strong_target_extend: Decimal = Field(Decimal("0.3"), ge=0, le=5)
    strong_trend: float = Field(50, ge=0, le=100, description="|T| at which the trend counts as strong")
    trend_target_extend: Decimal = Field(Decimal("0.2"), ge=0, le=5)
    good_liquidity: float = Field(70, ge=0, le=100, description="L at which liquidity counts as good")
    liquidity_stop_tighten: Decimal = Field(Decimal("0.1"), ge=0, lt=1)
    high_volatility_atr_pct: Decimal = Field(Decimal("0.03"), gt=0, description="ATR/price above this is high")
    volatility_stop_widen: Decimal = Field(Decimal("0.5"), ge=0, le=5)

    @field_validator("tp2_pct")
    @classmethod
    def _beyond_tp1(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        tp1 = info.data.get("tp1_pct")
        if tp1 is not None and value <= tp1:
            raise ValueError(f"must be above tp1_pct ({tp1})")
        return value


class TelegramSettings(_Section):
    token: SecretStr | None = Field(None, description="Bot token; when unset, notifications go to the log only")
    token_file: Path | None = Field(None, description="File holding the bot token")
    token_block: str | None = Field(None, description="Name of a Prefect Secret block holding the bot token")
    chat_id: str | None = None
    api_url: str = "https://api.telegram.org"
    commands: bool = Field(True, description="the leading monitor answers commands from chat_id (/status, ...)")
    poll_s: float = Field(25.0, ge=1, le=50, description="getUpdates long-poll: how long one request waits")

    @model_validator(mode="after")
    def _read_secret_files(self) -> Self:
        _fill_secrets_from_files(self, ("token",))
        return self


# What a strong opposite signal does to an open position (ats.risk.reversal_response).
OnReversal = Literal["tighten", "close", "ignore"]


class MonitorSettings(_Section):
    health_host: str = "127.0.0.1"
    health_port: int = Field(8787, ge=0, le=65535, description="0 picks a free port")
    reconcile_interval_s: float = Field(180.0, gt=0)
    watchdog_interval_s: float = Field(5.0, gt=0)
    lease_s: float = Field(
        10.0, ge=2, le=120, description="leader lease: a standby takes over this long after the leader stops renewing"
    )
    stream_stale_after_s: float = Field(30.0, gt=0)
    listen_key_keepalive_s: float = Field(1800.0, gt=0, lt=3600)
    on_reversal: OnReversal = "tighten"
    reversal_score: float = Field(70, ge=0, le=100, description="opposite-direction strength that counts")


class WatchdogSettings(_Section):
    """When the watchdog (the monitor, and the scheduled watchdog flow) tells a person that something is wrong."""

    heartbeat_stale_s: float = Field(30.0, ge=10, description="a monitor heartbeat older than this: monitor down")
    unready_alert_s: float = Field(60.0, ge=0, description="active monitor not ready this long, positions open")
    cycle_overdue_min: float | None = Field(
        None, ge=0, description="no completed trading cycle this long; default one bar interval + 5; 0: no check"
    )
    check_interval_s: float = Field(15.0, gt=0, description="how often each monitor process runs the checks")


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("ats", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    venue: Venue = Field(Venue.SIM, description="sim (default, local paper trading), testnet or mainnet")
    allow_mainnet: bool = Field(False, description="must be true to trade on mainnet")
    account: str = Field("main", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    database_url: SecretStr | None = Field(None, description="postgresql+psycopg://...; unset = embedded")
    data_dir: Path = Field(default_factory=_default_data_dir)
    bar_interval: str = Field("1h", description="primary kline interval")
    min_score: float = Field(DEFAULT_MIN_SCORE, ge=0, le=100)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"
    language: Language = Field("en", description="messages and reports: en (English) or zh (Chinese)")
    exchange: ExchangeSettings = ExchangeSettings()
    limits: RiskLimits = RiskLimits()
    levels: LevelSettings = LevelSettings()
    telegram: TelegramSettings = TelegramSettings()
    monitor: MonitorSettings = MonitorSettings()
    watchdog: WatchdogSettings = WatchdogSettings()
    universe: UniverseConfig = Field(default_factory=UniverseConfig, description="Elite/Overlay pool thresholds")

    @field_validator("bar_interval")
    @classmethod
    def _known_interval(cls, value: str) -> str:
        if value not in BINANCE_INTERVALS:
            raise ValueError(f"must be one of {', '.join(BINANCE_INTERVALS)}")
        return value

    @field_validator("allow_mainnet")
    @classmethod
    def _mainnet_opt_in(cls, value: bool, info: ValidationInfo) -> bool:
        if info.data.get("venue") is Venue.MAINNET and not value:
            raise ValueError("venue 'mainnet' trades real money and needs the explicit opt-in ATS_ALLOW_MAINNET=true")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        problem = None if value is None else database_url_problem(value.get_secret_value())
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        """Checks across fields, each message naming its own setting."""
        problems = [*mainnet_destination_problems(self), *api_secret_problems(self.exchange)]
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("ATS_CONFIG")
        if config_file:
            sources.append(_config_file_source(settings_cls, Path(config_file)))
        return tuple(sources)

    # ------------------------------------------------------------------------------------------ derived

    @property
    def rest_url(self) -> str:
        return (self.exchange.rest_url or DEFAULT_URLS[self.venue][0]).rstrip("/")

    @property
    def ws_url(self) -> str:
        return (self.exchange.ws_url or DEFAULT_URLS[self.venue][1]).rstrip("/")

    def secret_values(self) -> list[str]:
        """Every secret set in this configuration, for the log redaction to know (ats.log.register_secret)."""
        sections = (self, self.exchange, self.telegram)
        values = [getattr(section, name) for section in sections for name in type(section).model_fields]
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr) and v.get_secret_value()]

    def secret_blocks(self) -> dict[tuple[str, str], str]:
        """Secrets still to be read from Prefect Secret blocks: (section, field) -> block name."""
        wanted = {
            ("exchange", "api_key"): self.exchange.api_key_block,
            ("exchange", "api_secret"): self.exchange.api_secret_block,
            ("telegram", "token"): self.telegram.token_block,
        }
        return {
            place: name for place, name in wanted.items() if name and getattr(getattr(self, place[0]), place[1]) is None
        }

    def with_secrets(self, values: dict[tuple[str, str], str]) -> Settings:
        """A copy with secrets filled in (from Prefect Secret blocks), leaving everything else as it is."""
        sections: dict[str, dict[str, SecretStr]] = {}
        for (section, name), value in values.items():
            sections.setdefault(section, {})[name] = SecretStr(value)
        update = {section: getattr(self, section).model_copy(update=fields) for section, fields in sections.items()}
        filled = self.model_copy(update=update)
        problems = api_secret_problems(filled.exchange)
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
        return filled

    def api_credentials(self) -> tuple[SecretStr, SecretStr]:
        """The key pair to sign with; the sim's own pair when trading on the sim without keys."""
        key, secret = self.exchange.api_key, self.exchange.api_secret
        if key is not None and secret is not None:
            return key, secret
        if self.venue is Venue.SIM:
            return SecretStr(SIM_API_KEY), SecretStr(SIM_API_SECRET)
        missing = "ATS_EXCHANGE__API_KEY" if key is None else "ATS_EXCHANGE__API_SECRET"
        raise ConfigError(f"exchange.api_key/api_secret: {missing} is required for venue '{self.venue}'")

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, secrets shown as '**********' (or unset)."""
        masked: dict[str, Any] = _mask(self.model_dump(mode="python"))
        return masked


def _config_file_source(settings_cls: type[BaseSettings], path: Path) -> TomlConfigSettingsSource:
    """The TOML file ATS_CONFIG names. One that is missing or unreadable is refused: its limits were meant."""
    if not path.is_file():
        raise ConfigError(f"ATS_CONFIG names {path}, which {'is not a file' if path.exists() else 'does not exist'}")
    try:
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    except OSError as exc:
        raise ConfigError(f"ATS_CONFIG names {path}, which cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"ATS_CONFIG names {path}, which is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:  # its message gives the place and at most one character, no value
        raise ConfigError(f"ATS_CONFIG names {path}, which is not valid TOML: {exc}") from None


def is_binance_production(url: str) -> bool:
    """Whether a URL goes to Binance's real-money exchange: binance.com or any of its hosts (fapi, fstream,
    ws-fapi, ...) except the demo-trading ones (demo-fapi.binance.com); the testnet lives on binancefuture.com."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return False
    if host != "binance.com" and not host.endswith(".binance.com"):
        return False
    return not host.startswith("demo-")


def mainnet_destination_problems(settings: Settings) -> list[str]:
    """The opt-in follows where the orders go, not the venue's name: a production URL needs ATS_ALLOW_MAINNET."""
    if settings.allow_mainnet or settings.venue is Venue.MAINNET:  # mainnet without the opt-in is refused apart
        return []
    urls = {"rest_url": settings.exchange.rest_url, "ws_url": settings.exchange.ws_url}
    return [
        f"{where(('exchange', name))}: {urlsplit(url).hostname} is Binance's production exchange (real money) "
        f"while the venue is '{settings.venue}'; trading there needs the explicit opt-in ATS_ALLOW_MAINNET=true"
        for name, url in urls.items()
        if url and is_binance_production(url)
    ]


def api_secret_problems(exchange: ExchangeSettings) -> list[str]:
    """A secret that cannot sign with the key type chosen, found at load rather than at the first signed request."""
    secret = exchange.api_secret
    if secret is None:
        return []
    setting = f"{where(('exchange', 'api_secret'))} (or its _FILE or _BLOCK)"
    if exchange.key_type == "ed25519":
        try:
            make_signer(secret, exchange.key_type)
        except ValueError as exc:  # the message never quotes the key
            return [f"{setting}: {exc}; ATS_EXCHANGE__KEY_TYPE=ed25519 needs one in PKCS#8 PEM"]
    elif secret.get_secret_value().lstrip().startswith("-----BEGIN"):
        return [f"{setting}: a PEM private key, but the key type is 'hmac'; set ATS_EXCHANGE__KEY_TYPE=ed25519"]
    return []


def database_url_problem(url: str) -> str | None:
    """Why a database URL cannot work, without quoting it (it holds the password); None when it may."""
    example = "postgresql+psycopg://user:password@host:5432/database"
    scheme, separator, _ = url.partition("://")
    if not separator:
        return f"not a database URL; expected {example}"
    if scheme not in POSTGRES_DRIVERS:
        shown = f" {scheme!r}" if scheme.replace("+", "").isalnum() and len(scheme) <= 40 else ""
        return f"unsupported driver{shown}: PostgreSQL with psycopg 3 only, {example}"
    try:
        port = urlsplit(url).port
    except ValueError:  # its message quotes what stood in the port's place: perhaps part of the password
        port = -1
    return f"the port is not a number; expected {example}" if port == -1 else None


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, Path | Decimal | StrEnum):
        return str(value)
    return value


def env_name(loc: tuple[str | int, ...]) -> str:
    return ENV_PREFIX + NESTED_DELIMITER.join(str(part).upper() for part in loc)


def where(loc: tuple[str | int, ...]) -> str:
    """How an error names a setting: its field path and its environment variable."""
    return f"{'.'.join(str(p) for p in loc)} ({env_name(loc)})"


def _secret_field(loc: tuple[str | int, ...]) -> bool:
    model: Any = Settings
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return False
        annotation = fields[part].annotation
        if annotation in (SecretStr, SecretStr | None):
            return True
        model = annotation
    return False


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: field path, environment variable, rule; values shown only if not secret."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if p != "__root__")
        message = err["msg"].removeprefix("Value error, ")
        # A check across fields (Settings._coherent) names its fields itself.
        lines.append(f"{where(loc)}: {message}" if loc else message)
        # An unknown name (a typo) may well be a secret's: only a known, non-secret field shows its value.
        unknown = err["type"] == "extra_forbidden"
        ctx_input = err.get("input") if not (unknown or _secret_field(loc)) else None
        if ctx_input is not None and not isinstance(ctx_input, dict):
            lines[-1] += f" (got {ctx_input!r})"
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Load and validate the configuration, raising ConfigError with a readable message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
