"""Configuration: defaults, sources, refusal of invalid values with the field named, secrets masked."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ats.config import (
    DEFAULT_URLS,
    SIM_API_KEY,
    ConfigError,
    Venue,
    database_url_problem,
    is_binance_production,
    load_settings,
)


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings()
    assert settings.venue is Venue.SIM
    assert settings.limits.max_concurrent_positions == 5
    assert settings.limits.max_position_size_usdt == 10000
    assert settings.limits.max_daily_loss_usdt == 2000
    assert settings.limits.max_leverage == 10
    assert settings.limits.min_order_size_usdt == 10
    assert (settings.levels.stop_pct, settings.levels.tp1_pct, settings.levels.tp2_pct) == (
        Decimal(2),
        Decimal(4),
        Decimal(8),
    )
    assert settings.min_score == 85
    assert settings.bar_interval == "1h"
    assert settings.rest_url == "http://127.0.0.1:8765"
    assert settings.api_credentials()[0].get_secret_value() == SIM_API_KEY


@pytest.mark.parametrize(
    ("env", "field", "variable"),
    [
        ({"ATS_LIMITS__LEVERAGE": "50", "ATS_LIMITS__MAX_LEVERAGE": "10"}, "limits.leverage", "ATS_LIMITS__LEVERAGE"),
        ({"ATS_LIMITS__MAX_LEVERAGE": "200"}, "limits.max_leverage", "ATS_LIMITS__MAX_LEVERAGE"),
        ({"ATS_LIMITS__MAX_DAILY_LOSS_USDT": "-5"}, "limits.max_daily_loss_usdt", "ATS_LIMITS__MAX_DAILY_LOSS_USDT"),
        ({"ATS_LIMITS__MAX_POSITION_SIZE_USDT": "-1"}, "limits.max_position_size_usdt", None),
        ({"ATS_LIMITS__MAX_CONCURRENT_POSITIONS": "0"}, "limits.max_concurrent_positions", None),
        ({"ATS_VENUE": "kraken"}, "venue", "ATS_VENUE"),
        ({"ATS_VENUE": "mainnet"}, "allow_mainnet", "ATS_ALLOW_MAINNET"),
        ({"ATS_MIN_SCORE": "101"}, "min_score", "ATS_MIN_SCORE"),
        ({"ATS_BAR_INTERVAL": "7m"}, "bar_interval", "ATS_BAR_INTERVAL"),
        ({"ATS_LEVELS__TP1_PCT": "9", "ATS_LEVELS__TP2_PCT": "8"}, "levels.tp2_pct", "ATS_LEVELS__TP2_PCT"),
        (
            {"ATS_EXCHANGE__WEIGHT_SAFETY_MARGIN": "0.5", "ATS_EXCHANGE__PROTECTIVE_RESERVE": "0.5"},
            "protective_reserve",
            "ATS_EXCHANGE",
        ),
    ],
)
def test_invalid_values_are_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str, variable: str | None
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert field in message
    if variable:
        assert variable in message


def test_mainnet_needs_the_explicit_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATS_VENUE", "mainnet")
    with pytest.raises(ConfigError, match="ATS_ALLOW_MAINNET=true"):
        load_settings()
    monkeypatch.setenv("ATS_ALLOW_MAINNET", "true")
    settings = load_settings()
    assert settings.venue is Venue.MAINNET
    assert settings.rest_url == "https://fapi.binance.com"
    with pytest.raises(ConfigError, match="ATS_EXCHANGE__API_KEY"):
        settings.api_credentials()


def test_toml_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ats.toml"
    config.write_text('venue = "testnet"\nmin_score = 80\n[limits]\nmax_leverage = 7\nleverage = 3\n')
    monkeypatch.setenv("ATS_CONFIG", str(config))
    monkeypatch.setenv("ATS_MIN_SCORE", "85")
    settings = load_settings()
    assert settings.venue is Venue.TESTNET
    assert settings.limits.max_leverage == 7
    assert settings.min_score == 85


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ats.toml"
    config.write_text("[limits]\nmax_levrage = 7\n")
    monkeypatch.setenv("ATS_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"limits\.max_levrage"):
        load_settings()


def test_secret_files_are_read(tmp_path: Path) -> None:
    key, secret = tmp_path / "key", tmp_path / "secret"
    key.write_text("file-key\n")
    secret.write_text("file-secret\n")
    settings = load_settings(exchange={"api_key_file": key, "api_secret_file": secret})
    api_key, api_secret = settings.api_credentials()
    assert (api_key.get_secret_value(), api_secret.get_secret_value()) == ("file-key", "file-secret")


@pytest.mark.parametrize("venue", ["testnet", "sim"])
@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("ATS_EXCHANGE__REST_URL", "https://fapi.binance.com"),
        ("ATS_EXCHANGE__REST_URL", "https://FAPI.Binance.com.:443/"),
        ("ATS_EXCHANGE__WS_URL", "wss://fstream.binance.com"),
        ("ATS_EXCHANGE__WS_URL", "wss://ws-fapi.binance.com/ws-fapi/v1"),
    ],
)
def test_a_production_destination_needs_the_mainnet_opt_in_whatever_the_venue(
    monkeypatch: pytest.MonkeyPatch, venue: str, variable: str, url: str
) -> None:
    """Hole 6 of issue 16: the opt-in followed the venue's name, so testnet pointed at fapi.binance.com traded."""
    monkeypatch.setenv("ATS_VENUE", venue)
    monkeypatch.setenv(variable, url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert variable in str(caught.value)
    assert "ATS_ALLOW_MAINNET=true" in str(caught.value)
    monkeypatch.setenv("ATS_ALLOW_MAINNET", "true")
    assert load_settings().venue == venue


@pytest.mark.parametrize(
    ("url", "production"),
    [
        ("https://fapi.binance.com", True),
        ("https://binance.com", True),
        ("wss://fstream.binance.com/private/ws/x", True),
        ("https://demo-fapi.binance.com", False),
        ("wss://fstream.binancefuture.com", False),
        ("https://testnet.binancefuture.com", False),
        ("http://127.0.0.1:8765", False),
        ("https://notbinance.com", False),
        ("https://fapi.binance.com.evil.example", False),
        ("http://[::1", False),
    ],
)
def test_binance_production_hosts(url: str, production: bool) -> None:
    assert is_binance_production(url) is production


def test_the_testnet_defaults_need_no_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATS_VENUE", "testnet")
    settings = load_settings()
    assert (settings.rest_url, settings.ws_url) == DEFAULT_URLS[Venue.TESTNET]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "which does not exist"),
        ('venue = "sim\n', "which is not valid TOML: Illegal character"),
        (b"\xff\xfe", "which is not UTF-8 text"),
    ],
)
def test_a_config_file_that_cannot_be_used_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes | None, expected: str
) -> None:
    """Hole 8 of issue 16: a missing ATS_CONFIG file was skipped, leaving the default limits in force."""
    config = tmp_path / "ats.toml"
    if isinstance(content, str):
        config.write_text(content)
    elif isinstance(content, bytes):
        config.write_bytes(content)
    monkeypatch.setenv("ATS_CONFIG", str(config))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(f"ATS_CONFIG names {config}, {expected}")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg3://ats:hunter2@db:5432/ats", "unsupported driver 'postgresql+psycopg3'"),
        ("mysql://ats:hunter2@db/ats", "unsupported driver 'mysql'"),
        ("ats:hunter2@db/ats", "not a database URL"),
        ("postgresql://ats:hun/ter2@db/ats", "the port is not a number"),
    ],
)
def test_a_database_url_that_cannot_work_is_refused_without_quoting_it(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    monkeypatch.setenv("ATS_DATABASE_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert f"database_url (ATS_DATABASE_URL): {expected}" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "hun/ter2" not in str(caught.value)


@pytest.mark.parametrize("url", ["postgres://a@h/d", "postgresql://a@h:5432/d", "postgresql+psycopg://a:b@h/d"])
def test_postgres_urls_are_accepted(url: str) -> None:
    assert database_url_problem(url) is None


def _ed25519_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def test_an_api_secret_that_cannot_sign_is_refused_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATS_EXCHANGE__API_KEY", "key")
    monkeypatch.setenv("ATS_EXCHANGE__KEY_TYPE", "ed25519")
    monkeypatch.setenv("ATS_EXCHANGE__API_SECRET", "sentinel-not-a-pem")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "exchange.api_secret (ATS_EXCHANGE__API_SECRET)" in str(caught.value)
    assert "not a PEM Ed25519 private key" in str(caught.value)
    assert "sentinel" not in str(caught.value)

    monkeypatch.setenv("ATS_EXCHANGE__KEY_TYPE", "hmac")
    monkeypatch.setenv("ATS_EXCHANGE__API_SECRET", _ed25519_pem())
    with pytest.raises(ConfigError, match="set ATS_EXCHANGE__KEY_TYPE=ed25519"):
        load_settings()
    monkeypatch.setenv("ATS_EXCHANGE__KEY_TYPE", "ed25519")
    assert load_settings().exchange.key_type == "ed25519"


def test_a_secret_from_a_block_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATS_EXCHANGE__KEY_TYPE", "ed25519")
    settings = load_settings()
    with pytest.raises(ConfigError, match="not a PEM Ed25519 private key"):
        settings.with_secrets({("exchange", "api_secret"): "sentinel-not-a-pem"})
    filled = settings.with_secrets({("exchange", "api_secret"): _ed25519_pem()})
    assert filled.exchange.api_secret is not None
