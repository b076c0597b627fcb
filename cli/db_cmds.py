"""`ats db ...`: the database schema."""

from __future__ import annotations

import typer

from ats.log import redact
from cli.app import app, console, fail, settings_or_exit

db_app = typer.Typer(help="Manage the PostgreSQL schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision (default: the newest).")) -> None:
    """Migrate the database to REVISION. Uses ATS_DATABASE_URL, or the embedded PostgreSQL when unset."""
    from db import migrate
    from db.session import Database

    settings = settings_or_exit()
    database = Database.open(settings, migrate_empty=False)
    try:
        before = migrate.current_revision(database.engine)
        migrate.upgrade(database.engine, revision)
        after = migrate.current_revision(database.engine)
    except Exception as exc:  # report the failure readably; the traceback adds nothing for an operator
        fail(f"migration failed: {redact(str(exc))}")  # printed, not logged: redact here
    finally:
        database.dispose()
    if before == after:
        console.print(f"database {database.safe_url} already at revision [bold]{after}[/]")
    else:
        console.print(f"database {database.safe_url} migrated: {before or 'empty'} -> [bold]{after}[/]")


@db_app.command("current")
def current() -> None:
    """Show the database's schema revision and the newest one this program knows."""
    from db import migrate
    from db.session import Database

    settings = settings_or_exit()
    database = Database.open(settings, migrate_empty=False)
    try:
        console.print(f"database: {database.safe_url}")
        console.print(f"revision: {migrate.current_revision(database.engine) or 'empty'}")
        console.print(f"newest:   {migrate.head_revision()}")
    finally:
        database.dispose()
