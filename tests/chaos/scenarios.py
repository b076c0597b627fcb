"""The faults of the chaos bench, each a scenario: what is injected, at which moment of a position's life, and
which alerts it rightly raises (any other alert is a false one)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from ats.config import RiskLimits
from ats.domain import Direction, Signal
from db.models import OrderIntentRow
from db.rate_limits import PostgresBudgetStore
from sim.faults import FaultKind, FaultRule
from sim.server import SimConfig, SimServer
from tests.chaos import placement
from tests.chaos.bench import (
    AT_EXIT,
    AT_TP1,
    BEFORE_ENTRY,
    PROTECTED,
    RUN_TIMEOUT_S,
    Bench,
    DayLoss,
    Inject,
    Run,
    RunBody,
    Scenario,
    is_closed,
    is_open,
    reaction,
    settle,
)
from tests.integration.monitor.harness import client
from tests.integration.monitor.test_budget import use_the_normal_share

ORDER = "/fapi/v1/order"
ALGO = "/fapi/v1/algoOrder"
HOLD_S = 4.0  # longer than the client's 3 s timeout: the answer never comes in time

# How an answer gets lost: the fault kind and its options (see sim.faults).
LOST_ANSWERS: dict[str, dict[str, Any]] = {
    "held": {"kind": FaultKind.DROP_RESPONSE, "mode": "hold", "hold_s": HOLD_S},
    "cut": {"kind": FaultKind.DROP_RESPONSE, "mode": "close"},
    "503_unknown": {"kind": FaultKind.UNKNOWN_ERROR},
    "503_unknown_not_executed": {"kind": FaultKind.UNKNOWN_ERROR, "execute": False},
    "503_after_execution": {"kind": FaultKind.UNAVAILABLE, "execute": True, "status": 503},
    "403_after_execution": {"kind": FaultKind.UNAVAILABLE, "execute": True, "status": 403},
}


def fault(path: str, method: str, **rule: Any) -> Inject:
    """Inject one fault rule on the exchange, for the next matching request."""

    async def add(server: SimServer) -> None:
        server.faults.add(count=1, path=path, method=method, **rule)

    async def inject(bench: Bench, _rng: random.Random) -> int:
        await bench.on_exchange(add)
        return 1

    return inject


async def clear_faults(bench: Bench) -> None:
    async def clear(server: SimServer) -> None:
        server.faults.clear()
        server.resume_websockets()

    await bench.on_exchange(clear)


def on_exchange(action_name: str, *args: Any) -> Inject:
    """Call one of the exchange's own fault methods (stall, disconnect, expire listen keys)."""

    async def act(server: SimServer) -> None:
        result = getattr(server, action_name)(*args)
        if asyncio.iscoroutine(result):
            await result

    async def inject(bench: Bench, _rng: random.Random) -> int:
        await bench.on_exchange(act)
        return 1

    return inject


async def silent_listen_key_expiry(bench: Bench, _rng: random.Random) -> int:
    """The listen key expires without the listenKeyExpired event: the socket stays open and hears nothing more."""

    async def expire(server: SimServer) -> int:
        return server.expire_listen_keys(silent=True)

    return 1 if await bench.on_exchange(expire) else 0


async def black_hole_user_stream(bench: Bench, _rng: random.Random) -> int:
    """The user stream's socket stays open but is no longer read: no events, and its pings go unanswered."""

    async def stall(server: SimServer) -> int:
        return server.stall_websockets(None, "/private/*", pings=False)

    return 1 if await bench.on_exchange(stall) else 0


def clock_skew(ms: int) -> Inject:
    async def skew(server: SimServer) -> None:
        server.faults.clock_skew_ms = ms

    async def inject(bench: Bench, _rng: random.Random) -> int:
        await bench.on_exchange(skew)
        return 1

    return inject


