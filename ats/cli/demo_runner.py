"""`ats demo`: the whole mission in about two minutes, on this machine, with nothing configured.

What runs is the real system: the embedded PostgreSQL, the simulated exchange on loopback (1-minute bars that move
like hourly ones: a compressed market), the monitor as its own process, and the trading-cycle flow on the real
Prefect engine after each bar. Telegram is the one stand-in: a loopback copy of its sendMessage endpoint, so the
messages the system sends show here exactly as they would on a phone.

To show every outcome within the time, the demo scripts the price of its first three positions (ats.demo): one
runs to TP1 and TP2, one to TP1 and back to the breakeven stop, one down to its stop. Nothing else is scripted:
the exchange triggers the orders, the monitor moves stops, the outbox sends the messages.

This module is imported only by the `ats demo` command (it reaches into db, flows and monitor).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ats.cli.flow_cmds import run_flow
from ats.clock import ms_to_datetime
from ats.config import Settings, load_settings
from ats.demo import Plot, PositionView, assign_plots, step_towards, target_price
from ats.lifecycle import Phase, Position
from ats.log import ConsoleFormatter, RedactingFilter
from ats.notify import ExitReason, to_plain_text
from ats.sim.server import SimConfig, SimServerThread
from ats.universe import UniverseConfig

DEMO_ACCOUNT = "demo"
BAR_INTERVAL = "1m"
COMPRESSION = 60  # a 1-minute bar moves like an hour
DEMO_MIN_SCORE = 60  # the demo trades medium signals too, to show more in a short time
STEER_EVERY_S = 0.5
FINISH_MARGIN_S = 20.0  # stop scripting this long before the end: close what is left, report

STEERED_PHASES = (Phase.OPEN, Phase.TP1_DONE)
SCRIPT_LABELS = {
    Plot.TAKE_PROFITS: "to TP2",
    Plot.BREAKEVEN: "TP1, back",
    Plot.STOP_LOSS: "to stop",
    Plot.MARKET: "market",
}


# ---------------------------------------------------------------------------------------------- configuration


def demo_environment(*, rest_url: str, ws_url: str, database_url: str, telegram_url: str, token: str) -> dict[str, str]:
    """The demo's configuration, as the environment every process (this one, the monitor) reads."""
    env = {
        "ATS_VENUE": "sim",
        "ATS_ACCOUNT": DEMO_ACCOUNT,
        "ATS_DATABASE_URL": database_url,
        "ATS_BAR_INTERVAL": BAR_INTERVAL,
        "ATS_MIN_SCORE": str(DEMO_MIN_SCORE),
        "ATS_EXCHANGE__REST_URL": rest_url,
        "ATS_EXCHANGE__WS_URL": ws_url,
        "ATS_TELEGRAM__TOKEN": token,
        "ATS_TELEGRAM__CHAT_ID": "demo",
        "ATS_TELEGRAM__API_URL": telegram_url,
        "ATS_LOG_LEVEL": "INFO",
        # Prefect: no telemetry, and its console stays quiet (the demo shows progress itself).
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    compressed = UniverseConfig().time_scaled(1 / COMPRESSION)
    for name in compressed.__dataclass_fields__:
        if name.endswith("_hours"):
            env[f"ATS_UNIVERSE__{name.upper()}"] = repr(getattr(compressed, name))
    return env


# ---------------------------------------------------------------------------------------------- Telegram stand-in


class TelegramStandIn:
    """A loopback copy of the Bot API's sendMessage: what the system sends lands in `messages`."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.messages: deque[str] = deque()
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
            self.messages.append(text)

    def drain(self) -> list[str]:
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
    pools: list[str] = field(default_factory=list)
    symbols_scored: int = 0
    signals: int = 0
    trades: int = 0
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

    def mission(self) -> list[tuple[str, bool]]:
        """Each part of the mission the demo is meant to show, and whether it did."""
        return [
            ("pools built", bool(self.pools)),
            ("symbols scored", self.symbols_scored > 0),
            ("signals sent", self.signals > 0),
            ("entries with protection", self.protected > 0),
            ("TP1 with the stop moved to breakeven", self.breakeven_moves > 0),
            ("TP2 or stop outcome", self.tp2 + self.stops > 0),
        ]

    @property
    def mission_complete(self) -> bool:
        return all(ok for _, ok in self.mission())


class Demo:
    def __init__(self, console: Console, *, seconds: float, data_dir: Path) -> None:
        self.console = console
        self.seconds = seconds
        self.data_dir = data_dir
        self.log_dir = data_dir / "demo"
        self.started = time.monotonic()
        self.started_ms = int(time.time() * 1000)
        self.summary = DemoSummary()
        self.steps: deque[str] = deque()  # printed once, above the live table, by the main thread
        self.plots: dict[str, Plot] = {}
        self.cycle_running = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ helpers

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, text: str) -> None:
        with self._lock:
            self.steps.append(f"[dim]{self.elapsed():5.1f}s[/] {text}")

    def _print_news(self, console: Console, telegram: TelegramStandIn) -> None:
        """What happened since the last look: steps, then the messages the system sent (as on a phone)."""
        with self._lock:
            steps = list(self.steps)
            self.steps.clear()
        for line in steps:
            console.print(line, highlight=False)
        for message in telegram.drain():
            self.summary.messages += 1
            console.print(Panel(to_plain_text(message), title="Telegram", border_style="cyan", expand=False))

    # ------------------------------------------------------------------------------------------ run

    def run(self) -> DemoSummary:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        _log_to_file(self.log_dir / "demo.log")
        with contextlib.ExitStack() as stack:
            database_url = self._database()
            sim = stack.enter_context(SimServerThread(SimConfig(bar_interval=BAR_INTERVAL, mode="realtime", port=0)))
            self.step(f"simulated exchange on {sim.rest_url} (36 perpetuals, {BAR_INTERVAL} bars, compressed market)")
            telegram = stack.enter_context(TelegramStandIn(f"{secrets.randbelow(10**9)}:demo-{secrets.token_hex(8)}"))
            os.environ.update(
                demo_environment(
                    rest_url=sim.rest_url,
                    ws_url=sim.ws_url,
                    database_url=database_url,
                    telegram_url=telegram.url,
                    token=telegram.token,
                )
            )
            settings = load_settings()
            self.summary.max_positions = settings.limits.max_concurrent_positions
            monitor = stack.enter_context(self._monitor())
            self._print_news(self.console, telegram)
            with Live(self._view([]), console=self.console, refresh_per_second=4, transient=True) as live:
                self._mission(settings, sim, telegram, live, monitor)
            self._print_news(self.console, telegram)
            self._finish(settings, telegram, monitor)
        self.summary.seconds = round(self.elapsed(), 1)
        return self.summary

    def _database(self) -> str:
        from db.session import Database

        database = Database.open(load_settings())
        url = database.engine.url.render_as_string(hide_password=False)
        database.dispose()
        self.step(f"PostgreSQL ready ({'embedded, ' if 'host=' in url else ''}schema up to date)")
        return url

    @contextlib.contextmanager
    def _monitor(self) -> Iterator[subprocess.Popen[bytes]]:
        port = _free_port()
        log = (self.log_dir / "monitor.log").open("ab")
        process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
            [sys.executable, "-c", "from ats.cli import main; main()", "monitor", "--health-port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
        try:
            _wait_ready(f"http://127.0.0.1:{port}/readyz", process, timeout_s=30)
            self.step(f"monitor running (pid {process.pid}, health http://127.0.0.1:{port}/readyz)")
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
            log.close()

    def _mission(
        self, settings: Settings, sim: SimServerThread, telegram: TelegramStandIn, live: Live, monitor: Any
    ) -> None:
        from db.journal import PostgresJournal
        from tasks.runtime import shared_database

        journal = PostgresJournal(shared_database(settings), settings.account)
        cycles = threading.Thread(target=self._cycles, args=(settings,), name="demo-cycles", daemon=True)
        cycles.start()
        steer_until = self.seconds - FINISH_MARGIN_S
        with httpx.Client(base_url=sim.rest_url, timeout=5.0) as http:
            while self.elapsed() < steer_until or self.cycle_running:
                positions = journal.open_positions()
                if self.elapsed() < steer_until:
                    self._steer(positions, sim, http)
                self._print_news(live.console, telegram)
                if monitor.poll() is not None:
                    self.step("[red]the monitor stopped; see demo/monitor.log[/]")
                    break
                live.update(self._view(positions))
                time.sleep(STEER_EVERY_S)
        cycles.join(timeout=1)

    def _cycles(self, settings: Settings) -> None:
        """Run the trading-cycle flow at once, then a few seconds after each new bar, while time remains."""
        from flows.trading_cycle import trading_cycle

        last_bar: int | None = None
        while self.elapsed() < self.seconds - FINISH_MARGIN_S - 15:
            bar = int(time.time() // 60)
            if bar != last_bar and time.time() % 60 >= 2:
                last_bar = bar
                self.cycle_running = True
                self.summary.cycles += 1
                number = self.summary.cycles
                self.step(f"trading cycle {number}: build-pools -> factor-scan -> place-orders (Prefect)")
                try:
                    state, report = run_flow(trading_cycle)
                    if report is not None:
                        self.summary.pools = list(report.universe)
                        opened = ", ".join(report.opened) or "nothing new"
                        refused = f"; refused {len(report.refused)}" if report.refused else ""
                        self.step(
                            f"cycle {number}: {len(report.universe)} symbols scored, {report.signals} signals, "
                            f"opened {opened}{refused}"
                        )
                    else:
                        self.summary.cycle_failures += 1
                        self.step(f"[red]cycle {number} failed: {state.message}[/]")
                finally:
                    self.cycle_running = False
            time.sleep(0.5)

    def _steer(self, positions: list[Position], sim: SimServerThread, http: httpx.Client) -> None:
        ready = [p for p in positions if p.phase in STEERED_PHASES and p.levels is not None]
        self.plots = assign_plots([p.key for p in ready], self.plots)
        for position in ready:
            plot = self.plots[position.key]
            assert position.levels is not None
            assert position.stop_price is not None
            single = position.levels.single_target  # too small to split: TP1 closes all of it
            view = PositionView(
                direction=position.direction,
                stop_price=position.stop_price,
                tp1_price=position.levels.tp1,
                tp2_price=None if single else position.levels.tp2,
                tp1_done=position.tp1_done,
            )
            target = target_price(plot, view)
            if target is None:
                continue
            mark = Decimal(http.get("/fapi/v1/premiumIndex", params={"symbol": position.symbol}).json()["markPrice"])
            price = position.policy.rules.round_price(step_towards(mark, target))
            if price > 0 and price != mark:
                sim.control.set_price(position.symbol, price)

    def _finish(self, settings: Settings, telegram: TelegramStandIn, monitor: subprocess.Popen[bytes]) -> None:
        from flows.close_all import close_all

        self._collect(settings)
        status = self._status_table()
        self.console.print(status)
        if self.summary.open_positions:
            self.console.print("closing the demo's remaining positions so the next demo starts clean ...")
            run_flow(close_all, reason="end of the demo", halt_today=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if not telegram.messages and self._outbox_empty(settings):
                break
        self._print_news(self.console, telegram)
        monitor.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            monitor.wait(timeout=15)
        self._collect(settings, balances_only=False)
        self.console.print(self._statistics_table())
        checks = "  ".join(
            f"[{'green' if ok else 'red'}]{'✓' if ok else '✗'}[/] {name}" for name, ok in self.summary.mission()
        )
        self.console.print(f"mission: {checks}")

    # ------------------------------------------------------------------------------------------ figures

    def _collect(self, settings: Settings, *, balances_only: bool = True) -> None:
        from sqlalchemy import func, select

        from ats.exchange.binance import BinanceFutures
        from db.models import NotificationRow, PositionRow, ScanRow, SignalRow
        from tasks.runtime import shared_database

        async def account() -> tuple[Any, list[Any]]:
            async with BinanceFutures.from_settings(settings) as exchange:
                return await exchange.account(), await exchange.positions()

        info, exchange_positions = asyncio.run(account())
        s = self.summary
        s.wallet_balance = f"{info.total_wallet_balance:.2f}"
        s.unrealized_pnl = f"{info.total_unrealized_pnl:.2f}"
        s.available_balance = f"{info.available_balance:.2f}"
        since = ms_to_datetime(self.started_ms)
        account_name = settings.account
        with shared_database(settings).session() as session:
            rows = session.scalars(
                select(PositionRow).where(PositionRow.account == account_name, PositionRow.opened_at >= since)
            ).all()
            marks = {p.symbol: p for p in exchange_positions}
            s.open_positions = [
                {
                    "symbol": r.symbol,
                    "side": r.direction,
                    "quantity": f"{r.quantity.normalize():f}",
                    "entry": _price(r.entry_price),
                    "mark": _price(marks[r.symbol].mark_price) if r.symbol in marks else "-",
                    "pnl_pct": _pnl_pct(r, marks.get(r.symbol)),
                    "stop": _price(r.stop_price),
                    "tp1": "done" if r.tp1_done else _price(r.tp1_price),
                }
                for r in rows
                if r.closed_at is None
            ]
            if balances_only:
                return
            s.trades = sum(1 for r in rows if r.entry_qty > 0)
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
                    .where(NotificationRow.created_at >= since)
                )
                or 0
            )
            s.protected = sum(1 for r in rows if r.lifecycle.get("levels") is not None)
            s.realized_pnl = f"{sum((r.realized_pnl - r.fees + r.funding for r in rows), Decimal(0)):.2f}"
            s.signals = (
                session.scalar(
                    select(func.count())
                    .select_from(SignalRow)
                    .where(SignalRow.account == account_name, SignalRow.created_at >= since)
                )
                or 0
            )
            s.symbols_scored = (
                session.scalar(
                    select(func.coalesce(func.sum(ScanRow.universe_size), 0)).where(ScanRow.started_at >= since)
                )
                or 0
            )
        s.plots = {key: plot.value for key, plot in self.plots.items()}

    def _outbox_empty(self, settings: Settings) -> bool:
        from sqlalchemy import func, select

        from db.models import NotificationRow
        from tasks.runtime import shared_database

        with shared_database(settings).session() as session:
            pending = session.scalar(
                select(func.count())
                .select_from(NotificationRow)
                .where(NotificationRow.account == settings.account, NotificationRow.status == "pending")
            )
        return not pending

    # ------------------------------------------------------------------------------------------ display

    def _view(self, positions: list[Position]) -> Group:
        """The live part: time, and the open positions as the monitor keeps them."""
        remaining = max(self.seconds - self.elapsed(), 0)
        cycle = " · trading cycle running" if self.cycle_running else ""
        header = Text.from_markup(
            f"[bold]ats demo[/] · {self.elapsed():.0f}s elapsed, about {remaining:.0f}s to go{cycle}"
        )
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
                SCRIPT_LABELS[self.plots.get(p.key, Plot.MARKET)] if p.phase in STEERED_PHASES else "",
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
            ("trades opened", s.trades),
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


def run_demo(console: Console, *, seconds: float, summary_json: Path | None) -> DemoSummary:
    data_dir = load_settings().data_dir
    demo = Demo(console, seconds=seconds, data_dir=data_dir)
    summary = demo.run()
    if summary_json is not None:
        payload = {**asdict(summary), "mission": dict(summary.mission()), "mission_complete": summary.mission_complete}
        summary_json.write_text(json.dumps(payload, indent=2))
    return summary


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
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the monitor exited with code {process.returncode}; see its log")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"the monitor was not ready within {timeout_s:.0f} s")


def _price(value: Decimal | None) -> str:
    """Six significant digits: enough to read levels, narrow enough for an 80-column terminal."""
    return "-" if value is None else f"{value:.6g}"


def _pnl_pct(row: Any, exchange_position: Any) -> str:
    if exchange_position is None or not row.entry_price:
        return "-"
    sign = 1 if row.direction == "LONG" else -1
    return f"{sign * (exchange_position.mark_price / row.entry_price - 1) * 100:+.2f}"
