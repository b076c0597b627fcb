"""The request-weight and order-count budget, shared by every process that talks to Binance from this host.

Binance limits request weight per IP (2400/min) and orders per account (300/10 s, 1200/min); breaking a limit
answers 429, and continuing after 429s earns an IP ban (418) of 2 minutes up to 3 days. So every process
reserves weight before it sends, records what the exchange reports back, and honours back-offs and bans
recorded by any other process. The arithmetic lives in pure functions over `BudgetState`; the state itself
lives in a `BudgetStore` (one row per scope, updated atomically), in memory here and in PostgreSQL in db/.

Every request carries a `Priority`. Protective work (placing and cancelling stops and take-profits, closing
positions, the look-ups that finish such work, reconciliation, the user stream's listenKey) may use the whole
usable budget; normal work (market data, scans, entries) stops short of it by `protective_reserve`, so a scan
that uses up its share of the minute never delays a stop. After a 429 the exchange refuses everything from the
IP, so no reserve helps there: protective requests go again the moment the back-off ends (normal ones a little
later) and keep going, without a growing back-off of their own, until the exchange takes them. The priority is
set for a block of work with `request_priority(...)` (a context variable, so it follows the work into the tasks
it starts) and read by the client for each request.

The account-wide reads of a full reconciliation pass (all open orders, all algo orders, all income: 30-40 weight
each) are protective too, but stop short of the last `critical_reserve` and never wait for the budget: a pass that
does not fit is retried later. Repeated stream faults each call for a full pass; they used up the whole minute,
and the look-up of a stop that had fired unheard waited for the next one (15-57 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import ParamSpec, Protocol, TypeVar

from ats.clock import Clock
from ats.exchange.errors import IpBanned, RateLimited
from ats.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

MINUTE_MS = 60_000
TEN_SECONDS_MS = 10_000


class Priority(IntEnum):
    """Who may use the last part of the budget (see the module docstring)."""

    NORMAL = 0  # market data, scans, warming the scorer, entries
    SWEEP = 1  # a reconciliation pass's account-wide reads (all open orders, all income: 30-40 weight each)
    PROTECTIVE = 2  # stops, take-profits, cancels, closes, their look-ups, a position's reconciliation, listenKey


_PRIORITY: ContextVar[Priority | None] = ContextVar("ats_request_priority", default=None)


@contextlib.contextmanager
def request_priority(level: Priority) -> Iterator[None]:
    """Requests sent inside this block (and by the tasks it starts) carry `level`."""
    token = _PRIORITY.set(level)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


def protective(work: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorates an async function whose every request is protective work."""

    @functools.wraps(work)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with request_priority(Priority.PROTECTIVE):
            return await work(*args, **kwargs)

    return run