def rate_limit_storm(requests: int, retry_after_s: int | None = None) -> Inject:
    """Every request answered 429 -1003 until `requests` have been refused (Retry-After: `retry_after_s`, else
    the rest of the minute)."""

    async def storm(server: SimServer) -> None:
        server.faults.add(FaultKind.RATE_LIMIT, count=requests, retry_after_s=retry_after_s)

    async def inject(bench: Bench, _rng: random.Random) -> int:
        await bench.on_exchange(storm)
        return 1

    return inject


def timed_storm(seconds: float) -> Inject:
    """Every request answered 429 for `seconds`, each telling to come back at the end of the weight minute (what
    the exchange says without a Retry-After of its own)."""

    async def inject(bench: Bench, _rng: random.Random) -> int:
        async def start(server: SimServer) -> FaultRule:
            return server.faults.add(FaultKind.RATE_LIMIT)

        rule = await bench.on_exchange(start)

        async def end() -> None:
            await asyncio.sleep(seconds)

            async def stop(server: SimServer) -> None:
                if rule in server.faults.rules:
                    server.faults.rules.remove(rule)

            await bench.on_exchange(stop)

        bench.background.add(asyncio.create_task(end()))
        return 1

    return inject


def database_outage(seconds: float) -> Inject:
    """The monitor's database connections dropped and refused for `seconds` (the server itself stays up)."""

    async def inject(bench: Bench, _rng: random.Random) -> int:
        bench.proxy.cut(seconds)
        return 1

    return inject


async def database_back(bench: Bench) -> None:
    bench.proxy.heal()


def database_down_at_next_fill(seconds: float) -> Inject:
    """PostgreSQL stops the instant the exchange fills the run's next order (the entry a cycle sent, TP1, the exit):
    the answer or the event is in flight and its transition cannot be written; the process that sent the order
    meets a dead connection, for `seconds`."""

    async def inject(bench: Bench, _rng: random.Random) -> int:
        symbol = bench.current_symbol
        proxy = bench.proxy
        fired = False

        def on_event(event: dict[str, Any]) -> None:
            nonlocal fired
            order = event.get("o", {})
            filled = event.get("e") == "ORDER_TRADE_UPDATE" and order.get("x") == "TRADE"
            if filled and order.get("s") == symbol and not fired:
                fired = True
                proxy.cut(seconds)

        async def arm(server: SimServer) -> None:
            bench.disarm.append(server.engine.subscribe(on_event))

        await bench.on_exchange(arm)
        return 1

    return inject


async def restart_exchange(bench: Bench, _rng: random.Random) -> int:
    await bench.restart_exchange()
    return 1


async def restart_exchange_without_state(bench: Bench, _rng: random.Random) -> int:
    await bench.restart_exchange(keep_state=False)
    return 1


def ip_ban(seconds: float) -> Inject:
    """Binance bans this IP (418) for `seconds`: nothing can be sent meanwhile, the exchange stops protect."""

    async def ban(server: SimServer) -> None:
        server.limits.banned_until["127.0.0.1"] = server.clock.now_ms() + int(seconds * 1000)

    async def inject(bench: Bench, _rng: random.Random) -> int:
        await bench.on_exchange(ban)
        return 1

    return inject


async def ban_over(bench: Bench) -> None:
    """Wait out the ban: the next run's entry would only meet it."""

    async def ban_end_s(server: SimServer) -> float:
        until = server.limits.ban_check("127.0.0.1")
        return 0.0 if until is None else max(until - server.clock.now_ms(), 0) / 1000 + 0.05

    await asyncio.sleep(await bench.on_exchange(ban_end_s))


async def foreign_scan(bench: Bench, _rng: random.Random) -> int:
    """Another process on the host (a scan) uses its whole share of the minute's request weight."""
    store = PostgresBudgetStore(bench.database.engine)
    scan = client(bench.sim.rest_url, bench.sim.api_key, bench.sim.api_secret, budget_store=store, max_wait_s=0.1)
    try:
        await use_the_normal_share(scan, store)
    finally:
        await scan.aclose()
    return 1


