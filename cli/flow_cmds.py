"""`ats run-cycle | scan | trade | close-all | status | test-connection`: the flows and checks from a terminal.

Flow commands run the Prefect flow in this process: with PREFECT_API_URL set, the run appears in the Prefect UI
like a scheduled one; without it Prefect starts a temporary local server first (a few seconds). `close-all`, the
emergency stop, needs nothing but the exchange: it runs the close-all flow's steps directly, without Prefect.
`status` and `test-connection` send no order, so they talk to the exchange and the database directly, without
Prefect (`status` records the account snapshot it shows, as the account-status flow does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from ats.config import ConfigError, Settings
from ats.domain import SymbolRules
from ats.log import redact
from cli.app import VenueOption, app, console, err_console, fail, settings_or_exit

PROTECTION_WAIT_S = 60.0

MinScore = Annotated[
    float | None, typer.Option(min=0, max=100, help="Strength (0-100) a signal needs; default ATS_MIN_SCORE (85).")
]


WithoutMonitor = Annotated[
    bool,
    typer.Option(
        "--without-monitor",
        help="Open positions even though no monitor runs (nothing would move their stops or close them if the "
        "exchange stop does not fire).",
    ),
]
NO_MONITOR_HINT = "start `ats monitor` (as a service) first, or pass --without-monitor to trade anyway"


def _symbols(settings: Settings, text: str | None) -> list[str] | None:
    """The symbols of --symbols (None without it), each a trading USDT perpetual on the exchange: any other is
    refused here, before a flow run starts, so one typo neither fails a run halfway nor records anything."""
    if text is None:
        return None
    from ats.universe import normalise_symbols, unknown_symbols_reason

    symbols = normalise_symbols(text.split(","))
    if not symbols:
        fail("--symbols names no symbol")

    async def exchange_rules(rt: Any) -> dict[str, SymbolRules]:
        rules: dict[str, SymbolRules] = await rt.exchange.exchange_info()
        return rules

    reason = unknown_symbols_reason(symbols, _read_only(settings, exchange_rules))
    if reason:
        fail(reason)
    return symbols


class KnownFailureWithoutTraceback(logging.Filter):
    """A failure the system tells in one sentence (exchange unreachable, API key refused, a database error) is
    that sentence: Prefect's engine would log its 20-line traceback first, on the terminal and the run page alike.
    A bug (an error `describe_failure` does not know) keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from tasks.runtime import describe_failure

        error = record.exc_info[1] if record.exc_info else None
        if error is not None and describe_failure(error) is not None:
            record.exc_info = None
            record.exc_text = None
        return True


ENGINE_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")  # where Prefect logs a run's exception


def _quiet_known_failures() -> None:
    """On the loggers themselves: their records reach Prefect's API handler (and its redaction, which renders
    the traceback) before the terminal's."""
    for name in ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, KnownFailureWithoutTraceback) for f in logger.filters):
            logger.addFilter(KnownFailureWithoutTraceback())


def run_flow(flow: Any, **parameters: Any) -> tuple[Any, Any]:
    """Run a flow on the Prefect engine in this thread: its final state, and its result when it completed."""
    _quiet_known_failures()

    async def run() -> tuple[Any, Any]:
        state = await flow(**parameters, return_state=True)
        return state, (await state.aresult() if state.is_completed() else None)

    return asyncio.run(run())


def _run_flow(flow: Any, **parameters: Any) -> Any:
    """Run a flow in this process; print its failure reason and exit 1 when it does not complete."""
    state, result = run_flow(flow, **parameters)
    if not state.is_completed():
        fail(f"{flow.name} {state.type.value.lower()}: {state.message}", code=1)
    return result


