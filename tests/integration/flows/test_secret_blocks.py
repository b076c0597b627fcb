"""API keys kept in Prefect Secret blocks: the flows (and the monitor, through the same helper) read them there."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prefect.blocks.system import Secret
from typer.testing import CliRunner

from ats.config import SIM_API_KEY, SIM_API_SECRET, ConfigError, load_settings
from cli import app
from db.secrets import with_secret_blocks
from flows.account_status import account_status
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


BLOCK_TOKEN = "123456789:AAF-sentinel_block_token"  # a fake: an example token shape


@pytest.fixture
def bot_api() -> Iterator[str]:
    """A loopback getMe that knows only BLOCK_TOKEN (401 for any other, as Telegram answers)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            known = self.path == f"/bot{BLOCK_TOKEN}/getMe"
            body = {"ok": True, "result": {"username": "ats_test_bot"}} if known else {"ok": False, "error_code": 401}
            payload = json.dumps(body).encode()
            self.send_response(200 if known else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_test_connection_sees_the_bot_token_in_its_block(
    flow_env: FlowEnv, bot_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await Secret(value=BLOCK_TOKEN).save("ats-test-bot-token", overwrite=True)
    monkeypatch.setenv("ATS_TELEGRAM__TOKEN_BLOCK", "ats-test-bot-token")
    monkeypatch.setenv("ATS_TELEGRAM__CHAT_ID", "-100123")
    monkeypatch.setenv("ATS_TELEGRAM__API_URL", bot_api)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["test-connection"])
    assert result.exit_code == 0, result.output
    (telegram,) = [line for line in result.output.splitlines() if "Telegram" in line]
    assert "@ats_test_bot answers getMe" in telegram  # the bot answered to the block's token
    assert BLOCK_TOKEN.split(":")[1] not in result.output

    await Secret(value="123456789:AAF-not_the_right_token").save("ats-test-bot-token", overwrite=True)
    refused = await asyncio.to_thread(CliRunner().invoke, app, ["test-connection"])
    assert refused.exit_code == 1, refused.output
    assert "the bot token was refused" in refused.output
