"""The root Typer application and the shared helpers every command uses."""

from __future__ import annotations

import os
import sys
import warnings
from typing import NoReturn

import typer
from rich.console import Console

from ats.config import ConfigError, Settings, load_settings
from ats.log import configure_logging

app = typer.Typer(
    name="ats",
    help="Automated trading system for Binance USDⓈ-M perpetual futures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def settings_or_exit(**overrides: object) -> Settings:
    """Load the configuration, print a readable error and exit 2 when it is invalid; set up logging."""
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        fail(str(exc))
    key, secret = settings.exchange.api_key, settings.exchange.api_secret
    configure_logging(
        settings.log_level,
        settings.log_format,
        secrets=[
            key.get_secret_value() if key else None,
            secret.get_secret_value() if secret else None,
            settings.telegram.token.get_secret_value() if settings.telegram.token else None,
        ],
    )
    return settings


def main() -> None:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (services, containers); it is harmless here.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    # Prefect's ephemeral server reports usage to the internet; trading hosts should not call home.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
