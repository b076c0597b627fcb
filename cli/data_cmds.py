"""`ats data import | download`: market history into PostgreSQL (trade klines, mark-price klines, funding rates).

Both are idempotent: running them again stores nothing new and reports 0 new rows. Both print one line per file
(or per symbol and kind) as it is done, with its rows per second.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ats import clock
from ats.clock import WallClock, format_utc
from ats.config import Settings
from ats.data import DataFile, Kind, MalformedData, find_data_files
from ats.domain import BINANCE_INTERVALS
from cli.app import app, console, err_console, fail, settings_or_exit

if TYPE_CHECKING:
    from db.session import Database

data_app = typer.Typer(
    help="Market history in PostgreSQL: Binance public-data files and the exchange's REST history.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

KINDS = {"klines": Kind.KLINES, "mark": Kind.MARK, "funding": Kind.FUNDING}


def open_database(settings: Settings) -> Database:
    """The configured database (an empty one is migrated); exit with the reason when it cannot be used."""
    from sqlalchemy.exc import SQLAlchemyError

    from db.migrate import SchemaOutOfDate
    from db.session import Database, database_error_line

    try:
        return Database.open(settings)
    except SchemaOutOfDate as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:  # a database that cannot be reached: one readable line, no traceback
        fail(f"database error: {database_error_line(exc)}")


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s" if seconds > 0 else "-"


@data_app.command("import")
def import_files(
    paths: Annotated[
        list[Path],
        typer.Argument(
            exists=True,
            help="Files or folders in Binance's public-data layout: klines/, markPriceKlines/, fundingRate/ "
            "(CSV or ZIP, with or without a header, times in ms or µs).",
            show_default=False,
        ),
    ],
) -> None:
    """Load Binance public-data files into PostgreSQL: trade klines, mark-price klines (kept apart), funding rates.

    Empty columns are unknown and stored as NULL, never 0. A malformed row refuses its whole file, naming the file
    and line; the other files are still imported, and the command exits 1. Importing again adds nothing.
    """
    settings = settings_or_exit()
    files: list[DataFile] = []
    for path in paths:
        found, skipped = find_data_files(path)
        files += found
        for reason in skipped:
            err_console.print(f"[yellow]skipped[/] {reason}", soft_wrap=True)
    if not files:
        fail("no klines/, markPriceKlines/ or fundingRate/ files found in " + ", ".join(str(p) for p in paths))
    from db.history import import_file

    database = open_database(settings)
    refused: list[str] = []
    rows = new = 0
    started = time.perf_counter()
    try:
        for number, data_file in enumerate(files, 1):
            where = f"[{number}/{len(files)}] {data_file.path}"
            try:
                done = import_file(database, data_file)
            except MalformedData as exc:
                refused.append(str(exc))
                err_console.print(f"{where}: [bold red]refused[/], nothing of it stored: {exc}", soft_wrap=True)
                continue
            rows, new = rows + done.stored.rows, new + done.stored.new
            console.print(
                f"{where}: {data_file.describe()}: {done.stored.rows:,} rows, {done.stored.summary()} "
                f"({done.seconds:.1f} s, {_rate(done.stored.rows, done.seconds)})",
                soft_wrap=True,
            )
    finally:
        database.dispose()
    seconds = time.perf_counter() - started
    console.print(
        f"imported {len(files) - len(refused)} of {len(files)} files into {database.safe_url}: {rows:,} rows, "
        f"{new:,} new, in {seconds:.1f} s ({_rate(rows, seconds)})",
        soft_wrap=True,
    )
    if refused:
        fail(f"{len(refused)} file(s) refused (see above); fix or remove them and import again", code=1)


def parse_utc_ms(text: str) -> int:
    try:
        return clock.parse_utc_ms(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@data_app.command("download")
def download(
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT.", show_default=False)],
    start: Annotated[
        str, typer.Option("--from", help="First bar or settlement (UTC): YYYY-MM-DD[THH:MM].", show_default=False)
    ],
    end: Annotated[str | None, typer.Option("--to", help="Last one (UTC); default now.", show_default=False)] = None,
    interval: Annotated[
        str | None, typer.Option(help="Kline interval; default ATS_BAR_INTERVAL (1h).", show_default=False)
    ] = None,
    what: Annotated[str, typer.Option(help="Comma-separated: klines, mark, funding.")] = "klines,mark,funding",
    rest_url: Annotated[
        str | None,
        typer.Option(
            help="The exchange's REST URL, e.g. https://fapi.binance.com for real history (public data, no key); "
            "default: the configured venue's.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Download klines, mark-price klines and funding rates from the exchange's REST API into PostgreSQL.

    Stored like imported files (same checks, same tables); what is already stored is not stored again. A symbol
    or kind the exchange refuses is reported and the rest goes on (exit 1); an unreachable exchange stops it.
    """
    settings = settings_or_exit()
    bar_interval = interval or settings.bar_interval
    if bar_interval not in BINANCE_INTERVALS:
        fail(f"--interval must be one of {', '.join(BINANCE_INTERVALS)}")
    wanted = [s.strip().lower() for s in what.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in KINDS]
    if unknown or not wanted:
        fail(f"--what takes {', '.join(KINDS)}; got {what!r}")
    names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    if not names:
        fail("--symbols names no symbol")
    start_ms = parse_utc_ms(start)
    end_ms = WallClock().now_ms() if end is None else parse_utc_ms(end)
    if end_ms < start_ms:
        fail(f"--to ({format_utc(end_ms)}) is before --from ({format_utc(start_ms)})")
    from ats.exchange.budget import BudgetLimits
    from ats.exchange.errors import ExchangeUnavailable
    from tasks.history import Download, download_history, market_data_client

    url = (rest_url or settings.rest_url).rstrip("/")
    database = open_database(settings)
    limits = BudgetLimits(
        weight_per_minute=settings.exchange.weight_limit_per_minute,
        safety_margin=settings.exchange.weight_safety_margin,
    )

    def report(item: Download) -> None:
        if item.stored is None:
            err_console.print(f"{item.describe()}: [bold red]not downloaded[/]: {item.error}", soft_wrap=True)
        else:
            console.print(
                f"{item.describe()}: {item.stored.rows:,} rows, {item.stored.summary()} "
                f"({item.seconds:.1f} s, {_rate(item.stored.rows, item.seconds)})",
                soft_wrap=True,
            )

    async def run() -> list[Download]:
        async with market_data_client(url, database, limits) as exchange:
            return await download_history(
                exchange,
                database,
                symbols=names,
                interval=bar_interval,
                start_ms=start_ms,
                end_ms=end_ms,
                kinds=[KINDS[w] for w in dict.fromkeys(wanted)],
                on_done=report,
            )

    console.print(f"downloading from {url}, {format_utc(start_ms)} to {format_utc(end_ms)}")
    try:
        done = asyncio.run(run())
    except ExchangeUnavailable as exc:
        fail(f"exchange unreachable: {exc}", code=1)
    finally:
        database.dispose()
    failed = [d for d in done if d.stored is None]
    rows = sum(d.stored.rows for d in done if d.stored is not None)
    new = sum(d.stored.new for d in done if d.stored is not None)
    console.print(f"downloaded {len(done) - len(failed)} of {len(done)} series: {rows:,} rows, {new:,} new")
    if failed:
        fail(f"{len(failed)} series not downloaded (see above)", code=1)