def _read_only(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `work(runtime)` without Prefect; a known failure (exchange down, ...) is printed, not traced."""
    from tasks.runtime import describe_failure, open_runtime

    async def run() -> Any:
        async with open_runtime(settings) as rt:
            await rt.exchange.sync_time()
            return await work(rt)

    try:
        return asyncio.run(run())
    except Exception as exc:
        message = describe_failure(exc)
        if message is None:
            raise
        fail(message, code=1)


@app.command("run-cycle")
def run_cycle(
    min_score: MinScore = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Score and check the limits; send no order.")] = False,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols to scan instead of the pools.")] = None,
    max_new: Annotated[int | None, typer.Option(min=0, help="Open at most this many positions now.")] = None,
    without_monitor: WithoutMonitor = False,
    venue: VenueOption = None,
) -> None:
    """Run one trading cycle now: build the pools, scan them, open what passes the risk limits.

    Before returning, it keeps reconciling (what the monitor does) until every position it opened has its stop
    and take-profits acknowledged on the exchange, so nothing it opened is left unprotected when it exits.
    """
    settings = settings_or_exit(venue=venue)
    chosen = _symbols(settings, symbols)
    from flows.trading_cycle import trading_cycle

    report = _run_flow(
        trading_cycle,
        min_score=min_score,
        dry_run=dry_run,
        symbols=chosen,
        max_new_positions=max_new,
        require_monitor=not without_monitor,
    )
    fell_back = " (a pool fell back to its last good build)" if report.pools_fell_back else ""
    console.print(
        f"universe: {len(report.universe)} symbols{fell_back}; scan {report.scan_id}: {report.signals} signals"
    )
    verb = "would open" if report.dry_run else "opened"
    console.print(f"{verb}: [bold]{', '.join(report.opened) or 'nothing'}[/]")
    for symbol, why in report.refused.items():  # strongest signal first, as decided
        console.print(f"refused {symbol}: {why}", markup=False, highlight=False)
    if report.no_monitor:
        fail(f"every entry refused: {report.no_monitor}; {NO_MONITOR_HINT}", code=1)
    if report.opened and not report.dry_run:
        _wait_until_protected(settings, list(report.opened))


def _wait_until_protected(settings: Settings, symbols: list[str]) -> None:
    """Reconcile until the positions opened on `symbols` are protected (or say which are not, and exit 1)."""
    from ats.lifecycle import Phase
    from ats.reconcile import reconcile

    unprotected = (Phase.PENDING_ENTRY, Phase.PROTECTING)

    async def protect(rt: Any) -> list[str]:
        """The symbols still unprotected when the wait ends (none once every one is protected)."""
        journal, executor = rt.journal(), rt.executor("cli")
        deadline = rt.clock.monotonic() + PROTECTION_WAIT_S
        while True:
            positions = journal.open_positions()
            waiting = sorted(p.symbol for p in positions if p.symbol in symbols and p.phase in unprotected)
            if not waiting or rt.clock.monotonic() > deadline:
                return waiting
            console.print(f"waiting for protection: {', '.join(waiting)}")
            await reconcile(rt.exchange, journal, executor, rt.clock, rt.settings, since_ms=None)
            await rt.clock.sleep(1.0)

    waiting = _read_only(settings, protect)
    if waiting:
        fail(f"not yet protected after {PROTECTION_WAIT_S:.0f} s: {', '.join(waiting)}; run `ats monitor`", 1)
    console.print("protection: every position opened has its stop and take-profits on the exchange")


@app.command("scan")
def scan(
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols to scan instead of the pools.")] = None,
    min_score: MinScore = None,
    top: Annotated[int, typer.Option(min=1, help="Rows of the ranked table to show.")] = 30,
    venue: VenueOption = None,
) -> None:
    """Score the universe (or the given symbols) and print the ranked table with every factor; no trading.

    Without --symbols it first brings the pools up to date (exchange rules, tickers, missing closed bars), so it
    works on a fresh installation as well as between cycles. The scan and its factors are kept; its signals are
    neither recorded (a later place-orders acts on nothing it found) nor announced.
    """
    settings = settings_or_exit(venue=venue)
    from flows.build_pools import build_pools
    from flows.factor_scan import factor_scan

    chosen = _symbols(settings, symbols)
    if chosen is None:
        _run_flow(build_pools)
    outcome = _run_flow(factor_scan, symbols=chosen, min_score=min_score, dry_run=True)
    threshold = settings.min_score if min_score is None else min_score
    for table in _ranked_tables(settings, outcome.scan_id, top, threshold, console.width):
        console.print(table)
    console.print(
        f"scan {outcome.scan_id}: {outcome.universe_size} symbols, {len(outcome.signals)} signals at or above "
        f"{threshold:g} (not recorded: `ats run-cycle` scans and trades)"
    )


def _ranked_tables(settings: Settings, scan_id: int, top: int, threshold: float, width: int) -> list[Table]:
    """The ranking with every factor in one table when the terminal is wide enough, else the ranking and the
    factors as two tables (nothing cut), with the factors' legend."""
    from rich.measure import Measurement
    from sqlalchemy import select

    from ats.factors import FACTOR_NAMES
    from db.models import ScanResultRow
    from tasks.reports import FACTOR_LABELS
    from tasks.runtime import shared_database

    with shared_database(settings).session() as session:
        rows = session.scalars(
            select(ScanResultRow).where(ScanResultRow.scan_id == scan_id).order_by(ScanResultRow.rank).limit(top)
        ).all()
    legend = " ".join(f"{name} {label}" for name, label in FACTOR_LABELS.items())

    def table(title: str, ranking: bool, factors: bool) -> Table:
        # Factor scores are at most 4 characters (-100): the column separator is their only padding.
        made = Table(
            title=title, caption=legend if factors else None, box=box.SIMPLE_HEAD, padding=(0, 1 if ranking else 0)
        )
        names = ("#", "symbol", "side", "strength", "band") if ranking else ("symbol",)
        for name in names:
            made.add_column(name, no_wrap=True, justify="right" if name in ("#", "strength") else "left")
        for name in FACTOR_NAMES if factors else ():
            made.add_column(name, justify="right", no_wrap=True, min_width=4)
        for row in rows:
            style = "bold" if row.direction and row.strength >= threshold else None
            cells = [str(row.rank), row.symbol] if ranking else [row.symbol]
            if ranking:
                band = row.band.replace("_", " ") if row.insufficient_reason is None else "no data"
                cells += [row.direction or "-", f"{row.strength:.1f}", band]
            if factors:
                values = row.factors
                cells += [f"{values[n]:.0f}" if isinstance(values.get(n), int | float) else "" for n in FACTOR_NAMES]
            made.add_row(*cells, style=style)
        return made

    whole = table(f"scan {scan_id}: ranked by strength", ranking=True, factors=True)
    if Measurement.get(console, console.options.update_width(10_000), whole).maximum <= width:
        return [whole]
    return [
        table(f"scan {scan_id}: ranked by strength", ranking=True, factors=False),
        table(f"scan {scan_id}: the factors", ranking=False, factors=True),
    ]


@app.command("trade")
def trade(
    symbol: Annotated[str, typer.Argument(help="The perpetual to trade, e.g. SOLUSDT.")],
    side: Annotated[str | None, typer.Option(help="LONG or SHORT; default: the side the model finds.")] = None,
    min_score: MinScore = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and show; send no order.")] = False,
    without_monitor: WithoutMonitor = False,
    venue: VenueOption = None,
) -> None:
    """Open a position on one symbol now, if the factor model and the risk limits agree (and a monitor runs)."""
    settings_or_exit(venue=venue)
    if side is not None and side.upper() not in ("LONG", "SHORT"):
        fail("--side must be LONG or SHORT")
    from flows.manual_signal import manual_signal
    from tasks.reports import placement_rows

    report = _run_flow(
        manual_signal,
        symbol=symbol,
        side=side.upper() if side else None,
        min_score=min_score,
        dry_run=dry_run,
        require_monitor=not without_monitor,
    )
    for row in placement_rows(report.decided, report.placements):
        console.print(f"{row['symbol']} {row['side']} ({row['strength']}): [bold]{row['result']}[/] {row['detail']}")
    for note in report.decided.notes:
        console.print(f"[yellow]{note}[/]")
    if report.decided.no_monitor:
        fail(f"refused: {report.decided.no_monitor}; {NO_MONITOR_HINT}", code=1)


@app.command("close-all")
def close_all(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    reason: Annotated[str, typer.Option(help="Why, for the records and the notification.")] = "emergency close-all",
    halt: Annotated[bool, typer.Option("--halt/--no-halt", help="Also halt new entries until 00:00 UTC.")] = True,
    venue: VenueOption = None,
) -> None:
    """EMERGENCY: cancel every order and close every position at market, then notify.

    Needs nothing but the exchange: it runs here, without Prefect. With the database (when it answers within a
    few seconds) it also closes the managed positions through their lifecycle, records everything and halts new
    entries; without it, it still cancels and closes everything on the exchange and says nothing was recorded.
    With PREFECT_API_URL set, the report is also left in Prefect if the server answers (best effort). Exits 1
    if a position is still open or something failed.
    """
    settings = settings_or_exit(venue=venue)
    if not yes:
        typer.confirm(
            f"Cancel EVERY order and close EVERY position at market on {settings.venue.value} account "
            f"'{settings.account}' ({settings.rest_url})?",
            abort=True,
        )
    from ats.emergency import CloseAllReport, close_all_markdown
    from ats.exchange.errors import ExchangeError, ExchangeUnavailable, RateLimited, Throttled
    from tasks.emergency import close_everything, open_emergency, record_in_prefect, with_secret_blocks_if_reachable

    log = logging.getLogger("cli.close_all")

    async def run() -> CloseAllReport:
        resolved, warning = await with_secret_blocks_if_reachable(settings)
        if warning:
            err_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
        async with open_emergency(resolved, source="cli", log=log) as em:
            return await close_everything(em, reason, halt)

    try:
        report = asyncio.run(run())
    except ConfigError as exc:
        fail(str(exc), code=1)
    except ExchangeError as exc:
        kind = "exchange unreachable" if isinstance(exc, ExchangeUnavailable | RateLimited | Throttled) else "exchange"
        fail(f"close-all stopped, {kind}: {exc}. Check the account (`ats status`) and run it again.", code=1)
    markdown = close_all_markdown(report)
    console.print(markdown, markup=False, soft_wrap=True)
    recorded = asyncio.run(record_in_prefect(markdown))
    if recorded is not None:
        (err_console if recorded.startswith("warning") else console).print(recorded, markup=False, soft_wrap=True)
    if not report.complete:
        fail(f"close-all incomplete: {report.summary()}", code=1)


@app.command("resume")
def resume(venue: VenueOption = None) -> None:
    """Lift today's halt of new entries: a close-all's or a pause (not the daily loss limit's), recording who did."""
    import getpass

    from ats.clock import WallClock
    from ats.notify import to_plain_text
    from ats.operator import resume_refusal
    from db import risk_state
    from tasks.runtime import shared_database

    settings = settings_or_exit(venue=venue)
    now = WallClock().now_ms()
    by = f"cli {getpass.getuser()}"
    with shared_database(settings).session() as session:
        ledger = risk_state.ledger_day(session, settings.account, now)
        refusal = resume_refusal(ledger, settings.language)
        if refusal is None:
            risk_state.record_resume(session, settings.account, now, by=by, halt=ledger)
    if refusal is not None:
        fail(to_plain_text(refusal), code=1)
    console.print(f"new entries allowed again; lifted: {ledger.halted_reason} (recorded as lifted by {by})")


@app.command("status")
def status(venue: VenueOption = None) -> None:
    """The account now: balances, unrealised PnL, and each open position with its stop and TP1 state."""
    settings = settings_or_exit(venue=venue)
    from tasks.account import read_account
    from tasks.reports import status_rows

    account = _read_only(settings, read_account.fn)
    summary = Table("wallet", "unrealised PnL", "margin balance", "available", "positions", "realised today")
    summary.add_row(
        f"{account.wallet_balance:,.2f}",
        f"{account.unrealized_pnl:+,.2f}",
        f"{account.margin_balance:,.2f}",
        f"{account.available_balance:,.2f}",
        f"{len(account.positions)}/{account.max_positions}",
        f"{account.realized_today:+,.2f}",
    )
    console.print(summary)
    if account.halted:
        console.print(f"[bold red]New entries halted today:[/] {account.halted}")
    rows = status_rows(account)
    if rows:
        from rich.measure import Measurement

        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False)
        for column in rows[0]:
            table.add_column(column, no_wrap=True, justify="left" if column in ("symbol", "side", "TP1") else "right")
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        if Measurement.get(console, console.options.update_width(10_000), table).maximum <= console.width:
            console.print(table)
        else:  # a narrow terminal: a line per position, wrapped rather than cut
            for r in rows:
                console.print(
                    f"{r['symbol']} {r['side']} {r['qty']} @ {r['entry']} · mark {r['mark']} · PnL {r['pnl']} "
                    f"({r['pnl %']} %) · x{r['lev']} · stop {r['stop']} · TP1 {r['TP1']}",
                    highlight=False,
                )
    else:
        console.print("no open positions")
    for note in [*(f"entry pending: {s}" for s in account.pending_entries), *account.notes]:
        console.print(f"[yellow]{note}[/]")
    console.print(_today_line(settings, account.time_ms), highlight=False)


