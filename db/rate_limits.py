"""The request-weight budget in PostgreSQL, so every process on the host shares one budget (and one ban)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import InterfaceError, OperationalError

from ats.exchange.budget import BudgetState, BudgetStoreUnavailable
from db.models import RateLimitStateRow

T = TypeVar("T")
_FIELDS = tuple(f.name for f in dataclasses.fields(BudgetState))


class PostgresBudgetStore:
    """`ats.exchange.budget.BudgetStore` on one row per scope, updated under SELECT ... FOR UPDATE."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def update(self, scope: str, change: Callable[[BudgetState], tuple[BudgetState, T]]) -> T:
        try:
            return await asyncio.to_thread(self._update, scope, change)
        except (OperationalError, InterfaceError) as exc:
            raise BudgetStoreUnavailable(f"the budget's database is unavailable: {type(exc.orig).__name__}") from exc

    def _update(self, scope: str, change: Callable[[BudgetState], tuple[BudgetState, T]]) -> T:
        table = RateLimitStateRow.__table__
        columns = [table.c[name] for name in _FIELDS]
        with self._engine.begin() as conn:
            locked = select(*columns).where(table.c.scope == scope).with_for_update()
            row = conn.execute(locked).one_or_none()
            if row is None:
                conn.execute(
                    insert(RateLimitStateRow).values(scope=scope).on_conflict_do_nothing(index_elements=["scope"])
                )
                row = conn.execute(locked).one()
            state = BudgetState(**row._mapping)
            new_state, result = change(state)
            if new_state != state:
                conn.execute(
                    update(RateLimitStateRow)
                    .where(RateLimitStateRow.scope == scope)
                    .values(**dataclasses.asdict(new_state), updated_at=func.now())
                )
            return result

    def snapshot(self, scope: str) -> BudgetState:
        table = RateLimitStateRow.__table__
        with self._engine.connect() as conn:
            row = conn.execute(select(*[table.c[n] for n in _FIELDS]).where(table.c.scope == scope)).one_or_none()
        return BudgetState() if row is None else BudgetState(**row._mapping)
