"""`ats config ...`: inspect the effective configuration."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from cli.app import app, console, settings_or_exit

config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _flatten(prefix: str, value: object, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, inner, rows)
    else:
        rows.append((prefix, "(unset)" if value is None else str(value)))


@config_app.command("show")
def show(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print the effective configuration (environment + ATS_CONFIG file + defaults), secrets masked."""
    settings = settings_or_exit()
    data = settings.masked()
    data["effective_rest_url"] = settings.rest_url
    data["effective_ws_url"] = settings.ws_url
    if as_json:
        console.print_json(json.dumps(data))
        return
    rows: list[tuple[str, str]] = []
    _flatten("", data, rows)
    table = Table(title=f"ats configuration (venue: {settings.venue})")
    table.add_column("setting")
    table.add_column("value")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