def current_priority(default: Priority = Priority.NORMAL) -> Priority:
    """The priority set by the innermost `request_priority` block around the caller, else `default`."""
    level = _PRIORITY.get()
    return default if level is None else level


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One scope's shared rate-limit state. Every field is a plain integer (SQL friendly); 0 means unset.

    Windows are fixed and aligned like Binance's: the minute window starts at a multiple of 60 000 ms of
    server time, the order 10-second window at a multiple of 10 000 ms.
    """

    window_start_ms: int = 0  # start of the current 1-minute window
    used_weight: int = 0  # request weight used in that window (reserved here or reported by the exchange)
    orders_1m: int = 0  # orders placed in that window
    orders_10s_start_ms: int = 0  # start of the current 10-second order window
    orders_10s: int = 0  # orders placed in that window
    backoff_until_ms: int = 0  # after a 429: nothing is sent before this
    banned_until_ms: int = 0  # after a 418: nothing is sent before this


class BudgetStoreUnavailable(Exception):
    """The shared store cannot be reached (its database is down)."""


class BudgetStore(Protocol):
    """Where the budget state lives. An implementation must make `update` atomic across processes, and raise
    BudgetStoreUnavailable when it cannot be reached.

    PostgreSQL: `SELECT ... FOR UPDATE` the scope's row (insert a default row first if missing), call
    `change` with it, `UPDATE` the row with the returned state, commit, return the second element.
    `change` is pure and fast; it may be called again if the transaction is retried.
    """

    async def update(self, scope: str, change: Callable[[BudgetState], tuple[BudgetState, T]]) -> T: ...


class InMemoryBudgetStore:
    """The budget for one process (tests, the demo, or a host running a single process)."""

    def __init__(self) -> None:
        self._states: dict[str, BudgetState] = {}
        self._lock = asyncio.Lock()

    async def update(self, scope: str, change: Callable[[BudgetState], tuple[BudgetState, T]]) -> T:
        async with self._lock:
            new_state, result = change(self._states.get(scope, BudgetState()))
            self._states[scope] = new_state
            return result

    def snapshot(self, scope: str) -> BudgetState:
        return self._states.get(scope, BudgetState())


class FallbackBudgetStore:
    """The shared store while it answers (within `wait_s`); this process's own budget from its first failure on.

    For the emergency stop, which must keep talking to the exchange when the database goes away mid-run: the
    budget is then no longer shared, but the exchange's own counters and 429/418 answers still pace the client.
    """

    def __init__(self, shared: BudgetStore | None, *, wait_s: float = 3.0) -> None:
        self._shared = shared
        self._wait_s = wait_s
        self._local = InMemoryBudgetStore()

    @property
    def shared(self) -> bool:
        """Whether the budget is still the shared one."""
        return self._shared is not None

    async def update(self, scope: str, change: Callable[[BudgetState], tuple[BudgetState, T]]) -> T:
        if self._shared is not None:
            try:
                return await asyncio.wait_for(self._shared.update(scope, change), self._wait_s)
            except Exception as exc:
                log.warning("shared request budget unavailable; using this process's own", error=type(exc).__name__)
                self._shared = None
        return await self._local.update(scope, change)


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    weight_per_minute: int = 2400
    orders_per_10s: int = 300
    orders_per_minute: int = 1200
    safety_margin: float = 0.2  # fraction of every limit nobody uses (other users of the IP, counting lag)
    protective_reserve: float = 0.15  # fraction of every limit that only protective work may use
    critical_reserve: float = 0.05  # the part of it (at most all) that account-wide reads (SWEEP) leave alone
    resume_gap_ms: int = 1000  # after a 429 back-off, normal work resumes this much later than protective work

    def __post_init__(self) -> None:
        if self.safety_margin < 0 or self.protective_reserve < 0 or self.safety_margin + self.protective_reserve >= 1:
            raise ValueError("the safety margin and the protective reserve must be >= 0 and leave some budget")
        if self.critical_reserve < 0:
            raise ValueError("the critical reserve must be >= 0")

    def cap(self, limit: int, priority: Priority) -> int:
        """How much of `limit` requests of this priority may use: normal work leaves the protective reserve, a
        sweep its critical part."""
        critical = min(self.critical_reserve, self.protective_reserve)
        kept = {Priority.NORMAL: self.protective_reserve, Priority.SWEEP: critical}.get(priority, 0.0)
        unused = self.safety_margin + kept
        return max(1, math.floor(limit * (1.0 - unused) + 1e-9))


# ------------------------------------------------------------------------------------------ pure functions


def roll(state: BudgetState, now_ms: int) -> BudgetState:
    """Start fresh windows when the current ones have ended."""
    minute = now_ms - now_ms % MINUTE_MS
    ten = now_ms - now_ms % TEN_SECONDS_MS
    if state.window_start_ms != minute:
        state = replace(state, window_start_ms=minute, used_weight=0, orders_1m=0)
    if state.orders_10s_start_ms != ten:
        state = replace(state, orders_10s_start_ms=ten, orders_10s=0)
    return state


@dataclass(frozen=True, slots=True)
class Reservation:
    """The outcome of asking for budget: granted (wait_ms == 0), or how long to wait, or banned."""

    wait_ms: int = 0
    banned_until_ms: int = 0
    reason: str = ""

    @property
    def granted(self) -> bool:
        return self.wait_ms == 0 and self.banned_until_ms == 0


def reserve(
    state: BudgetState,
    now_ms: int,
    weight: int,
    orders: int,
    limits: BudgetLimits,
    priority: Priority = Priority.NORMAL,
) -> tuple[BudgetState, Reservation]:
    """Take `weight` and `orders` from the budget if they fit under this priority's caps; otherwise say how long
    to wait. Normal work also waits `resume_gap_ms` past a 429 back-off, so that protective work goes first and
    only one request meets a 429 storm that has not ended yet."""
    if state.banned_until_ms > now_ms:
        return state, Reservation(banned_until_ms=state.banned_until_ms, reason="ip banned")
    resume = state.backoff_until_ms
    if resume and priority is not Priority.PROTECTIVE:
        resume += limits.resume_gap_ms
    if resume > now_ms:
        return state, Reservation(wait_ms=resume - now_ms, reason="backing off after 429")
    state = roll(state, now_ms)
    next_minute = state.window_start_ms + MINUTE_MS
    kept = "" if priority is Priority.PROTECTIVE else "; the rest is kept for protective work"
    weight_cap = limits.cap(limits.weight_per_minute, priority)
    # A request heavier than the whole usable budget still goes out, alone, at the start of a window.
    if weight > 0 and state.used_weight > 0 and state.used_weight + weight > weight_cap:
        return state, Reservation(wait_ms=next_minute - now_ms, reason=f"request weight budget used up{kept}")
    if orders > 0:
        if state.orders_1m + orders > limits.cap(limits.orders_per_minute, priority):
            return state, Reservation(wait_ms=next_minute - now_ms, reason=f"order budget (1 min) used up{kept}")
        if state.orders_10s + orders > limits.cap(limits.orders_per_10s, priority):
            wait = state.orders_10s_start_ms + TEN_SECONDS_MS - now_ms
            return state, Reservation(wait_ms=wait, reason=f"order budget (10 s) used up{kept}")
    granted = replace(
        state,
        used_weight=state.used_weight + weight,
        orders_1m=state.orders_1m + orders,
        orders_10s=state.orders_10s + orders,
    )
    return granted, Reservation()


def retry_after_429(
    priority: Priority, retries: int, waited_s: float, *, normal_retries: int, patience_s: float
) -> bool:
    """After a 429, whether to send the request again once the back-off it recorded has passed.

    Normal work gives up after `normal_retries` (whoever asked comes back later). Protective work keeps going for
    `patience_s`: a stop then goes out at the first moment the exchange takes requests again, instead of on a
    re-drive's schedule that grows with every failure.
    """
    if priority is Priority.PROTECTIVE:
        return waited_s < patience_s
    return retries < normal_retries


def observe(
    state: BudgetState,
    now_ms: int,
    *,
    used_weight: int | None = None,
    orders_10s: int | None = None,
    orders_1m: int | None = None,
) -> BudgetState:
    """Fold in the exchange's own counters (X-MBX-USED-WEIGHT-1M, X-MBX-ORDER-COUNT-10S/-1M).

    The exchange counts every process on the IP, so its figure can only raise ours; ours can be higher
    while our other requests are still in flight.
    """
    state = roll(state, now_ms)
    return replace(
        state,
        used_weight=max(state.used_weight, used_weight or 0),
        orders_10s=max(state.orders_10s, orders_10s or 0),
        orders_1m=max(state.orders_1m, orders_1m or 0),
    )


def adds_to(
    state: BudgetState,
    now_ms: int,
    *,
    used_weight: int | None = None,
    orders_10s: int | None = None,
    orders_1m: int | None = None,
) -> bool:
    """Whether the exchange's counters say more than `state`, a state the store held earlier in this window.

    Within a window the store's counters only grow, so when they do not, folding them in cannot change the store
    and the write can be skipped.
    """
    return observe(state, now_ms, used_weight=used_weight, orders_10s=orders_10s, orders_1m=orders_1m) != state


def back_off(state: BudgetState, now_ms: int, retry_after_ms: int | None) -> BudgetState:
    """After a 429: pause every process until Retry-After, or else until the weight window turns over."""
    if retry_after_ms is None or retry_after_ms <= 0:
        until = now_ms - now_ms % MINUTE_MS + MINUTE_MS
    else:
        until = now_ms + retry_after_ms
    return replace(state, backoff_until_ms=max(state.backoff_until_ms, until, now_ms + 1000))


def ban(state: BudgetState, until_ms: int) -> BudgetState:
    """After a 418: nothing may be sent from this IP until the ban ends."""
    return replace(state, banned_until_ms=max(state.banned_until_ms, until_ms))


# ------------------------------------------------------------------------------------------ the shell


class RequestBudget:
    """Reserves budget before each request and records what the exchange says; shared through a store.

    Windows are measured in server time: the client tells the budget its clock offset after each sync.
    The last state read from the store is kept, so an answer whose weight headers tell nothing new (the usual
    case: every request was reserved before it was sent) costs no second round trip to the store.

    Requests never wait for the store: while it cannot be reached, this process counts on from that last state on
    its own (a stop must not wait for the database), and the weight the exchange reports in every answer brings
    the shared count back in line once the store is back.
    """

    def __init__(
        self,
        store: BudgetStore,
        *,
        scope: str,
        clock: Clock,
        limits: BudgetLimits | None = None,
        max_wait_s: float = 90.0,
    ) -> None:
        self._store = store
        self._scope = scope
        self._clock = clock
        self.limits = limits or BudgetLimits()
        self._max_wait_ms = int(max_wait_s * 1000)
        self._offset_ms = 0
        self._seen: BudgetState | None = None  # the store's state after this process's last update
        self._alone = False  # the store is unreachable: counting locally

    @property
    def scope(self) -> str:
        return self._scope

    def set_clock_offset(self, offset_ms: int) -> None:
        self._offset_ms = offset_ms

    def now_ms(self) -> int:
        return self._clock.now_ms() + self._offset_ms

    async def _update(self, change: Callable[[BudgetState], tuple[BudgetState, T]]) -> T:
        def tracked(state: BudgetState) -> tuple[BudgetState, tuple[BudgetState, T]]:
            new_state, result = change(state)
            return new_state, (new_state, result)

        try:
            self._seen, result = await self._store.update(self._scope, tracked)
        except BudgetStoreUnavailable as exc:
            if not self._alone:
                log.warning("shared request budget unreachable: counting this process's requests alone", error=str(exc))
                self._alone = True
            self._seen, (_, result) = tracked(self._seen or BudgetState())
            return result
        if self._alone:
            log.info("shared request budget reachable again")
            self._alone = False
        return result

    async def acquire(self, weight: int, orders: int = 0, priority: Priority = Priority.NORMAL) -> None:
        """Wait until the request fits; raise IpBanned during a ban, RateLimited if the wait is too long."""
        while True:
            take = functools.partial(
                reserve, now_ms=self.now_ms(), weight=weight, orders=orders, limits=self.limits, priority=priority
            )
            reservation = await self._update(take)
            if reservation.granted:
                return
            if reservation.banned_until_ms:
                raise IpBanned(
                    "this IP is banned by Binance; no request is sent until the ban ends",
                    until_ms=reservation.banned_until_ms,
                )
            if reservation.wait_ms > self._max_wait_ms or priority is Priority.SWEEP:
                waiting = "an account-wide read does not wait" if priority is Priority.SWEEP else "longer than allowed"
                raise RateLimited(
                    f"{reservation.reason}; the wait of {reservation.wait_ms / 1000:.0f} s: {waiting}",
                    retry_after_s=reservation.wait_ms / 1000,
                )
            log.info(
                "waiting for request budget",
                reason=reservation.reason,
                wait_s=reservation.wait_ms / 1000,
                priority=priority.name.lower(),
            )
            await self._clock.sleep(reservation.wait_ms / 1000)

    async def record(self, *, used_weight: int | None, orders_10s: int | None, orders_1m: int | None) -> None:
        if used_weight is None and orders_10s is None and orders_1m is None:
            return
        now = self.now_ms()
        counts = {"used_weight": used_weight, "orders_10s": orders_10s, "orders_1m": orders_1m}
        if self._seen is not None and not adds_to(self._seen, now, **counts):
            return

        def fold(state: BudgetState) -> tuple[BudgetState, None]:
            return observe(state, now, **counts), None

        await self._update(fold)

    async def rate_limited(self, retry_after_s: float | None) -> None:
        now = self.now_ms()
        retry_ms = None if retry_after_s is None else int(retry_after_s * 1000)

        def pause(state: BudgetState) -> tuple[BudgetState, None]:
            return back_off(state, now, retry_ms), None

        await self._update(pause)

    async def banned(self, until_ms: int) -> None:
        def stop(state: BudgetState) -> tuple[BudgetState, None]:
            return ban(state, until_ms), None

        await self._update(stop)