def _today_line(settings: Settings, now_ms: int) -> str:
    """The UTC day's execution so far: signals and what became of them, entries, exits by kind, failures."""
    from collections import Counter

    from sqlalchemy import func, select

    from ats.clock import ms_to_datetime, utc_day_start_ms
    from ats.notify import ExitReason
    from db import risk_state
    from db.models import FlowRunRow, PositionRow, SignalRow
    from tasks.account import DAY_MS
    from tasks.runtime import shared_database

    start = utc_day_start_ms(now_ms)
    since = ms_to_datetime(start)
    account = settings.account
    with shared_database(settings).session() as session:
        signals: Counter[str] = Counter(
            session.scalars(
                select(SignalRow.status).where(SignalRow.account == account, SignalRow.created_at >= since)
            ).all()
        )
        entries = session.scalars(
            select(PositionRow).where(PositionRow.account == account, PositionRow.opened_at >= since)
        ).all()
        closed = risk_state.closed_trades(session, account, start, start + DAY_MS)
        failed_runs = session.scalar(
            select(func.count())
            .select_from(FlowRunRow)
            .where(
                FlowRunRow.account == account,
                FlowRunRow.ended_at >= since,
                FlowRunRow.state.in_(("FAILED", "CRASHED")),
            )
        )
    exits = Counter(t.exit_reason for t in closed)
    stops = exits[ExitReason.STOP] + exits[ExitReason.BREAKEVEN_STOP]
    tp1 = sum(1 for t in closed if t.tp1_done or t.exit_reason == ExitReason.TP1)
    failed = sum(1 for p in entries if p.state == "failed") + signals["failed"]
    return (
        f"today ({ms_to_datetime(start):%Y-%m-%d} UTC): {sum(signals.values())} signals "
        f"({signals['placed'] + signals['accepted']} traded, {signals['refused']} refused) · "
        f"{sum(1 for p in entries if p.entry_qty > 0)} entries, {failed} failed · {len(closed)} closed: "
        f"TP1 reached {tp1}, TP2 {exits[ExitReason.TP2]}, stopped {stops}, "
        f"otherwise {len(closed) - exits[ExitReason.TP2] - stops} · failed flow runs {failed_runs or 0}"
    )


