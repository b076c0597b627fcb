"""`ats sim ...`: run the Binance-compatible simulated exchange (paper trading, demos, tests)."""

from __future__ import annotations

import asyncio
import signal
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer

from ats.config import SIM_API_KEY
from ats.domain import BINANCE_INTERVALS
from ats.log import configure_logging
from cli.app import app, console, fail

sim_app = typer.Typer(help="Run the simulated Binance USDⓈ-M futures exchange.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


@sim_app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (keep loopback unless you mean it)."),
    port: int = typer.Option(8765, help="Port; the default matches the sim venue's default URL."),
    seed: int = typer.Option(7, help="Seed of the synthetic market (same seed, same market)."),
    interval: str = typer.Option("1h", help="Bar interval; with 1m each bar moves like an hourly bar."),
    mode: str = typer.Option("realtime", help="realtime (ticks every second) or manual (moves only on /sim/advance)."),
    state: Annotated[Path | None, typer.Option(help="JSON file that keeps the paper account across restarts.")] = None,
    balance: str = typer.Option("10000", help="Starting USDT balance of a fresh account."),
    replay: Annotated[Path | None, typer.Option(help="Directory of 12-column kline files to replay instead.")] = None,
    expire_stranded: bool = typer.Option(
        False,
        help="Expire reduce-only/closePosition orders as soon as their position is flat (default: leave them "
        "open for the client to cancel; they expire when they would execute with nothing to reduce).",
    ),
) -> None:
    """Serve REST and WebSocket on Binance's paths until interrupted (Ctrl-C)."""
    from sim.server import SimConfig, SimServer

    if interval not in BINANCE_INTERVALS:
        fail(f"--interval must be one of {', '.join(BINANCE_INTERVALS)}")
    if mode not in ("realtime", "manual"):
        fail("--mode must be 'realtime' or 'manual'")
    try:
        start_balance = Decimal(balance)
    except InvalidOperation:
        fail(f"--balance must be a number, got {balance!r}")
    if not start_balance.is_finite() or start_balance < 0:
        fail(f"--balance must be a finite amount of USDT, not negative, got {balance!r}")
    if replay is not None and not replay.is_dir():
        fail(f"--replay {replay} is not a directory")
    configure_logging("INFO", "console")
    config = SimConfig(
        seed=seed,
        bar_interval=interval,
        mode="realtime" if mode == "realtime" else "manual",
        host=host,
        port=port,
        balance=start_balance,
        state_file=state,
        replay_dir=replay,
        expire_stranded=expire_stranded,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with SimServer(config) as sim:
            console.print(f"[bold green]ats simulated exchange[/] ({mode}, seed {seed}, {interval} bars)")
            console.print(f"  REST        {sim.rest_url}/fapi/v1/...")
            console.print(f"  WebSocket   {sim.ws_url}/market/stream?streams=btcusdt@markPrice@1s")
            console.print(f"              {sim.ws_url}/public/...")
            console.print(f"              {sim.ws_url}/private/ws/<listenKey>")
            console.print(f"  Admin       {sim.rest_url}/sim/state")
            console.print(f"  API key     {SIM_API_KEY} (secret: ats.config.SIM_API_SECRET)")
            if state is not None:
                console.print(f"  State file  {state}")
            console.print("Press Ctrl-C to stop.")
            await stop.wait()
        console.print("simulated exchange stopped")

    try:
        asyncio.run(run())
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}")
