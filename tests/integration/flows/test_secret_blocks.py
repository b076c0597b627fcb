"""API keys kept in Prefect Secret blocks: the flows (and the monitor, through the same helper) read them there."""

from __future__ import annotations

import asyncio

import pytest
from prefect.blocks.system import Secret
from typer.testing import CliRunner

from ats.cli import app
from ats.config import SIM_API_KEY, SIM_API_SECRET, ConfigError, load_settings
from flows.account_status import account_status
from tasks.secrets import with_secret_blocks
from tests.integration.flows.conftest import FlowEnv, run


async def test_a_flow_signs_with_the_key_pair_from_secret_blocks(
    flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    await Secret(value=SIM_API_KEY).save("ats-test-api-key", overwrite=True)
    await Secret(value=SIM_API_SECRET).save("ats-test-api-secret", overwrite=True)
    monkeypatch.setenv("ATS_EXCHANGE__API_KEY_BLOCK", "ats-test-api-key")
    monkeypatch.setenv("ATS_EXCHANGE__API_SECRET_BLOCK", "ats-test-api-secret")

    settings = await with_secret_blocks(load_settings())
    assert settings.exchange.api_secret is not None
    assert settings.exchange.api_secret.get_secret_value() == SIM_API_SECRET
    state = await run(account_status)
    assert state.is_completed(), state.message

    # Proof that the flow signed with the block's secret (the sim venue would otherwise use its own pair).
    await Secret(value="not-the-secret").save("ats-test-api-secret", overwrite=True)
    state = await run(account_status)
    assert state.is_failed()
    assert "not-the-secret" not in str(state.message)


async def test_a_missing_block_is_a_configuration_error(flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATS_EXCHANGE__API_SECRET_BLOCK", "no-such-block")
    with pytest.raises(ConfigError, match=r"exchange\.api_secret_block"):
        await with_secret_blocks(load_settings())


async def test_a_secret_given_directly_wins_over_its_block(flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATS_EXCHANGE__API_SECRET", "direct")
    monkeypatch.setenv("ATS_EXCHANGE__API_SECRET_BLOCK", "no-such-block")
    settings = await with_secret_blocks(load_settings())
    assert settings.exchange.api_secret is not None
    assert settings.exchange.api_secret.get_secret_value() == "direct"


async def test_test_connection_sees_the_bot_token_in_its_block(
    flow_env: FlowEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "123456789:AAF-sentinel_block_token"  # a fake: an example token shape
    await Secret(value=token).save("ats-test-bot-token", overwrite=True)
    monkeypatch.setenv("ATS_TELEGRAM__TOKEN_BLOCK", "ats-test-bot-token")
    monkeypatch.setenv("ATS_TELEGRAM__CHAT_ID", "-100123")
    result = await asyncio.to_thread(CliRunner().invoke, app, ["test-connection"])
    assert result.exit_code == 0, result.output
    (notifications,) = [line for line in result.output.splitlines() if "notifications" in line]
    assert "Telegram" in notifications
    assert "console" not in notifications
    assert token.split(":")[1] not in result.output
