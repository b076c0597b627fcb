"""With ATS_DATABASE_URL unset the program starts an embedded PostgreSQL and migrates it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from ats.cli import app
from ats.config import load_settings
from db import migrate
from db.session import Database


def test_embedded_database_when_no_url_is_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATS_DATABASE_URL", raising=False)
    monkeypatch.setenv("ATS_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    assert settings.database_url is None
    database = Database.open(settings)
    try:
        with database.session() as session:
            assert session.execute(text("SELECT 1")).scalar() == 1
        assert migrate.current_revision(database.engine) == migrate.head_revision(database.engine)
        assert (tmp_path / "data" / "pgdata" / "PG_VERSION").exists()
    finally:
        database.dispose()
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "already at revision" in result.output