def kill_monitor() -> Inject:
    """SIGKILL the leading monitor process; it comes back after a random pause while the market moves on."""

    async def inject(bench: Bench, rng: random.Random) -> int:
        leader = bench.leader()
        assert leader is not None, "kill scenarios need a monitor process that leads"
        leader.kill()

        async def restart() -> None:
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            leader.start()

        bench.background.add(asyncio.create_task(restart()))
        return 1

    return inject


def freeze_monitor(seconds: float) -> Inject:
    """SIGSTOP the leading monitor process for `seconds` (longer than its lease): the standby must take over, and
    the old leader, woken, must send nothing."""

    async def inject(bench: Bench, _rng: random.Random) -> int:
        leader = bench.leader()
        assert leader is not None, "freeze scenarios need a monitor process that leads"
        leader.freeze()

        async def wake() -> None:
            await asyncio.sleep(seconds)
            leader.resume()

        bench.background.add(asyncio.create_task(wake()))
        return 1

    return inject


def bogus_mark_tick(factor: str) -> Inject:
    """One mark-price event, far from the real price, on the position's stream only: the exchange never moved."""

    async def inject(bench: Bench, _rng: random.Random) -> int:
        symbol = bench.current_symbol

        async def send(server: SimServer) -> int:
            event = server.market.mark_price_event(symbol)
            event["p"] = str(Decimal(event["p"]) * Decimal(factor))
            return server.send_stream_event(f"{symbol.lower()}@markPrice@1s", event)

        return 1 if await bench.on_exchange(send) else 0

    return inject


def _lost_answer_scenarios() -> list[Scenario]:
    scenarios = []
    for how, rule in LOST_ANSWERS.items():
        scenarios.append(Scenario(f"entry_{how}", BEFORE_ENTRY, fault(ORDER, "POST", **rule), heal=clear_faults))
        # The first stop goes out right after the entry fills; the breakeven stop right after TP1.
        scenarios.append(Scenario(f"stop_{how}", BEFORE_ENTRY, fault(ALGO, "POST", **rule), heal=clear_faults))
        scenarios.append(Scenario(f"breakeven_{how}", AT_TP1, fault(ALGO, "POST", **rule), heal=clear_faults))
        scenarios.append(
            Scenario(f"cancel_{how}", AT_TP1, fault(ALGO, "DELETE", **rule), heal=clear_faults, exits=("tp2",))
        )
        scenarios.append(
            Scenario(f"close_{how}", AT_EXIT, fault(ORDER, "POST", **rule), heal=clear_faults, exits=("close",))
        )
    return scenarios


MALFORMED = [
    Scenario(
        "entry_html_502", BEFORE_ENTRY, fault(ORDER, "POST", kind=FaultKind.MALFORMED, status=502), heal=clear_faults
    ),
    Scenario(
        "stop_html_502", BEFORE_ENTRY, fault(ALGO, "POST", kind=FaultKind.MALFORMED, status=502), heal=clear_faults
    ),
    Scenario(
        "entry_empty_answer",
        BEFORE_ENTRY,
        fault(ORDER, "POST", kind=FaultKind.MALFORMED, shape="empty"),
        heal=clear_faults,
    ),
    Scenario(
        "breakeven_missing_fields",
        AT_TP1,
        fault(ALGO, "POST", kind=FaultKind.MALFORMED, shape="missing_fields"),
        heal=clear_faults,
    ),
    Scenario(
        "cancel_missing_fields",
        AT_TP1,
        fault(ALGO, "DELETE", kind=FaultKind.MALFORMED, shape="missing_fields"),
        heal=clear_faults,
        exits=("tp2",),
    ),
    Scenario("absurd_mark_tick_down", AT_TP1, bogus_mark_tick("0.01")),
    Scenario("absurd_mark_tick_up", AT_TP1, bogus_mark_tick("100")),
]

