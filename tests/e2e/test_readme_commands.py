"""The README's commands work as written: the paper-trading session runs against a simulated exchange.

Commands that need a live Binance venue (the testnet section) or start long-lived Prefect servers (covered by
the flow tests, which deploy prefect.yaml) are not run here; `make test` is CI itself and `make demo` has its
own test. The only liberty taken: the simulated exchange gets a free port instead of 8765, and every command is
pointed at it and at the test database through the environment, as a user would with ATS_* variables.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
ATS = [sys.executable, "-c", "from cli import main; main()"]
LONG_RUNNING = (("sim", "serve"), ("monitor",))


def sh_blocks() -> list[list[str]]:
    return [block.strip().splitlines() for block in re.findall(r"```sh\n(.*?)```", README, re.DOTALL)]


def ats_commands(block: list[str]) -> list[list[str]]:
    commands = []
    for line in block:
        code = line.split("#", 1)[0].strip()
        if code.startswith(".venv/bin/ats "):
            commands.append(shlex.split(code)[1:])
    return commands


def paper_trading_block() -> list[list[str]]:
    blocks = [ats_commands(b) for b in sh_blocks() if any("ats sim serve" in line for line in b)]
    assert len(blocks) == 1, "the README has one paper-trading session"
    return blocks[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url}: the process exited with {process.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")


def _stop(process: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM, then its exit code; killed (None) if it does not stop within 20 s."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


@pytest.fixture
def session_env(database_url_env, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    database_url_env()
    port = _free_port()
    env = {
        **os.environ,
        "ATS_EXCHANGE__REST_URL": f"http://127.0.0.1:{port}",
        "ATS_EXCHANGE__WS_URL": f"ws://127.0.0.1:{port}",
        "ATS_MONITOR__HEALTH_PORT": str(_free_port()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "SIM_PORT": str(port),
    }
    return env


def test_the_paper_trading_session_runs_as_written(session_env: dict[str, str], tmp_path: Path) -> None:
    commands = paper_trading_block()
    assert [c[0] for c in commands] == ["sim", "monitor", "test-connection", "run-cycle", "status"]
    background: list[subprocess.Popen[bytes]] = []
    try:
        for argv in commands:
            if tuple(argv[: len(LONG_RUNNING[0])]) == LONG_RUNNING[0]:
                argv = [*argv, "--port", session_env["SIM_PORT"]]
            if any(tuple(argv[: len(prefix)]) == prefix for prefix in LONG_RUNNING):
                log = (tmp_path / f"{argv[0]}.log").open("wb")
                process = subprocess.Popen([*ATS, *argv], cwd=tmp_path, env=session_env, stdout=log, stderr=log)
                background.append(process)
                if argv[0] == "sim":
                    _wait_http(f"{session_env['ATS_EXCHANGE__REST_URL']}/fapi/v1/ping", process)
                else:
                    _wait_http(f"http://127.0.0.1:{session_env['ATS_MONITOR__HEALTH_PORT']}/readyz", process)
                continue
            done = subprocess.run(
                [*ATS, *argv], cwd=tmp_path, env=session_env, capture_output=True, text=True, timeout=180, check=False
            )
            assert done.returncode == 0, f"ats {shlex.join(argv)}:\n{done.stdout}\n{done.stderr}"
            assert "Traceback" not in done.stderr
    finally:
        exit_codes = [_stop(process) for process in reversed(background)]
    assert exit_codes == [0, 0], "the monitor and the simulated exchange stop cleanly on SIGTERM"
    assert (tmp_path / "sim-account.json").exists(), "the simulated exchange keeps the paper account"


def test_every_command_in_the_table_exists() -> None:
    from typer.testing import CliRunner

    from cli import app

    listed = re.findall(r"^\| `ats ([a-z][a-z -]*?)(?: SYMBOL)?` \|", README, re.MULTILINE)
    assert len(listed) >= 10
    for command in listed:
        result = CliRunner().invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, f"ats {command}: {result.output}"
