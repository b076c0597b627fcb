"""The position journal in memory: the same contract as db/journal.py's PostgresJournal (ats.execution.Journal),
for the backtest, which replays years of positions through the same state machine without a database."""

from __future__ import annotations

from collections.abc import Sequence

from ats.execution import OrderOutcome, UnknownPosition
from ats.lifecycle import Action, Event, Notify, Position, RecordAnomaly, RecordFill, RecordResult, transition

Record = RecordFill | RecordResult | Notify | RecordAnomaly


class MemoryJournal:
    """Positions by key, every record their transitions carried, and the send attempts and outcomes of orders."""

    def __init__(self) -> None:
        self.positions: dict[str, Position] = {}
        self.records: list[Record] = []
        self.outcomes: dict[str, OrderOutcome] = {}
        self._attempts: dict[str, int] = {}

    def add(self, position: Position, actions: Sequence[Action]) -> None:
        """A new position (ats.lifecycle.open_position) and the records of its first actions."""
        if position.key in self.positions:
            raise ValueError(f"a position is already recorded under key {position.key}")
        self.positions[position.key] = position
        self._keep(actions)

    def apply(self, key: str, event: Event, *, source: str) -> tuple[Position, list[Action]]:
        before = self.positions.get(key)
        if before is None:
            raise UnknownPosition(key)
        after, actions = transition(before, event)
        self.positions[key] = after
        self._keep(actions)
        return after, actions

    def position(self, key: str) -> Position | None:
        return self.positions.get(key)

    def record_attempt(self, client_id: str) -> bool:
        sent = self._attempts.get(client_id, 0)
        self._attempts[client_id] = sent + 1
        return sent > 0

    def record_outcome(self, client_id: str, outcome: OrderOutcome) -> None:
        self.outcomes[client_id] = outcome

    def _keep(self, actions: Sequence[Action]) -> None:
        self.records.extend(a for a in actions if isinstance(a, RecordFill | RecordResult | Notify | RecordAnomaly))
