"""`ats run-cycle | scan | trade | close-all | status | test-connection`: the flows and checks from a terminal.

Flow commands run the Prefect flow in this process: with PREFECT_API_URL set, the run appears in the Prefect UI
like a scheduled one; without it Prefect starts a temporary local server first (a few seconds). `status` and
`test-connection` only read, so they talk to the exchange and the database directly, without Prefect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from ats.cli.app import app, console, fail, settings_or_exit
from ats.config import Settings
from ats.log import redact

MinScore = Annotated[
    float | None, typer.Option(min=0, max=100, help="Strength (0-100) a signal needs; default ATS_MIN_SCORE (75).")
]


def _symbols(text: str | None) -> list[str] | None:
    return [s.strip().upper() for s in text.split(",") if s.strip()] if text else None


def _run_flow(flow: Any, **parameters: Any) -> Any:
    """Run a flow in this process; print its failure reason and exit 1 when it does not complete."""

    async def run() -> tuple[Any, Any]:
        state = await flow(**parameters, return_state=True)
        return state, (await state.aresult() if state.is_completed() else None)

    state, result = asyncio.run(run())
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
) -> None:
    """Run one trading cycle now: build the pools, scan them, open what passes the risk limits."""
    settings_or_exit()
    from flows.trading_cycle import trading_cycle

    report = _run_flow(
        trading_cycle, min_score=min_score, dry_run=dry_run, symbols=_symbols(symbols), max_new_positions=max_new
    )
    fell_back = " (a pool fell back to its last good build)" if report.pools_fell_back else ""
    console.print(
        f"universe: {len(report.universe)} symbols{fell_back}; scan {report.scan_id}: {report.signals} signals"
    )
    verb = "would open" if report.dry_run else "opened"
    console.print(f"{verb}: [bold]{', '.join(report.opened) or 'nothing'}[/]")
    if report.refused:
        table = Table("refused", "why")
        for symbol, why in sorted(report.refused.items()):
            table.add_row(symbol, why)
        console.print(table)


@app.command("scan")
def scan(
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols to scan instead of the pools.")] = None,
    min_score: MinScore = None,
) -> None:
    """Score the universe (or the given symbols) and record the signals, without trading."""
    settings_or_exit()
    from flows.factor_scan import factor_scan

    outcome = _run_flow(factor_scan, symbols=_symbols(symbols), min_score=min_score)
    console.print(f"scan {outcome.scan_id}: {outcome.universe_size} symbols, {len(outcome.signals)} signals")
    if outcome.signals:
        table = Table("symbol", "side", "strength", "band", "price")
        for signal in outcome.signals:
            band = signal.band.value.replace("_", " ")
            table.add_row(signal.symbol, signal.direction.value, f"{signal.strength:.1f}", band, str(signal.price))
        console.print(table)


@app.command("trade")
def trade(
    symbol: Annotated[str, typer.Argument(help="The perpetual to trade, e.g. SOLUSDT.")],
    side: Annotated[str | None, typer.Option(help="LONG or SHORT; default: the side the model finds.")] = None,
    min_score: MinScore = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and show; send no order.")] = False,
) -> None:
    """Open a position on one symbol now, if the factor model and the risk limits agree."""
    settings_or_exit()
    if side is not None and side.upper() not in ("LONG", "SHORT"):
        fail("--side must be LONG or SHORT")
    from flows.manual_signal import manual_signal
    from tasks.reports import placement_rows

    report = _run_flow(
        manual_signal, symbol=symbol, side=side.upper() if side else None, min_score=min_score, dry_run=dry_run
    )
    for row in placement_rows(report.decided, report.placements):
        console.print(f"{row['symbol']} {row['side']} ({row['strength']}): [bold]{row['result']}[/] {row['detail']}")


@app.command("close-all")
def close_all(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    reason: Annotated[str, typer.Option(help="Why, for the records and the notification.")] = "emergency close-all",
    halt: Annotated[bool, typer.Option("--halt/--no-halt", help="Also halt new entries until 00:00 UTC.")] = True,
) -> None:
    """EMERGENCY: cancel every order and close every position at market, then notify."""
    settings = settings_or_exit()
    if not yes:
        typer.confirm(
            f"Cancel EVERY order and close EVERY position at market on {settings.venue.value} account "
            f"'{settings.account}' ({settings.rest_url})?",
            abort=True,
        )
    from flows.close_all import close_all as close_all_flow
    from tasks.reports import close_all_markdown

    report = _run_flow(close_all_flow, reason=reason, halt_today=halt)
    console.print(close_all_markdown(report), markup=False)


@app.command("status")
def status() -> None:
    """The account now: balances, unrealised PnL, and each open position with its stop and TP1 state."""
    settings = settings_or_exit()
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
        table = Table(*rows[0])
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        console.print(table)
    else:
        console.print("no open positions")
    for note in [*(f"entry pending: {s}" for s in account.pending_entries), *account.notes]:
        console.print(f"[yellow]{note}[/]")


@app.command("test-connection")
def test_connection() -> None:
    """Check the exchange (time, rules, keys, position mode), the database and notifications; exit 1 on a failure."""
    settings = settings_or_exit()
    checks: list[tuple[str, bool, str]] = []

    async def exchange_checks() -> None:
        from ats.exchange.binance import BinanceFutures
        from ats.exchange.errors import ExchangeError

        async with BinanceFutures.from_settings(settings) as exchange:
            try:
                offset = await exchange.sync_time()
                checks.append(("exchange time", True, f"{settings.rest_url}, clock offset {offset.offset_ms} ms"))
                rules = await exchange.exchange_info()
                tradable = sum(1 for r in rules.values() if r.is_tradable_perpetual)
                checks.append(("exchange info", True, f"{tradable} trading USDT perpetuals"))
            except ExchangeError as exc:
                checks.append(("exchange", False, f"unreachable: {exc}"))
                return
            try:
                account = await exchange.account()
                checks.append(("API key", True, f"wallet {account.total_wallet_balance:,.2f} USDT"))
                hedge = await exchange.is_hedge_mode()
                checks.append(("position mode", not hedge, "hedge mode: switch to one-way" if hedge else "one-way"))
            except ExchangeError as exc:
                checks.append(("API key", False, str(exc)))

    asyncio.run(exchange_checks())
    try:
        from db import migrate
        from db.session import Database

        database = Database.open(settings, migrate_empty=False)
        try:
            revision = migrate.current_revision(database.engine)
            head = migrate.head_revision(database.engine)
        finally:
            database.dispose()
        checks.append(("database", revision == head, f"{database.safe_url} at {revision or 'empty'} (newest {head})"))
    except Exception as exc:
        first_line = redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else ""
        checks.append(("database", False, f"{type(exc).__name__}: {first_line}"))
    telegram = settings.telegram
    configured = telegram.token is not None and bool(telegram.chat_id)
    checks.append(("notifications", True, "Telegram" if configured else "console (no Telegram token and chat id)"))

    table = Table("check", "", "detail")
    for name, ok, detail in checks:
        table.add_row(name, "[green]ok[/]" if ok else "[bold red]FAIL[/]", detail)
    console.print(table)
    if not all(ok for _, ok, _ in checks):
        raise typer.Exit(1)
