"""A configuration that cannot work stops every command with one readable line and exit code 2, never a
traceback and never a secret (issue 16, holes 6 and 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]
SENTINEL = "sentinel-7f3a9"
COMMANDS = [["status"], ["config", "show"], ["monitor"], ["run-cycle"]]

# Each case: the environment that breaks the configuration, and what the error line says.
CASES: dict[str, tuple[dict[str, str], str]] = {
    "missing file": ({"ATS_CONFIG": "{tmp}/missing.toml"}, "ATS_CONFIG names {tmp}/missing.toml, which does not exist"),
    "malformed file": ({"ATS_CONFIG": "{tmp}/bad.toml"}, "ATS_CONFIG names {tmp}/bad.toml, which is not valid TOML"),
    "wrong ed25519 key": (
        {"ATS_EXCHANGE__KEY_TYPE": "ed25519", "ATS_EXCHANGE__API_KEY": "key", "ATS_EXCHANGE__API_SECRET": SENTINEL},
        "exchange.api_secret (ATS_EXCHANGE__API_SECRET) (or its _FILE or _BLOCK): the API secret is not a PEM",
    ),
    "mistyped driver": (
        {"ATS_DATABASE_URL": f"postgresql+psycopg3://ats:{SENTINEL}@127.0.0.1:5432/ats"},
        "database_url (ATS_DATABASE_URL): unsupported driver 'postgresql+psycopg3'",
    ),
    "mysql": ({"ATS_DATABASE_URL": f"mysql://ats:{SENTINEL}@127.0.0.1/ats"}, "unsupported driver 'mysql'"),
    "testnet at fapi.binance.com": (
        {"ATS_VENUE": "testnet", "ATS_EXCHANGE__REST_URL": "https://fapi.binance.com"},
        "exchange.rest_url (ATS_EXCHANGE__REST_URL): fapi.binance.com is Binance's production exchange",
    ),
}


def _environment(case: str, tmp_path: Path) -> tuple[dict[str, str], str]:
    (tmp_path / "bad.toml").write_text("[limits]\nmax_leverage = \n")
    env, expected = CASES[case]
    return {k: v.format(tmp=tmp_path) for k, v in env.items()}, expected.format(tmp=tmp_path)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("case", CASES)
def test_every_command_refuses_the_configuration_in_one_line(
    case: str, command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, expected = _environment(case, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert SENTINEL not in result.output


@pytest.mark.parametrize("case", CASES)
def test_the_real_command_exits_2_with_the_reason_and_no_traceback(case: str, tmp_path: Path) -> None:
    env, expected = _environment(case, tmp_path)
    command = COMMANDS[list(CASES).index(case) % len(COMMANDS)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    environment.update(env, PYTHONPATH=str(ROOT), ATS_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run(
        [sys.executable, "-c", "from cli import main; main()", *command],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert expected in "\n".join(lines), done.stderr
    assert len(lines) <= 2  # "error: invalid configuration:" and the setting's line, or one line
    assert "Traceback" not in done.stderr
    assert SENTINEL not in done.stderr
