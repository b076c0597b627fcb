"""The leader lease on the real PostgreSQL: a transition holds the lease against a takeover until it commits, and
a process frozen inside such a transaction cannot keep a standby waiting: PostgreSQL ends its transaction."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ats.leadership import Held, NotLeader
from db.lease import FROZEN_AFTER_MS, claim, hold, release
from db.session import Database, database_outage

A, B = "monitor:main:a:1", "monitor:main:b:2"


def test_a_transition_needs_the_live_lease_of_its_epoch(db: Database) -> None:
    assert claim(db, "main", A, None, 30) == Held(1, acquired=True)
    with db.session() as session:
        hold(session, "main", A, 1)
    with pytest.raises(NotLeader, match="the lease of epoch 1 is no longer monitor:main:b:2's"), db.session() as s:
        hold(s, "main", B, 1)
    assert release(db, "main", A, 1)
    assert not release(db, "main", A, 1)
    with pytest.raises(NotLeader), db.session() as session:
        hold(session, "main", A, 1)  # released: over


def test_a_frozen_transaction_holding_the_lease_is_ended_so_a_standby_takes_over(db: Database) -> None:
    assert claim(db, "main", A, None, 0.5) == Held(1, acquired=True)
    with ThreadPoolExecutor(1) as pool:
        session = Session(db.engine)
        session.begin()
        hold(session, "main", A, 1)  # ... and then the process is stopped before it commits
        started = time.monotonic()
        takeover = pool.submit(claim, db, "main", B, None, 30)
        assert takeover.result(timeout=30) == Held(2, acquired=True)
        waited = time.monotonic() - started
        assert FROZEN_AFTER_MS / 1000 - 0.5 < waited < 15
        with pytest.raises(DBAPIError, match="idle-in-transaction timeout") as woken:
            session.execute(text("SELECT 1"))  # woken: its connection is gone, nothing it did is committed
        session.close()
    outage = database_outage(woken.value)  # what the woken monitor logs: one line, no traceback
    assert outage is not None
    assert "idle-in-transaction timeout" in outage
    assert "\n" not in outage


def test_only_a_lost_connection_counts_as_a_database_outage(db: Database) -> None:
    with pytest.raises(DBAPIError) as bad_sql, db.session() as session:
        session.execute(text("SELECT no_such_column FROM monitor_lease"))
    assert database_outage(bad_sql.value) is None  # a bug keeps its traceback
    assert database_outage(ValueError("not a database error")) is None
