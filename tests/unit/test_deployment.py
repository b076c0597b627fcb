"""docker-compose.yml, the Dockerfile and the systemd units: structure, images, commands and environment names.

There is no Docker engine here, so these are checked as documents: every service runs something that exists,
every ATS_* variable is a real setting, health checks are present, and the image contains what it runs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import BaseModel

from ats.cli import app
from ats.config import ENV_PREFIX, NESTED_DELIMITER, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ATS_IMAGE_SERVICES = [name for name, svc in SERVICES.items() if svc.get("image") == "ats:latest"]


def _setting_exists(variable: str) -> bool:
    """ATS_LIMITS__MAX_LEVERAGE -> Settings.limits.max_leverage, following nested sections."""
    path = variable.removeprefix(ENV_PREFIX).lower().split(NESTED_DELIMITER)
    model: Any = Settings
    for part in path:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return False
        model = fields[part].annotation
    return True


def _cli_command_exists(argv: list[str]) -> bool:
    command: Any = typer.main.get_command(app)
    for word in argv:
        if word.startswith("-"):
            break
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            return True  # a leaf command: the rest are its arguments
        if word not in subcommands:
            return False
        command = subcommands[word]
    return getattr(command, "commands", None) is None  # a group alone runs nothing


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_has_the_documented_services() -> None:
    assert {"postgres", "prefect-server", "worker", "monitor", "sim", "migrate", "deploy-flows"} <= set(SERVICES)
    assert SERVICES["sim"].get("profiles") == ["sim"], "the simulated exchange is optional (a profile)"
    assert "build" in SERVICES["migrate"], "one service builds the ats image"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_long_running_service_has_a_health_check(name: str) -> None:
    service = SERVICES[name]
    if name in ("migrate", "deploy-flows"):
        assert "restart" not in service, "one-shot jobs must not restart"
        return
    check = service.get("healthcheck", {}).get("test")
    assert check, f"{name} has no health check"
    assert check[0] in ("CMD", "CMD-SHELL")


@pytest.mark.parametrize("name", ATS_IMAGE_SERVICES)
def test_ats_services_run_real_commands(name: str) -> None:
    argv = SERVICES[name]["command"]
    assert isinstance(argv, list)
    commands = [shlex.split(part) for part in argv[2].split("&&")] if argv[:2] == ["sh", "-c"] else [argv]
    for command in commands:
        if command[0] == "ats":
            assert _cli_command_exists(command[1:]), f"{name}: `{shlex.join(command)}` is not an ats command"
        else:
            assert command[0] == "prefect", f"{name}: unexpected program {command[0]}"


@pytest.mark.parametrize("name", ATS_IMAGE_SERVICES)
def test_environment_names_are_real_settings(name: str) -> None:
    for variable in _environment(SERVICES[name]):
        if variable.startswith(ENV_PREFIX):
            assert _setting_exists(variable), f"{name}: {variable} is not a setting"
        else:
            assert variable.startswith("PREFECT_"), f"{name}: unexpected variable {variable}"


def test_dependencies_wait_for_health() -> None:
    for name, service in SERVICES.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency in ("migrate",) else "service_healthy"
            assert condition["condition"] == expected, f"{name} -> {dependency}"


def test_prefect_server_uses_the_pinned_version_and_postgres() -> None:
    server = SERVICES["prefect-server"]
    pinned = re.search(r"^prefect==([\d.]+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert pinned is not None
    assert server["image"].startswith(f"prefecthq/prefect:{pinned.group(1)}-")
    assert _environment(server)["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    init = SERVICES["postgres"]["volumes"]
    assert any("init-databases.sql" in v for v in init)
    assert "CREATE DATABASE prefect" in (ROOT / "deploy/postgres/init-databases.sql").read_text()


def test_dockerfile_builds_what_the_services_run() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("ats", "db", "flows", "tasks", "monitor"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "pip install -c constraints.txt ." in dockerfile
    assert "COPY prefect.yaml" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE), "the image must not run as root"
    assert (ROOT / "prefect.yaml").exists()


@pytest.mark.parametrize("unit", sorted((ROOT / "deploy/systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units(unit: Path) -> None:
    text = unit.read_text()
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert section in text
    exec_start = re.search(r"^ExecStart=(.+)$", text, re.MULTILINE)
    assert exec_start is not None
    argv = shlex.split(exec_start.group(1))
    program = Path(argv[0]).name
    if program == "ats":
        assert _cli_command_exists(argv[1:])
    else:
        assert program == "prefect"
    assert "Restart=always" in text


def test_example_environment_file_names_real_settings() -> None:
    for line in (ROOT / "deploy/ats.env.example").read_text().splitlines():
        if line.startswith(ENV_PREFIX):
            assert _setting_exists(line.split("=", 1)[0]), line


def test_settings_sections_are_models() -> None:
    assert issubclass(Settings.model_fields["limits"].annotation, BaseModel)  # type: ignore[arg-type]
