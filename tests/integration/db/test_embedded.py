"""With ATS_DATABASE_URL unset the program starts an embedded PostgreSQL and migrates it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from ats.config import load_settings
from cli import app
from db import migrate
from db.session import Database


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's private temp tree: the embedded server runs as an unprivileged user when we are root."""
    path = Path(tempfile.mkdtemp(prefix="ats-embedded-"))
    path.chmod(0o755)
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


def test_embedded_database_when_no_url_is_configured(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATS_DATABASE_URL", raising=False)
    monkeypatch.setenv("ATS_DATA_DIR", str(data_dir))
    settings = load_settings()
    assert settings.database_url is None
    database = Database.open(settings)
    try:
        with database.session() as session:
            assert session.execute(text("SELECT 1")).scalar() == 1
        assert migrate.current_revision(database.engine) == migrate.head_revision()
        assert (data_dir / "pgdata" / "PG_VERSION").exists()
    finally:
        database.dispose()
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "already at revision" in result.output
