"""Database connections: PostgreSQL at ATS_DATABASE_URL, or an embedded PostgreSQL when it is unset.

One `Database` per process. Units of work use `db.session()` (commit on success, rollback on error).
Cross-process coordination uses PostgreSQL advisory locks inside a transaction (`advisory_xact_lock`); the
monitors' leadership is a lease row (db.lease), which a frozen holder cannot keep.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ats.config import POSTGRES_DRIVERS, Settings
from ats.log import get_logger, redact, register_secret
from db import migrate

log = get_logger(__name__)
EMBEDDED_DATABASE = "ats"


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and always use the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername not in POSTGRES_DRIVERS:
        raise ValueError(f"unsupported database driver {parsed.drivername!r}: PostgreSQL (psycopg 3) only")
    parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.password:
        register_secret(parsed.password)
    return parsed.render_as_string(hide_password=False)


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under data_dir/pgdata and return its URL."""
    import pgserver  # imported only when no database is configured

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pgdata = data_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';")  # noqa: S608  (constant)
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
    uri: str = server.get_uri(EMBEDDED_DATABASE)
    log.info("using the embedded PostgreSQL (ATS_DATABASE_URL is unset)", pgdata=str(pgdata))
    return normalise_url(uri)


def resolve_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return normalise_url(settings.database_url.get_secret_value())
    return start_embedded(settings.data_dir)


def database_error_line(exc: SQLAlchemyError) -> str:
    """The first line of the driver's message, secrets redacted: what an operator needs, without the traceback."""
    cause = str(getattr(exc, "orig", None) or exc).strip()
    return redact(cause.splitlines()[0])[:300] if cause else type(exc).__name__


def database_outage(exc: BaseException) -> str | None:
    """One line when `exc` says the database could not be reached or dropped the connection (an outage, a
    failover, or PostgreSQL ending the transaction of a process frozen inside it); None for any other error.

    Long-lived workers expect outages and say so in one line; anything else is a bug and keeps its traceback."""
    if not isinstance(exc, DBAPIError):
        return None
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return database_error_line(exc)
    return None


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name (e.g. 'place-orders:main')."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Database:
    def __init__(self, url: str, *, pool_size: int = 5, connect_timeout_s: int | None = None) -> None:
        """`connect_timeout_s`: give up a connection attempt after this long (libpq's connect_timeout, at least
        2 s) instead of the operating system's minutes, for callers that must not wait on a dead server."""
        self.engine: Engine = create_engine(
            normalise_url(url),
            pool_size=pool_size,
            max_overflow=5,
            pool_pre_ping=True,
            pool_recycle=1800,
            hide_parameters=True,  # parameters may carry payloads; never put them in exception text
            connect_args={} if connect_timeout_s is None else {"connect_timeout": connect_timeout_s},
        )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def open(cls, settings: Settings, *, migrate_empty: bool = True, connect_timeout_s: int | None = None) -> Database:
        """Connect; on an empty database, run the migrations (and say so)."""
        database = cls(resolve_url(settings), connect_timeout_s=connect_timeout_s)
        if migrate_empty and migrate.ensure_schema(database.engine):
            log.info("database was empty: migrated to the current schema", revision=migrate.head_revision())
        return database

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)


def advisory_xact_lock(session: Session, name: str) -> None:
    """Block until this transaction holds the named lock; released at commit or rollback."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