STREAMS = [
    Scenario("user_stream_stall_tp1", AT_TP1, on_exchange("stall_websockets", 30.0, "/private/*"), heal=clear_faults),
    Scenario(
        "user_stream_stall_stop",
        AT_EXIT,
        on_exchange("stall_websockets", 30.0, "/private/*"),
        heal=clear_faults,
        exits=("stop", "breakeven"),
    ),
    Scenario("user_stream_disconnect", AT_TP1, on_exchange("disconnect_websockets", "/private/*")),
    Scenario("listen_key_expiry", AT_TP1, on_exchange("expire_listen_keys")),
    Scenario("listen_key_silent_expiry", AT_TP1, silent_listen_key_expiry),
    Scenario("user_stream_black_hole", AT_TP1, black_hole_user_stream, heal=clear_faults),
    Scenario("market_stream_disconnect", AT_TP1, on_exchange("disconnect_websockets", "/market/*")),
]

LIMITS = [
    Scenario("rate_limit_storm_20s", AT_TP1, timed_storm(20.0), heal=clear_faults, slow=True),
    Scenario("rate_limit_storm_retry_after_1s", AT_TP1, rate_limit_storm(6, retry_after_s=1), heal=clear_faults),
    Scenario("ip_ban_3s", AT_TP1, ip_ban(3.0), heal=ban_over),
    Scenario("foreign_process_uses_the_budget", AT_TP1, foreign_scan),
    Scenario("clock_skew_plus_3s", AT_TP1, clock_skew(3_000), heal=clear_faults),
    Scenario("clock_skew_minus_3s", AT_TP1, clock_skew(-3_000), heal=clear_faults),
]

# The exchange that comes back without the position: the database follows it (closed, marked vanished, its exit
# estimated) and a person is told; nothing is sent for it.
VANISHED = ("vanished from the exchange",)

EXCHANGE = [
    Scenario("exchange_restart_when_protected", PROTECTED, restart_exchange),
    Scenario("exchange_restart_at_exit", AT_EXIT, restart_exchange),
    Scenario(
        "exchange_restart_without_state_when_protected",
        PROTECTED,
        restart_exchange_without_state,
        vanishes=True,
        expected_alerts=VANISHED,
    ),
    Scenario(
        "exchange_restart_without_state_after_tp1",
        AT_EXIT,
        restart_exchange_without_state,
        vanishes=True,
        expected_alerts=VANISHED,
    ),
]

DATABASE = [
    Scenario("database_down_at_tp1", AT_TP1, database_outage(3.0), heal=database_back),
    Scenario("database_down_at_exit", AT_EXIT, database_outage(3.0), heal=database_back),
    Scenario(
        "database_down_mid_cycle_at_entry_fill",
        BEFORE_ENTRY,
        database_down_at_next_fill(3.0),
        heal=database_back,
        by_cycle=True,
    ),
    Scenario("database_down_mid_transition_tp1", AT_TP1, database_down_at_next_fill(3.0), heal=database_back),
    Scenario(
        "database_down_mid_transition_exit",
        AT_EXIT,
        database_down_at_next_fill(3.0),
        heal=database_back,
        exits=("tp2", "breakeven"),
    ),
]


# ------------------------------------------------------------------------------------- several positions at once

# The daily loss cap: 20 USDT, each entry sized to lose at most 8 USDT (0.08 % of the sim's 10,000) or what is left
# of the 20 once the open risk of the positions already decided is counted; small positions (2,000 USDT at most)
# so that several fit the account at once.
CAP = RiskLimits(
    max_concurrent_positions=5,
    max_position_size_usdt=Decimal(2000),
    max_daily_loss_usdt=Decimal(20),
    risk_per_trade_pct=Decimal("0.08"),
)
TAKER_FEE = SimConfig().taker_fee
# Racing runs: three slots for two cycles and two manual signals wanting seven.
RACE = CAP.model_copy(update={"max_concurrent_positions": 3})


