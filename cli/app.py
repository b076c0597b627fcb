"""The root Typer application and the shared helpers every command uses."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ats.config import ConfigError, Settings, Venue, load_settings
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
    """Print the reason (taken literally, never as markup; each line unwrapped, for logs) and exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


VenueOption = Annotated[
    Venue | None,
    typer.Option(
        "--venue",
        help="sim, testnet or mainnet; overrides ATS_VENUE for this command (mainnet still needs ATS_ALLOW_MAINNET).",
        show_default=False,
    ),
]


def settings_or_exit(*, venue: Venue | None = None) -> Settings:
    """Load the configuration, print a readable error and exit 2 when it is invalid; set up logging.

    A --venue given on the command line becomes ATS_VENUE for this process, so the flows it runs (which read
    their configuration from the environment, as on a worker) trade on the same venue.
    """
    if venue is not None:
        os.environ["ATS_VENUE"] = venue.value
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc))
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())
    return settings


def main() -> None:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (services, containers); it is harmless here.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    # Prefect's ephemeral server reports usage to the internet; trading hosts should not call home.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Flows run from the CLI show the system's own log lines on their run pages, as deployed ones do.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "ats,db")
    # Outside a flow run (status, test-connection, the demo's own steps) those lines stay local: without this,
    # Prefect warns at each logger's first line that it cannot send it to a run page.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # Heartbeats as often as the worker's runs send them: the zombie automation (ats deploy) expects them.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")
    # Without PREFECT_API_URL, a flow command first starts a temporary Prefect server; on a fresh PREFECT_HOME it
    # migrates its database, which takes longer than Prefect's 20 s on a busy machine. Wait longer, not fail.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
