"""Configuration: defaults, sources, refusal of invalid values with the field named, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from ats.config import SIM_API_KEY, ConfigError, Venue, load_settings


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings()
    assert settings.venue is Venue.SIM
    assert settings.limits.max_concurrent_positions == 5
    assert settings.limits.max_position_size_usdt == 10000
    assert settings.limits.max_daily_loss_usdt == 2000
    assert settings.limits.max_leverage == 10
    assert settings.limits.min_order_size_usdt == 10
    assert (settings.levels.stop_pct, settings.levels.tp1_pct, settings.levels.tp2_pct) == (2, 4, 8)
    assert settings.min_score == 75
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