async def _telegram_check(settings: Settings) -> tuple[str, bool, str]:
    """Telegram answers getMe with the configured token (nothing is sent); without a token, messages go to the log."""
    from ats.notify import NotifyError, TelegramNotifier

    telegram = settings.telegram
    if telegram.token is None or not telegram.chat_id:
        return ("notifications", True, "log only (no Telegram token and chat id)")
    bot = TelegramNotifier(telegram)
    try:
        name = await bot.whoami()
    except NotifyError as exc:
        return ("Telegram", False, str(exc))
    finally:
        await bot.aclose()
    return ("Telegram", True, f"bot {name} answers getMe; messages go to chat {telegram.chat_id}")


@app.command("test-connection")
def test_connection(venue: VenueOption = None) -> None:  # noqa: PT028  (a command, not a test)
    """Check the exchange (server time, keys and balance, BTC price, position mode, open positions), the database
    and notifications; exit 1 on a failure. Sends no order."""
    from db.secrets import with_secret_blocks

    try:  # the keys and the bot token as the flows and the monitor will see them (perhaps from Prefect blocks)
        settings = asyncio.run(with_secret_blocks(settings_or_exit(venue=venue)))
    except ConfigError as exc:
        fail(str(exc))
    checks: list[tuple[str, bool, str]] = []

    async def exchange_checks() -> None:
        from ats.exchange.binance import BinanceFutures
        from ats.exchange.errors import ExchangeError

        async with BinanceFutures.from_settings(settings) as exchange:
            try:
                offset = await exchange.sync_time()
                server = datetime.fromtimestamp(exchange.server_now_ms() / 1000, tz=UTC)
                detail = f"{server:%Y-%m-%d %H:%M:%S} UTC at {settings.rest_url}, clock offset {offset.offset_ms} ms"
                checks.append(("server time", True, detail))
                rules = await exchange.exchange_info()
                tradable = sum(1 for r in rules.values() if r.is_tradable_perpetual)
                checks.append(("exchange info", True, f"{tradable} trading USDT perpetuals"))
                btc = await exchange.premium_index("BTCUSDT")
                checks.append(("BTC price", True, f"mark {btc[0].mark_price} USDT" if btc else "no BTCUSDT"))
            except ExchangeError as exc:
                checks.append(("exchange", False, f"unreachable: {exc}"))
                return
            try:
                account = await exchange.account()
                balance = f"wallet {account.total_wallet_balance:,.2f} USDT, available {account.available_balance:,.2f}"
                checks.append(("API key and balance", True, balance))
                hedge = await exchange.is_hedge_mode()
                checks.append(("position mode", not hedge, "hedge mode: switch to one-way" if hedge else "one-way"))
                positions = await exchange.positions()
                listed = ", ".join(f"{p.symbol} {p.amount:+}" for p in positions) or "none"
                checks.append(("open positions", True, f"{len(positions)}: {listed}"))
            except ExchangeError as exc:
                checks.append(("API key", False, str(exc)))

    asyncio.run(exchange_checks())
    try:
        from db import migrate
        from db.session import Database

        database = Database.open(settings)
        try:
            revision = migrate.current_revision(database.engine)
        finally:
            database.dispose()
        checks.append(("database", True, f"{database.safe_url} at schema {revision}"))
    except Exception as exc:
        first_line = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else ""
        checks.append(("database", False, f"{type(exc).__name__}: {first_line}"))
    checks.append(asyncio.run(_telegram_check(settings)))

    table = Table("check", "", "detail", title=f"venue: {settings.venue.value}")
    for name, ok, detail in checks:
        table.add_row(name, "[green]ok[/]" if ok else "[bold red]FAIL[/]", detail)
    console.print(table)
    if not all(ok for _, ok, _ in checks):
        raise typer.Exit(1)