async def _wallet(bench: Bench) -> Decimal:
    async def read(server: SimServer) -> Decimal:
        return server.engine.wallet

    wallet: Decimal = await bench.on_exchange(read)
    return wallet


async def _signals(bench: Bench, run: Run, symbols: list[str]) -> list[Signal]:
    marks = {m.symbol: m.mark_price for m in await bench.exchange.premium_index()}
    bar = placement.bar_of_run(bench.server.server_time_ms(), run.index)
    return [
        placement.signal(symbol, run.rng.choice(list(Direction)), bar, marks[symbol], run.rng.uniform(75, 95))
        for symbol in symbols
    ]


async def _stop_out(bench: Bench, keys: list[str], gap: Decimal) -> tuple[list[str], Decimal]:
    """Every position through its stop at once (`gap`: how far past it the price jumps, as a fraction); returns
    the symbols and the slippage no cap can size: stops further from the entry's fill than planned from the price
    the entry was sized at, and exits beyond their stops' triggers."""
    positions = [await bench.desk.wait(key, is_open, "open and protected", timeout_s=RUN_TIMEOUT_S) for key in keys]
    seen = {t["id"] for t in bench.engine.trades}
    for p in positions:
        assert p.stop_price is not None
        tick = p.policy.rules.tick_size
        beyond = 2 * tick + (p.stop_price * gap / tick).to_integral_value() * tick
        await bench.set_price(p.symbol, p.stop_price - p.direction.sign * beyond)
    for p in positions:
        async with reaction(bench, "stop"):
            await bench.desk.wait(p.key, is_closed, "stopped out", timeout_s=RUN_TIMEOUT_S)
    symbols = [p.symbol for p in positions]
    for symbol in symbols:
        await settle(bench, symbol)
    with bench.database.session() as session:
        sized = {
            row.intent_key: (row.reference_price, row.stop_price)
            for row in session.scalars(select(OrderIntentRow).where(OrderIntentRow.intent_key.in_(keys)))
        }
    slippage = Decimal(0)
    for p in positions:
        assert p.stop_price is not None
        # The entry filled at the book, not at the price it was sized at, and its stop was placed from the fill:
        # what that moved the stop away from the entry is slippage too.
        reference, planned_stop = sized[p.key]
        wider = p.direction.sign * ((p.entry_price - p.stop_price) - (reference - planned_stop))
        slippage += max(wider, Decimal(0)) * p.entry_qty * (1 + TAKER_FEE)  # the fee is paid on the price paid
        closing = "SELL" if p.direction is Direction.LONG else "BUY"
        for t in bench.engine.trades:
            if t["id"] not in seen and t["symbol"] == p.symbol and t["side"] == closing:
                beyond_stop = p.direction.sign * (p.stop_price - Decimal(t["price"]))
                slippage += max(beyond_stop, Decimal(0)) * Decimal(t["qty"]) * (1 + TAKER_FEE)
    return symbols, slippage


def several_stopped_out(gap: Decimal) -> RunBody:
    """Four signals under the cap, placed by one cycle; every position it opened stopped out together."""

    async def body(bench: Bench, run: Run) -> list[str]:
        bench.run_symbols = run.symbols[:4]
        placement.new_day(bench.database)
        wallet = await _wallet(bench)
        ids = placement.record_scan_signals(bench.database, await _signals(bench, run, bench.run_symbols))
        result = await placement.run_cycle(bench.cycle_setup(CAP), ids)
        if result.failure:
            raise AssertionError(f"the cycle failed: {result.failure}")
        keys = [key for key, _ in result.approved]
        bench.keys.extend(keys)
        if len(keys) < 2:
            raise AssertionError(f"the cap scenario needs several positions open: {result}")
        run.figures.faults_injected += 1
        symbols, slippage = await _stop_out(bench, keys, gap)
        loss = wallet - await _wallet(bench)
        run.figures.day_losses.append(DayLoss(loss, CAP.max_daily_loss_usdt, slippage, len(keys)))
        return symbols

    return body


