"""A sentinel secret must never show: not in `ats config show`, not in logs, not in exception messages."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from ats.config import ConfigError, load_settings
from ats.log import configure_logging, get_logger, redact
from cli import app

SENTINEL_SECRET = "SENTINEL-secret-7f3a9c2e1b"
SENTINEL_KEY = "SENTINEL-key-0d4e8b6a5c"
SENTINEL_TOKEN = "123456789:AAH-SENTINELtokenSENTINELtoken1234"


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATS_EXCHANGE__API_SECRET", SENTINEL_SECRET)
    monkeypatch.setenv("ATS_EXCHANGE__API_KEY", SENTINEL_KEY)
    monkeypatch.setenv("ATS_TELEGRAM__TOKEN", SENTINEL_TOKEN)


@pytest.mark.usefixtures("secret_env")
@pytest.mark.parametrize("args", [["config", "show"], ["config", "show", "--json"]])
def test_config_show_masks_secrets(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for sentinel in (SENTINEL_SECRET, SENTINEL_KEY, SENTINEL_TOKEN):
        assert sentinel not in result.output
    assert "**********" in result.output


@pytest.mark.usefixtures("secret_env")
def test_settings_repr_and_validation_errors_hide_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert SENTINEL_SECRET not in repr(settings)
    assert SENTINEL_SECRET not in str(settings.model_dump())
    monkeypatch.setenv("ATS_LIMITS__MAX_LEVERAGE", "500")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert SENTINEL_SECRET not in str(caught.value)


def test_a_misspelt_secret_variable_is_refused_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATS_EXCHANGE__API_SECRT", SENTINEL_SECRET)
    with pytest.raises(ConfigError, match=r"exchange\.api_secrt") as caught:
        load_settings()
    assert SENTINEL_SECRET not in str(caught.value)


def test_logs_redact_registered_secrets_and_token_urls(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("DEBUG", "json", secrets=[SENTINEL_SECRET])
    log = get_logger("tests.secrets")
    with caplog.at_level(logging.DEBUG):
        log.info("calling", url=f"https://api.telegram.org/bot{SENTINEL_TOKEN}/sendMessage", secret=SENTINEL_SECRET)
        try:
            raise RuntimeError(f"failed with {SENTINEL_SECRET}")
        except RuntimeError:
            log.exception("boom")
        logging.getLogger("httpx").warning(
            "HTTP Request: POST https://api.telegram.org/bot%s/sendMessage", SENTINEL_TOKEN
        )
    text = caplog.text + "".join(str(getattr(r, "fields", "")) for r in caplog.records)
    assert SENTINEL_SECRET not in text
    assert SENTINEL_TOKEN not in text


def test_json_log_fields_that_are_not_text_are_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    """An exception (or any object) passed as a field prints as text in the JSON line: that text is redacted."""
    configure_logging("INFO", "json", secrets=[SENTINEL_SECRET])
    get_logger("tests.secrets").warning("request failed", error=RuntimeError(f"refused {SENTINEL_SECRET}"), code=-1)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert SENTINEL_SECRET not in line["error"]
    assert line["error"].startswith("refused ")
    assert line["code"] == -1


def test_redact_covers_signatures_and_database_passwords() -> None:
    text = redact("GET /fapi/v1/order?symbol=X&signature=" + "ab" * 32 + " postgresql+psycopg://u:hunter2@h/db")
    assert "ab" * 32 not in text
    assert "hunter2" not in text


@pytest.mark.usefixtures("secret_env")
def test_every_configured_secret_is_known_to_the_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATS_DATABASE_URL", "postgresql+psycopg://ats:pw-SENTINEL@db/ats")
    values = load_settings().secret_values()
    for sentinel in (SENTINEL_SECRET, SENTINEL_KEY, SENTINEL_TOKEN, "postgresql+psycopg://ats:pw-SENTINEL@db/ats"):
        assert sentinel in values
