"""Migrations: empty -> head -> base, and the ORM models agree with the migrated schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from db import migrate
from db.models import Base


def test_upgrade_empty_to_head_and_back_down(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    try:
        assert migrate.is_empty(engine)
        assert migrate.ensure_schema(engine) is True
        assert migrate.current_revision(engine) == migrate.head_revision()
        tables = set(inspect(engine).get_table_names())
        assert {"positions", "orders", "fills", "notifications", "events", "risk_ledger"} <= tables
        assert migrate.ensure_schema(engine) is False
        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert migrate.is_empty(engine)
    finally:
        engine.dispose()


def test_models_match_the_migrations(db) -> None:  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_constraints_that_protect_money(db) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    insert_position = text(
        "INSERT INTO positions (account, key, symbol, direction, state, leverage, entry_qty, quantity) "
        "VALUES ('main', :key, 'BTCUSDT', 'LONG', 'open', 5, :q, :q)"
    )
    with db.engine.begin() as conn:
        conn.execute(insert_position, {"q": 1, "key": "k1"})
    with pytest.raises(IntegrityError, match="uq_positions_one_open_per_symbol"), db.engine.begin() as conn:
        conn.execute(insert_position, {"q": 1, "key": "k2"})
    with pytest.raises(IntegrityError, match="quantity_non_negative"), db.engine.begin() as conn:
        conn.execute(text("UPDATE positions SET quantity = -1"))
    insert_order = text(
        "INSERT INTO orders (account, client_id, leg, kind, symbol, side, type, quantity) "
        "VALUES ('main', 'ats_x_E', 'E', 'order', 'BTCUSDT', 'BUY', 'MARKET', 1)"
    )
    with db.engine.begin() as conn:
        conn.execute(insert_order)
    with pytest.raises(IntegrityError, match="uq_orders_account_client_id"), db.engine.begin() as conn:
        conn.execute(insert_order)
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO events (account, kind, source) VALUES ('main', 'test', 'test')"))
    with pytest.raises(ProgrammingError, match="append-only"), db.engine.begin() as conn:
        conn.execute(text("DELETE FROM events"))


def test_out_of_date_schema_is_refused_not_migrated(empty_database_url: str) -> None:
    import pytest

    engine = create_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE unrelated (id int)"))
        with pytest.raises(migrate.SchemaOutOfDate, match="ats db upgrade"):
            migrate.ensure_schema(engine)
    finally:
        engine.dispose()
