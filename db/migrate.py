"""Alembic, driven from code: no alembic.ini to keep in sync; migrations run on the caller's engine, so the
database URL (and its password) never enters Alembic's configuration."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaOutOfDate(RuntimeError):
    """The database holds an older schema; migrating a non-empty database is an operator's decision."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision this program knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def is_empty(engine: Engine) -> bool:
    return not set(inspect(engine).get_table_names()) - {"alembic_version"}


def ensure_schema(engine: Engine) -> bool:
    """Migrate an empty database to head; refuse to run on an out-of-date one. Returns True if it migrated."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return False
    if current is None and is_empty(engine):
        upgrade(engine)
        return True
    raise SchemaOutOfDate(
        f"the database schema is at revision {current or 'none (tables exist)'} but this program needs {head}; "
        "back up the database, then run `ats db upgrade`"
    )
