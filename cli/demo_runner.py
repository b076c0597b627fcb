"""`ats demo`: the whole mission on this machine, with nothing configured, the same story on any machine.

What runs is the real system: an embedded PostgreSQL of the demo's own, the simulated exchange on loopback, the
monitor as its own process, and the trading-cycle flow on the real Prefect engine (against a Prefect server the
demo starts first). Telegram is the one stand-in: a loopback copy of its sendMessage endpoint, so the messages the
system sends show here exactly as they would on a phone.

The demo drives time instead of racing it (ats.demo has the script and its reasons): the exchange runs in manual
mode on hourly bars, and the demo moves its market, a scripted price step or a whole bar at a time, only once the
system has reacted to the last move. Every wait is on something observable (rows in the database, the exchange's
positions, the monitor's readiness) and bounded; when one runs out, the demo says what it was waiting for, wraps
up, and exits non-zero.

This module is imported only by the `ats demo` command (it reaches into db, flows and monitor).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ats.clock import format_utc
from ats.config import Settings, load_settings
from ats.demo import (
    BAR_INTERVAL,
    BAR_MS,
    MAX_CYCLES,
    SEED,
    TICK_S,
    Holding,
    Plot,
    PositionView,
    Progress,
    Reaction,
    assign_plots,
    market_start_ms,
    next_step,
    reacted,
    still_to_show,
    unsettled,
)
from ats.domain import Direction
from ats.lifecycle import OrderState, Phase, Position
from ats.log import ConsoleFormatter, RedactingFilter
from ats.notify import ExitReason, to_plain_text
from sim.server import OffsetClock, SimConfig, SimServer, SimServerThread

T = TypeVar("T")

DEMO_ACCOUNT = "demo"
POLL_S = 0.1
MAX_STEPS = 200  # price steps one plot may take (a plot needs a few dozen at most)
# Bounds on the waits: generous, so that a loaded machine only makes the demo slower. Each names what it waits for.
PREFECT_START_TIMEOUT_S = 240.0
MONITOR_READY_TIMEOUT_S = 120.0
CYCLE_TIMEOUT_S = 300.0
PROTECTED_TIMEOUT_S = 90.0
REACTION_TIMEOUT_S = 60.0
SETTLED_TIMEOUT_S = 90.0
WRAP_UP_TIMEOUT_S = 90.0

SCRIPT_LABELS = {
    Plot.TAKE_PROFITS: "to TP2",
    Plot.BREAKEVEN: "TP1, back",
    Plot.STOP_LOSS: "to stop",
    Plot.MARKET: "market",
}
PLOT_LINES = {
    Plot.TAKE_PROFITS: "runs to TP1 (the stop moves to breakeven), then to TP2",
    Plot.BREAKEVEN: "runs to TP1, then back to its breakeven stop",
    Plot.STOP_LOSS: "goes straight to its stop",
}
UNPROTECTED = (Phase.PENDING_ENTRY, Phase.PROTECTING)


class Stalled(Exception):
    """A wait ran out: the demo cannot go on (the message says what it was waiting for)."""


# ---------------------------------------------------------------------------------------------- configuration


def demo_environment(*, rest_url: str, ws_url: str, database_url: str, telegram_url: str, token: str) -> dict[str, str]:
    """The demo's configuration, as the environment every process (this one, the monitor) reads."""
    return {
        "ATS_VENUE": "sim",
        "ATS_ACCOUNT": DEMO_ACCOUNT,
        "ATS_DATABASE_URL": database_url,
        "ATS_BAR_INTERVAL": BAR_INTERVAL,
        "ATS_EXCHANGE__REST_URL": rest_url,
        "ATS_EXCHANGE__WS_URL": ws_url,
        # The demo moves the exchange's clock forward a bar at a time: measure the offset again after a pause.
        "ATS_EXCHANGE__TIME_RESYNC_S": "2",
        # The market is quiet between the demo's moves by design: that silence is not a dead connection.
        "ATS_MONITOR__STREAM_STALE_AFTER_S": "900",
        "ATS_TELEGRAM__TOKEN": token,
        "ATS_TELEGRAM__CHAT_ID": "demo",
        "ATS_TELEGRAM__API_URL": telegram_url,
        "ATS_LOG_LEVEL": "INFO",
    }


