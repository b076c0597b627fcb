"""Which monitor process leads an account, pure: a lease in PostgreSQL that the leader renews, with a fencing token.

A session lock cannot tell a dead leader from a frozen one: a process stopped by SIGSTOP, swapped out or stuck in
a blocked event loop keeps its database connection, and with it the lock, while nothing manages the positions.
A lease ends by itself unless its holder's event loop keeps renewing it, so a standby takes over whatever
happened to the leader. The database's clock decides when a lease has expired (`now()`), never a process's.

Each acquisition increments the lease's epoch (the fencing token). A leader acts only while it knows it still
holds its epoch, without asking anyone: its last successful renewal was asked for less than `LeaseTiming.valid_s`
ago on its monotonic clock, which keeps running while the process is frozen. A process woken after the lease ran
out therefore sees that before it sends anything (`Fence.check`, called before every exchange write) and steps
down; the transitions it records carry the epoch check in the database as well (db.lease.hold).

- `decide`: one election step for a process, leading or standing by, from the lease row as the database sees it.
- `Fence`: what this process may do now, from its own renewals; cheap enough to ask before every order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ats.execution import ExecutionDeferred


class NotLeader(ExecutionDeferred):
    """This process does not hold the account's monitor lease (any more): nothing was sent or recorded, the
    leader does the work."""


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """How long a lease lasts and what follows from it: renewed five times per lease, and acted on for three
    quarters of it after a renewal was asked for (the rest covers a request already on its way)."""

    lease_s: float = 10.0

    def __post_init__(self) -> None:
        if self.lease_s < 2:
            raise ValueError("a monitor lease must last at least 2 s")

    @property
    def renew_s(self) -> float:
        return self.lease_s / 5

    @property
    def valid_s(self) -> float:
        return self.lease_s * 3 / 4


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """The account's lease as stored: who holds it, under which epoch, until when (database time)."""

    holder: str
    epoch: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Held:
    """The lease is this process's until the database's now + the lease: newly acquired (a new epoch) or renewed."""

    epoch: int
    acquired: bool


@dataclass(frozen=True, slots=True)
class Lost:
    """This process led under an epoch it no longer holds: it must stop acting at once."""

    reason: str


@dataclass(frozen=True, slots=True)
class Busy:
    """Another process holds a live lease: stand by."""

    holder: str
    epoch: int
    expires_ms: int


Decision = Held | Lost | Busy


def decide(row: LeaseRow | None, *, me: str, epoch: int | None, now_ms: int) -> Decision:
    """One election step at the database's `now_ms`, for a process leading under `epoch` or standing by (None).

    A leader renews only the very lease it holds, and only before it expires: an expired lease is over even if
    nobody took it, because the leader's own fence lapsed before it and it has stopped acting. A standby takes a
    lease that is missing, expired or its own (left by an earlier term of this process), always with a new epoch.
    """
    if epoch is not None:
        if row is not None and row.holder == me and row.epoch == epoch and now_ms < row.expires_ms:
            return Held(epoch, acquired=False)
        return Lost(_why_lost(row, me, epoch, now_ms))
    if row is None or now_ms >= row.expires_ms or row.holder == me:
        return Held((row.epoch if row is not None else 0) + 1, acquired=True)
    return Busy(row.holder, row.epoch, row.expires_ms)


def _why_lost(row: LeaseRow | None, me: str, epoch: int, now_ms: int) -> str:
    if row is None:
        return "the lease is gone"
    if row.holder != me or row.epoch != epoch:
        return f"{row.holder or 'nobody'} holds it now (epoch {row.epoch}; this process led epoch {epoch})"
    return f"it expired {(now_ms - row.expires_ms) / 1000:.1f} s ago"


class Fence:
    """This process's right to act for the account, from its own renewals, on its monotonic clock.

    `begin` starts a term under a new epoch, `extend` records each renewal (by the monotonic time it was asked
    for, before the database answered), `check` is asked before every exchange write and every recorded
    transition. The first check that finds the fence lapsed ends the term and calls `on_lapse` with the reason,
    so the process steps down at once instead of at its next renewal.
    """

    def __init__(
        self,
        holder: str,
        timing: LeaseTiming,
        monotonic: Callable[[], float],
        on_lapse: Callable[[str], None] | None = None,
    ) -> None:
        self.holder = holder
        self.timing = timing
        self._monotonic = monotonic
        self._on_lapse = on_lapse
        self._epoch: int | None = None
        self._asked = 0.0

    @property
    def epoch(self) -> int | None:
        """The epoch of the current term (None between terms), lapsed or not."""
        return self._epoch

    def begin(self, epoch: int, asked_mono: float) -> None:
        self._epoch, self._asked = epoch, asked_mono

    def extend(self, epoch: int, asked_mono: float) -> bool:
        """Record a renewal of `epoch`; False when that term has ended meanwhile (the renewal came too late)."""
        if self._epoch != epoch:
            return False
        self._asked = max(self._asked, asked_mono)
        return True

    def end(self) -> None:
        self._epoch = None

    def age_s(self) -> float:
        """Seconds since the last successful renewal was asked for."""
        return self._monotonic() - self._asked

    def remaining_s(self) -> float:
        """How much longer this process may act without another renewal (<= 0: not at all)."""
        if self._epoch is None:
            return 0.0
        return self.timing.valid_s - self.age_s()

    def check_write(self, method: str, path: str) -> None:
        """BinanceFutures' write guard: every order, cancel and account setting is fenced; the listenKey's upkeep
        is not (it changes nothing that a leader decides, and a stepping-down process's streams close anyway)."""
        if not path.endswith("/listenKey"):
            self.check(f"{method} {path}")

    def check(self, what: str) -> int:
        """The epoch to act under; raises NotLeader (and ends the term) when this process may not act now."""
        if self._epoch is None:
            raise NotLeader(f"{what}: refused, this process is not the leader")
        if self.remaining_s() > 0:
            return self._epoch
        reason = f"the lease (epoch {self._epoch}) was last renewed {self.age_s():.1f} s ago"
        self._epoch = None
        if self._on_lapse is not None:
            self._on_lapse(reason)
        raise NotLeader(f"{what}: refused, {reason}; this process no longer leads")