async def racing_cycles_and_manual_signals(bench: Bench, run: Run) -> list[str]:
    """Two cycles over overlapping signals and two manual signals (one on a symbol a cycle wants, the other way
    round), all started together for three slots and a 20 USDT day; then every position stopped out."""
    bench.run_symbols = run.symbols[:7]
    placement.new_day(bench.database)
    wallet = await _wallet(bench)
    scanned = await _signals(bench, run, bench.run_symbols[:6])
    ids = placement.record_scan_signals(bench.database, scanned)
    first = scanned[0]
    (extra,) = await _signals(bench, run, bench.run_symbols[6:7])
    against = placement.signal(
        first.symbol,
        Direction.SHORT if first.direction is Direction.LONG else Direction.LONG,
        first.bar_open_time_ms,
        first.price,
    )
    results = await placement.race(bench.cycle_setup(RACE), [ids[:4], ids[2:]], [extra, against])
    run.figures.faults_injected += 1
    failures = [r.failure for r in results if r.failure]
    if failures:
        raise AssertionError(f"a racing run failed: {failures}")
    approved = [pair for r in results for pair in r.approved]
    keys = [key for key, _ in approved]
    bench.keys.extend(keys)
    symbols = [symbol for _, symbol in approved]
    held = [s for s, p in bench.engine.positions.items() if p.amount != 0 and s in bench.run_symbols]
    if max(len(keys), len(held)) > RACE.max_concurrent_positions or len(set(symbols)) < len(symbols):
        run.figures.limits_exceeded += 1
        run.figures.notes.append(f"run {run.index}: approved {symbols}, held on the exchange {held}")
    if not keys:
        raise AssertionError("the racing runs opened nothing")
    traded, slippage = await _stop_out(bench, keys, Decimal(0))
    loss = wallet - await _wallet(bench)
    run.figures.day_losses.append(DayLoss(loss, RACE.max_daily_loss_usdt, slippage, len(keys)))
    return traded


def _unused(_bench: Bench, _rng: random.Random) -> Awaitable[int]:
    raise AssertionError("a scenario with a run body injects in it")


SEVERAL = [
    Scenario("daily_cap_stops_hit_together", BEFORE_ENTRY, _unused, body=several_stopped_out(Decimal(0))),
    Scenario("daily_cap_gap_through_stops", BEFORE_ENTRY, _unused, body=several_stopped_out(Decimal("0.01"))),
    Scenario("racing_cycles_and_manual_signals", BEFORE_ENTRY, _unused, body=racing_cycles_and_manual_signals),
]

# A frozen or killed leader is a real outage until the standby (or the restarted process) leads: told, then its end.
LEADER_GONE = ("no monitor is running", "a monitor is active again")

PROCESS = [
    Scenario("monitor_sigkill_at_tp1", AT_TP1, kill_monitor(), processes=1, expected_alerts=LEADER_GONE),
    Scenario("monitor_sigkill_at_exit", AT_EXIT, kill_monitor(), processes=1, expected_alerts=LEADER_GONE),
    Scenario("monitor_sigkill_when_protected", PROTECTED, kill_monitor(), processes=1, expected_alerts=LEADER_GONE),
    # The test processes hold a 4 s lease (tests/integration/monitor/processes.py): frozen for 6 s, the standby leads.
    Scenario("monitor_sigstop_at_tp1", AT_TP1, freeze_monitor(6.0), processes=2, expected_alerts=LEADER_GONE),
    Scenario("monitor_sigstop_at_exit", AT_EXIT, freeze_monitor(6.0), processes=2, expected_alerts=LEADER_GONE),
]

SCENARIOS: list[Scenario] = [
    *_lost_answer_scenarios(),
    *MALFORMED,
    *STREAMS,
    *LIMITS,
    *EXCHANGE,
    *DATABASE,
    *PROCESS,
    *SEVERAL,
]