def prefect_environment(home: Path, port: int) -> dict[str, str]:
    """Prefect for the demo: its own home and server (the runs never mix with yours), quiet, no telemetry."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    }


def isolate_environment(data_dir: Path) -> None:
    """The demo tells the same story everywhere: none of this shell's ATS_* or PREFECT_* settings apply to it."""
    for name in list(os.environ):
        if name.startswith(("ATS_", "PREFECT_")):
            del os.environ[name]
    os.environ["ATS_DATA_DIR"] = str(data_dir)


class HeldClock:
    """The wall clock's pace from a chosen instant, standing still until `release()`.

    The exchange's market is built at that instant exactly (a bar boundary), whatever the machine's speed, so
    its seeded path is the same on every run.
    """

    def __init__(self, start_ms: int) -> None:
        self._start_ms = start_ms
        self._released: float | None = None

    def release(self) -> None:
        if self._released is None:
            self._released = time.monotonic()

    def now_ms(self) -> int:
        if self._released is None:
            return self._start_ms
        return self._start_ms + int((time.monotonic() - self._released) * 1000)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# ---------------------------------------------------------------------------------------------- Telegram stand-in


class TelegramStandIn:
    """A loopback copy of the Bot API's sendMessage: what the system sends lands in `messages`."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.messages: deque[tuple[float, str]] = deque()  # (time.monotonic() on arrival, text)
        self.count = 0
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                ok = self.path == f"/bot{stand_in.token}/sendMessage" and isinstance(body.get("text"), str)
                if ok:
                    stand_in.received(body["text"])
                reply = {"ok": ok, "result": {"message_id": stand_in.count}} if ok else {"ok": False}
                data = json.dumps(reply).encode()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="telegram-stand-in", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def received(self, text: str) -> None:
        with self._lock:
            self.count += 1
            self.messages.append((time.monotonic(), text))

    def drain(self) -> list[tuple[float, str]]:
        with self._lock:
            items = list(self.messages)
            self.messages.clear()
            return items

    def __enter__(self) -> TelegramStandIn:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class DemoSummary:
    """The figures the demo ends with (also written by --summary-json)."""

    seconds: float = 0.0
    cycles: int = 0
    cycle_failures: int = 0
    bars: int = 0  # bars the market moved on
    pools: list[str] = field(default_factory=list)
    symbols_scored: int = 0
    signals: int = 0
    trades: int = 0
    longs: int = 0
    shorts: int = 0
    failures: int = 0
    protected: int = 0
    tp1: int = 0
    breakeven_moves: int = 0
    tp2: int = 0
    stops: int = 0
    other_exits: int = 0
    messages: int = 0
    wallet_balance: str = "0"
    unrealized_pnl: str = "0"
    available_balance: str = "0"
    realized_pnl: str = "0"
    open_positions: list[dict[str, str]] = field(default_factory=list)
    max_positions: int = 0
    plots: dict[str, str] = field(default_factory=dict)
    stalled: str = ""  # what the demo was waiting for when a wait ran out ("" when none did)
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent in each part (start-up, cycles, ...)

    def mission(self) -> list[tuple[str, bool]]:
        """Each part of the mission the demo is meant to show, and whether it did."""
        return [
            ("pools built", bool(self.pools)),
            ("symbols scored", self.symbols_scored > 0),
            ("signals sent", self.signals > 0),
            ("entries with protection", self.protected > 0),
            ("long and short positions", self.longs > 0 and self.shorts > 0),
            ("TP1 with the stop moved to breakeven", self.breakeven_moves > 0),
            ("TP2 and stop outcomes", self.tp2 > 0 and self.stops > 0),
        ]

    @property
    def mission_complete(self) -> bool:
        return all(ok for _, ok in self.mission()) and not self.stalled

    def missing(self) -> list[str]:
        return [name for name, ok in self.mission() if not ok]


class Demo:
    def __init__(self, console: Console, *, data_dir: Path) -> None:
        self.console = console
        self.data_dir = data_dir
        self.root = data_dir / "demo"
        self.started = time.monotonic()
        self.summary = DemoSummary()
        self.steps: deque[tuple[float, str]] = deque()  # printed once, above the live view, by the main thread
        self.cast: list[tuple[str, Direction]] = []  # every position so far, in opening order
        self.symbols: dict[str, str] = {}  # position key -> symbol
        self.plots: dict[str, Plot] = {}
        self.played: set[str] = set()  # plotted positions whose plot ran to the position's close
        self.doing = "starting"
        self.bar_ms = 0
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._telegram: TelegramStandIn | None = None
        self._monitor: subprocess.Popen[bytes] | None = None
        self._settings: Settings | None = None
        self._sim: SimServerThread | None = None
        self._last_view = 0.0

    # ------------------------------------------------------------------------------------------ helpers

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, text: str) -> None:
        with self._lock:
            self.steps.append((time.monotonic(), f"[dim]{self.elapsed():5.1f}s[/] {text}"))

    def _timed(self, name: str, since: float) -> None:
        self.summary.timings[name] = round(self.summary.timings.get(name, 0.0) + time.monotonic() - since, 1)

    @property
    def settings(self) -> Settings:
        assert self._settings is not None
        return self._settings

    @property
    def sim(self) -> SimServerThread:
        assert self._sim is not None
        return self._sim

    def _print_news(self) -> None:
        """What happened since the last look, in the order it happened: the demo's steps, and the messages the
        system sent (shown as on a phone)."""
        console = self._live.console if self._live is not None else self.console
        with self._lock:
            news = [(at, "step", text) for at, text in self.steps]
            self.steps.clear()
        if self._telegram is not None:
            news += [(at, "message", text) for at, text in self._telegram.drain()]
        for _, kind, text in sorted(news, key=lambda item: item[0]):
            if kind == "step":
                console.print(text, highlight=False)
                continue
            self.summary.messages += 1
            console.print(Panel(to_plain_text(text), title="Telegram", border_style="cyan", expand=False))

    def _refresh(self) -> None:
        self._print_news()
        if self._live is not None and time.monotonic() - self._last_view >= 0.25:
            self._last_view = time.monotonic()
            self._live.update(self._view(self._journal().open_positions() if self._settings else []))

    def _wait(self, what: str, timeout_s: float, check: Callable[[], T], *, needs_monitor: bool = True) -> T:
        """Until `check()` returns something truthy; refreshes the screen meanwhile. Raises Stalled on timeout, or
        when the monitor stopped while the wait needs it."""
        deadline = time.monotonic() + timeout_s
        previous, self.doing = self.doing, f"waiting for {what}"
        try:
            while True:
                result = check()
                if result:
                    return result
                if needs_monitor and self._monitor is not None and self._monitor.poll() is not None:
                    raise Stalled(f"the monitor stopped (exit code {self._monitor.returncode}; see demo/monitor.log)")
                if time.monotonic() > deadline:
                    raise Stalled(f"timed out after {timeout_s:.0f} s waiting for {what}")
                self._refresh()
                time.sleep(POLL_S)
        finally:
            self.doing = previous

    def _in_background(self, what: str, timeout_s: float, work: Callable[[], T], *, needs_monitor: bool = True) -> T:
        """Run `work` in a thread (a flow run) while the screen stays live; its result, or Stalled."""
        box_: dict[str, Any] = {}

        def target() -> None:
            try:
                box_["result"] = work()
            except BaseException as exc:  # handed to the main thread
                box_["error"] = exc

        thread = threading.Thread(target=target, name="demo-flow", daemon=True)
        thread.start()
        self._wait(what, timeout_s, lambda: not thread.is_alive(), needs_monitor=needs_monitor)
        if "error" in box_:
            error = box_["error"]
            logging.getLogger(__name__).error(f"{what} raised", exc_info=error)
            raise Stalled(f"{what} raised {type(error).__name__}: {error} (see demo/demo.log)") from error
        result: T = box_["result"]
        return result

    def _journal(self) -> Any:
        from db.journal import PostgresJournal
        from tasks.runtime import shared_database

        return PostgresJournal(shared_database(self.settings), self.settings.account, language=self.settings.language)

    # ------------------------------------------------------------------------------------------ run

    def run(self) -> DemoSummary:
        self.root.mkdir(parents=True, exist_ok=True)
        _log_to_file(self.root / "demo.log")
        with contextlib.ExitStack() as stack:
            try:
                self._start(stack)
            except Stalled as exc:
                self.summary.stalled = str(exc)
                self.step(f"[red]{exc}[/]")
                self._print_news()
            else:
                with Live(self._view([]), console=self.console, refresh_per_second=4, transient=True) as live:
                    self._live = live
                    try:
                        self._mission()
                    except Stalled as exc:
                        self.summary.stalled = str(exc)
                        self.step(f"[red]{exc}[/]")
                    self._print_news()
                self._live = None
                self._finish()
        self.summary.seconds = round(self.elapsed(), 1)
        return self.summary

    def _start(self, stack: contextlib.ExitStack) -> None:
        """Prefect's server first (the slowest to start, so it starts in the background), then PostgreSQL, the
        exchange, the Telegram stand-in and the monitor; returns once all of them are ready."""
        started = time.monotonic()
        prefect_ready = stack.enter_context(self._prefect())
        database_url = self._database()
        clock = HeldClock(market_start_ms(int(time.time() * 1000)))
        config = SimConfig(seed=SEED, bar_interval=BAR_INTERVAL, mode="manual", port=0, listen_key_ttl_s=30 * 86400)
        self._sim = stack.enter_context(SimServerThread(config, clock=OffsetClock(clock)))
        clock.release()
        self.bar_ms = clock.now_ms() - clock.now_ms() % BAR_MS
        self.step(
            f"simulated exchange on {self.sim.rest_url} (36 perpetuals, {BAR_INTERVAL} bars, seed {SEED}; "
            "its market moves only when the demo moves it)"
        )
        self._telegram = stack.enter_context(TelegramStandIn(f"{secrets.randbelow(10**9)}:demo-{secrets.token_hex(8)}"))
        os.environ.update(
            demo_environment(
                rest_url=self.sim.rest_url,
                ws_url=self.sim.ws_url,
                database_url=database_url,
                telegram_url=self._telegram.url,
                token=self._telegram.token,
            )
        )
        self._settings = load_settings()
        self.summary.max_positions = self.settings.limits.max_concurrent_positions
        self._monitor = stack.enter_context(self._monitor_process())
        self._print_news()
        prefect_ready()
        self._print_news()
        self._timed("start-up", started)

    @contextlib.contextmanager
    def _prefect(self) -> Iterator[Callable[[], None]]:
        """Start the demo's Prefect server now, in the background; yields the call that waits until it is up.

        Prefect's start-up (its imports, and its database migrations on a first run) is the slowest part of
        starting: it runs while PostgreSQL, the exchange and the monitor start, and before the market does. The
        server is the one Prefect starts for itself when no API is configured (API only, no UI, no background
        services), with its data under <data dir>/demo/prefect.
        """
        port = _free_port()
        home = self.root / "prefect"
        home.mkdir(parents=True, exist_ok=True)
        os.environ.update(prefect_environment(home, port))
        server_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        server_env |= {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        log = (self.root / "prefect.log").open("ab")
        process = subprocess.Popen(  # noqa: S603  (our own interpreter and Prefect's server)
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env,
        )  # fmt: skip
        failed: list[BaseException] = []

        def warm_up() -> None:
            """Import the flows (Prefect with them) now, off the critical path."""
            try:
                import flows.close_all
                import flows.trading_cycle  # noqa: F401
            except BaseException as exc:  # reported by ready()
                failed.append(exc)

        importer = threading.Thread(target=warm_up, name="demo-imports", daemon=True)
        importer.start()
        url = f"http://127.0.0.1:{port}/api/health"

        def ready() -> None:
            started = time.monotonic()

            def up() -> bool:
                if process.poll() is not None:
                    raise Stalled(f"the Prefect server exited with code {process.returncode} (see demo/prefect.log)")
                with contextlib.suppress(httpx.HTTPError):
                    return httpx.get(url, timeout=2.0).status_code == 200
                return False

            self._wait("the Prefect server to start", PREFECT_START_TIMEOUT_S, up)
            self._wait("the flows to load", PREFECT_START_TIMEOUT_S, lambda: not importer.is_alive())
            if failed:
                raise Stalled(f"the flows did not load: {failed[0]!r}")
            self.step(f"Prefect server ready on http://127.0.0.1:{port} (waited {time.monotonic() - started:.1f} s)")

        try:
            yield ready
        finally:
            importer.join(timeout=PREFECT_START_TIMEOUT_S)
            if "prefect" in sys.modules and process.poll() is None:
                _flush_prefect()
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
            log.close()

    def _database(self) -> str:
        """The demo's own embedded PostgreSQL (never yours: it holds a simulated market), a fresh database each
        run (so each run's market and records stand alone), left in place afterwards."""
        from sqlalchemy import create_engine, make_url, text

        from db.session import Database, start_embedded

        started = time.monotonic()
        url = start_embedded(self.root)
        name = make_url(url).database
        admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        os.environ["ATS_DATABASE_URL"] = url
        Database.open(load_settings()).dispose()  # migrates the new database
        self.step(f"PostgreSQL ready (embedded, {self.root / 'pgdata'}, fresh database, schema up to date)")
        self._timed("database", started)
        return url

    @contextlib.contextmanager
    def _monitor_process(self) -> Iterator[subprocess.Popen[bytes]]:
        port = _free_port()
        log = (self.root / "monitor.log").open("ab")
        process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
            [sys.executable, "-c", "from cli import main; main()", "monitor", "--health-port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
        try:
            _wait_ready(f"http://127.0.0.1:{port}/readyz", process, timeout_s=MONITOR_READY_TIMEOUT_S)
            self.step(f"monitor active and ready (pid {process.pid}, health http://127.0.0.1:{port}/readyz)")
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
            log.close()

    # ------------------------------------------------------------------------------------------ the mission

    def _mission(self) -> None:
        for number in range(1, MAX_CYCLES + 1):
            self._cycle(number)
            self._wait("every position to be protected on the exchange", PROTECTED_TIMEOUT_S, self._all_protected)
            self._cast()
            self._play()
            self._wait("the notifications to be sent", WRAP_UP_TIMEOUT_S, self._outbox_empty)
            missing = still_to_show((direction for _, direction in self.cast), self.plots, self.played)
            if not missing:
                self.step("[green]the story is told[/]: wrapping up")
                return
            if number == MAX_CYCLES:
                self.step(f"[red]after {MAX_CYCLES} bars the demo still lacks {', '.join(missing)}[/]")
                return
            self._next_bar(missing)

    def _cycle(self, number: int) -> None:
        from cli.flow_cmds import run_flow
        from flows.trading_cycle import trading_cycle

        started = time.monotonic()
        self.summary.cycles += 1
        self.step(f"bar {format_utc(self.bar_ms)}: trading cycle {number}: build-pools -> factor-scan -> place-orders")
        state, report = self._in_background(f"trading cycle {number}", CYCLE_TIMEOUT_S, lambda: run_flow(trading_cycle))
        self._timed("trading cycles", started)
        if report is None:
            self.summary.cycle_failures += 1
            self.step(f"[red]cycle {number} failed: {state.message}[/]")
            return
        self.summary.pools = list(report.universe)
        opened = ", ".join(sorted(report.opened)) or "nothing new"
        refused = f"; refused {len(report.refused)}" if report.refused else ""
        self.step(
            f"cycle {number} ({time.monotonic() - started:.1f} s): {len(report.universe)} symbols scored, "
            f"{report.signals} signals, opened {opened}{refused}"
        )

    def _all_protected(self) -> bool:
        positions = self._journal().open_positions()
        return not any(p.phase in UNPROTECTED for p in positions)

    def _cast(self) -> None:
        """New positions join the cast; the first ones get a plot."""
        known = {key for key, _ in self.cast}
        for position in self._journal().open_positions():
            if position.key not in known and position.levels is not None:
                self.cast.append((position.key, position.direction))
                self.symbols[position.key] = position.symbol
        before = set(self.plots)
        self.plots = assign_plots(self.cast, self.plots)
        for key, _ in self.cast:
            plot = self.plots[key]
            if key not in before and plot is not Plot.MARKET:
                direction = dict(self.cast)[key].value
                self.step(f"script: {self.symbols[key]} {direction} {PLOT_LINES[plot]}")

    def _play(self) -> None:
        """Walk each plotted position on through its plot, one beat a bar: up to the next level it crosses (TP1,
        then TP2 or the stop an hour later), and wait there for the system's reaction."""
        started = time.monotonic()
        for key, _ in self.cast:
            plot = self.plots.get(key, Plot.MARKET)
            if plot is Plot.MARKET or key in self.played:
                continue
            self._play_one(key, plot)
        self._timed("scripted prices", started)

    def _play_one(self, key: str, plot: Plot) -> None:
        journal = self._journal()
        for _ in range(MAX_STEPS):
            position = journal.position(key)
            if position is None or position.is_terminal:
                if position is not None and position.phase is Phase.CLOSED:
                    self.played.add(key)
                return
            if position.levels is None or position.stop_price is None:
                return
            view = PositionView(
                direction=position.direction,
                stop_price=position.stop_price,
                tp1_price=position.levels.tp1,
                tp2_price=None if position.levels.single_target else position.levels.tp2,
                tp1_done=position.tp1_done,
            )
            move = next_step(plot, view, self._mark(position.symbol))
            if move is None:
                self.played.add(key)
                return
            price = position.policy.rules.round_price(move.price)
            self.sim.control.set_price(position.symbol, price)
            if move.awaits is None:
                self._refresh()
                continue
            self.step(f"{position.symbol} {position.direction.value}: price {price}, past {move.level}")
            self._wait(
                f"{position.symbol}: {move.awaits.value}",
                REACTION_TIMEOUT_S,
                functools.partial(_reacted, journal, key, move.awaits),
            )
            after = journal.position(key)
            if after is not None and after.is_terminal:
                self.played.add(key)
            return
        raise Stalled(f"the script of {self.symbols[key]} made no headway in {MAX_STEPS} price steps")

    def _next_bar(self, missing: list[str]) -> None:
        """The market moves on by one bar; then the monitor must catch up with what the bar did."""
        started = time.monotonic()
        self.step(f"still to show: {', '.join(missing)}; the market moves on by one bar")
        self.sim.control.advance(BAR_MS / 1000, tick_seconds=TICK_S)
        self.bar_ms += BAR_MS
        self.summary.bars += 1
        self._wait("the monitor to catch up with the bar (the exchange and the records agree)", SETTLED_TIMEOUT_S,
                   lambda: not self._unsettled())  # fmt: skip
        self._timed("bars", started)

    def _unsettled(self) -> list[str]:
        holdings = [
            Holding(p.symbol, p.direction, p.phase, p.open_qty, _orders_pending(p))
            for p in self._journal().open_positions()
        ]
        return unsettled(holdings, self._exchange_positions())

    def _exchange_positions(self) -> dict[str, Decimal]:
        async def amounts(server: SimServer) -> dict[str, Decimal]:
            return {symbol: p.amount for symbol, p in server.engine.positions.items() if p.amount}

        result: dict[str, Decimal] = self.sim.call(amounts)
        return result

    def _mark(self, symbol: str) -> Decimal:
        async def mark(server: SimServer) -> Decimal:
            return server.market.quote(symbol).mark

        result: Decimal = self.sim.call(mark)
        return result

    # ------------------------------------------------------------------------------------------ wrapping up

    def _finish(self) -> None:
        from flows.close_all import close_all

        started = time.monotonic()
        self._collect()
        self.console.print(self._status_table())
        try:
            if self.summary.open_positions:
                self.console.print("closing the demo's remaining positions at market (the close-all flow) ...")
                state, _ = self._in_background(
                    "the close-all flow",
                    CYCLE_TIMEOUT_S,
                    lambda: _run(close_all, reason="end of the demo", halt_today=False),
                    needs_monitor=False,
                )
                if not state.is_completed():
                    self.console.print(f"[red]close-all {state.type.value.lower()}: {state.message}[/]")
            self._wait("every position closed and every message sent", WRAP_UP_TIMEOUT_S, self._wrapped_up)
        except Stalled as exc:
            self.summary.stalled = self.summary.stalled or str(exc)
            self.console.print(f"[red]{exc}[/]")
        self._print_news()
        assert self._monitor is not None
        self._monitor.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._monitor.wait(timeout=15)
        self._collect(balances_only=False)
        self._timed("wrap-up", started)
        self.console.print(self._statistics_table())
        checks = "  ".join(
            f"[{'green' if ok else 'red'}]{'✓' if ok else '✗'}[/] {name}" for name, ok in self.summary.mission()
        )
        self.console.print(f"mission: {checks}")

    def _wrapped_up(self) -> bool:
        return not self._journal().open_positions() and self._outbox_empty()

    def _outbox_empty(self) -> bool:
        """Every notification the system queued has been sent (to the Telegram stand-in, so it shows here)."""
        from sqlalchemy import func, select

        from db.models import NotificationRow
        from tasks.runtime import shared_database

        with shared_database(self.settings).session() as session:
            pending = session.scalar(
                select(func.count())
                .select_from(NotificationRow)
                .where(NotificationRow.account == self.settings.account, NotificationRow.status == "pending")
            )
        return not pending

    # ------------------------------------------------------------------------------------------ figures

    def _collect(self, *, balances_only: bool = True) -> None:
        from sqlalchemy import func, select

        from db.models import NotificationRow, PositionRow, ScanRow, SignalRow
        from tasks.runtime import shared_database

        async def account(server: SimServer) -> tuple[dict[str, Any], dict[str, Decimal]]:
            marks = {s: server.market.quote(s).mark for s, p in server.engine.positions.items() if p.amount}
            return server.engine.state(), marks

        state, marks = self.sim.call(account)
        s = self.summary
        s.wallet_balance = f"{Decimal(state['wallet_balance']):.2f}"
        s.unrealized_pnl = f"{Decimal(state['unrealized_pnl']):.2f}"
        s.available_balance = f"{Decimal(state['available_balance']):.2f}"
        account_name = self.settings.account
        with shared_database(self.settings).session() as session:
            rows = session.scalars(
                select(PositionRow).where(PositionRow.account == account_name).order_by(PositionRow.id)
            ).all()
            s.open_positions = [
                {
                    "symbol": r.symbol,
                    "side": r.direction,
                    "quantity": f"{r.quantity.normalize():f}",
                    "entry": _price(r.entry_price),
                    "mark": _price(marks.get(r.symbol)),
                    "pnl_pct": _pnl_pct(r, marks.get(r.symbol)),
                    "stop": _price(r.stop_price),
                    "tp1": "done" if r.tp1_done else _price(r.tp1_price),
                }
                for r in rows
                if r.closed_at is None
            ]
            if balances_only:
                return
            traded = [r for r in rows if r.entry_qty > 0]
            s.trades = len(traded)
            s.longs = sum(1 for r in traded if r.direction == Direction.LONG.value)
            s.shorts = sum(1 for r in traded if r.direction == Direction.SHORT.value)
            s.failures = sum(1 for r in rows if r.state == Phase.FAILED.value) + s.cycle_failures
            s.tp1 = sum(1 for r in rows if r.tp1_done)
            stops = (ExitReason.STOP, ExitReason.BREAKEVEN_STOP)
            s.tp2 = sum(1 for r in rows if r.exit_reason == ExitReason.TP2)
            s.stops = sum(1 for r in rows if r.exit_reason in stops)
            s.other_exits = sum(1 for r in rows if r.exit_reason not in (None, ExitReason.TP2, *stops))
            s.breakeven_moves = (
                session.scalar(
                    select(func.count())
                    .select_from(NotificationRow)
                    .where(NotificationRow.account == account_name, NotificationRow.kind == "tp1")
                )
                or 0
            )
            s.protected = sum(1 for r in rows if r.lifecycle.get("levels") is not None)
            s.realized_pnl = f"{sum((r.realized_pnl - r.fees + r.funding for r in rows), Decimal(0)):.2f}"
            s.signals = (
                session.scalar(select(func.count()).select_from(SignalRow).where(SignalRow.account == account_name))
                or 0
            )
            s.symbols_scored = session.scalar(select(func.coalesce(func.sum(ScanRow.universe_size), 0))) or 0
        directions = dict(self.cast)
        s.plots = {f"{self.symbols[k]} {directions[k].value} {k}": plot.value for k, plot in self.plots.items()}

    # ------------------------------------------------------------------------------------------ display

    def _view(self, positions: list[Position]) -> Group:
        """The live part: the bar, what the demo is doing, and the open positions as the monitor keeps them."""
        bar = f" · bar {format_utc(self.bar_ms)}" if self.bar_ms else ""
        header = Text.from_markup(f"[bold]ats demo[/] · {self.elapsed():.0f}s{bar} · {self.doing}")
        table = Table(box=box.SIMPLE_HEAD, expand=False, padding=(0, 1))
        for column in ("symbol", "side", "phase", "qty", "entry", "stop", "TP1", "TP2", "script"):
            table.add_column(column, no_wrap=True)
        for p in positions:
            levels = p.levels
            table.add_row(
                p.symbol,
                p.direction.value,
                p.phase.value.replace("_", " "),
                f"{p.open_qty.normalize():f}",
                _price(p.entry_price) if p.entry_qty else "-",
                _price(p.stop_price),
                "done" if p.tp1_done else (_price(levels.tp1) if levels else "-"),
                _price(levels.tp2) if levels else "-",
                SCRIPT_LABELS[self.plots.get(p.key, Plot.MARKET)],
            )
        return Group(header, table if positions else Text("no open positions yet", style="dim"))

    def _status_table(self) -> Table:
        s = self.summary
        table = Table(title="account status", expand=False)
        for column in ("balance", "unrealised PnL", "available", "positions"):
            table.add_column(column, justify="right")
        table.add_row(
            s.wallet_balance, s.unrealized_pnl, s.available_balance, f"{len(s.open_positions)}/{s.max_positions}"
        )
        if not s.open_positions:
            return table
        positions = Table(title="open positions", box=box.SIMPLE_HEAD, expand=False, padding=(0, 1))
        for column in ("symbol", "side", "quantity", "entry", "mark", "PnL %", "stop", "TP1"):
            positions.add_column(column, no_wrap=True)
        for row in s.open_positions:
            positions.add_row(*row.values())
        grid = Table.grid(padding=1)
        grid.add_row(table)
        grid.add_row(positions)
        return grid

    def _statistics_table(self) -> Table:
        s = self.summary
        table = Table(title="demo statistics", expand=False)
        table.add_column("figure")
        table.add_column("value", justify="right")
        for name, value in (
            ("trading cycles run (failed)", f"{s.cycles} ({s.cycle_failures})"),
            ("symbols scored", s.symbols_scored),
            ("signals", s.signals),
            ("trades opened (long / short)", f"{s.trades} ({s.longs} / {s.shorts})"),
            ("protected on the exchange (stop + TP1 + TP2)", s.protected),
            ("TP1 hit (stop moved to breakeven)", f"{s.tp1} ({s.breakeven_moves})"),
            ("TP2 hit", s.tp2),
            ("stopped out (incl. breakeven)", s.stops),
            ("closed otherwise (end of demo, ...)", s.other_exits),
            ("failures", s.failures),
            ("messages sent", s.messages),
            ("realised PnL, net of fees (USDT)", s.realized_pnl),
            ("wallet balance (USDT)", s.wallet_balance),
            ("duration (s)", f"{self.elapsed():.0f}"),
        ):
            table.add_row(name, str(value))
        return table


# ---------------------------------------------------------------------------------------------- small helpers


def run_demo(console: Console, *, summary_json: Path | None) -> DemoSummary:
    data_dir = load_settings().data_dir
    isolate_environment(data_dir)
    demo = Demo(console, data_dir=data_dir)
    summary = demo.run()
    if summary_json is not None:
        payload = {**asdict(summary), "mission": dict(summary.mission()), "mission_complete": summary.mission_complete}
        summary_json.write_text(json.dumps(payload, indent=2))
    return summary


def _run(flow: Any, **parameters: Any) -> tuple[Any, Any]:
    from cli.flow_cmds import run_flow

    return run_flow(flow, **parameters)


def _flush_prefect() -> None:
    """Send the last logs and events before the server goes (else they fail to send at shutdown)."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        with contextlib.suppress(RuntimeError):  # the log worker never started
            logs = APILogWorker.instance().drain()
            if inspect.isawaitable(logs):
                await logs
        events = EventsWorker.drain_all()
        if inspect.isawaitable(events):
            await events

    with contextlib.suppress(Exception):
        run_coro_as_sync(drain())


def _reacted(journal: Any, key: str, reaction: Reaction) -> bool:
    return reacted(reaction, _progress(journal.position(key)))


def _progress(position: Position | None) -> Progress:
    if position is None:
        return Progress(tp1_done=False, breakeven_set=False, closed=False, orders_pending=True)
    return Progress(
        tp1_done=position.tp1_done,
        breakeven_set=position.breakeven_set,
        closed=position.is_terminal,
        orders_pending=_orders_pending(position),
    )


def _orders_pending(position: Position) -> bool:
    return any(o.state in (OrderState.REQUESTED, OrderState.CANCELING) for o in position.orders)


def _log_to_file(path: Path) -> None:
    """Everything the system logs goes to the demo's log file; the screen shows the demo's own view."""
    handler = logging.FileHandler(path)
    handler.setFormatter(ConsoleFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(url: str, process: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    """Until the monitor is the account's active monitor and ready (streams up, first reconciliation done), so the
    first cycle's entries have a monitor protecting them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Stalled(f"the monitor exited with code {process.returncode} at start (see demo/monitor.log)")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            answer = httpx.get(url, timeout=2.0)
            if answer.status_code == 200 and answer.json().get("role") == "active":
                return
        time.sleep(0.2)
    raise Stalled(f"timed out after {timeout_s:.0f} s waiting for the monitor to be active and ready ({url})")


def _price(value: Decimal | None) -> str:
    """Six significant digits: enough to read levels, narrow enough for an 80-column terminal."""
    return "-" if value is None else f"{value:.6g}"


def _pnl_pct(row: Any, mark: Decimal | None) -> str:
    if mark is None or not row.entry_price:
        return "-"
    sign = 1 if row.direction == "LONG" else -1
    return f"{sign * (mark / row.entry_price - 1) * 100:+.2f}"
