"""``tradeloop live``: run a trading session and control it (pause, resume, stop, ack).

Control commands write the session's status to the operational database; a running engine
reads it before every bar, so they work from any terminal. ``ack`` ends a reduce-only state
the engine entered on its own (``live.reconcile``): a balance drift, or a halted symbol.
"""

from __future__ import annotations

import asyncio
import math
import signal
from pathlib import Path
from typing import Annotated

import typer

from tradeloop.cli import health_cmd
from tradeloop.cli.common import console, fmt_num, fmt_ts, handle_errors, parse_time
from tradeloop.cli.risk_opts import order_rules, risk_config, risk_rows
from tradeloop.cli.tables import FitTable
from tradeloop.errors import ConfigError, config_error
from tradeloop.logs import configure_logging
from tradeloop.settings import get_settings

app = typer.Typer(
    help="Live trading sessions (paper by default): run, list, pause, resume, stop, ack, risk.", no_args_is_help=True
)


def _store():
    from tradeloop.ops import OpsStore

    return OpsStore.open(get_settings().effective_database_url)


#: the series a session trades when no option names them (the bundled sample's)
DEFAULT_EXCHANGE, DEFAULT_TIMEFRAME, DEFAULT_SYMBOLS = "coinbase", "4h", ("BTC-USD", "ETH-USD")


@app.command()
@handle_errors
def run(
    name: Annotated[str, typer.Option(help="Session name; an existing running/paused session resumes")] = "paper",
    strategy: Annotated[str, typer.Option(help="Strategy whose champion trades")] = "sma_cross",
    exchange: Annotated[str, typer.Option(help="Exchange of the candles")] = DEFAULT_EXCHANGE,
    symbols: Annotated[list[str] | None, typer.Option("--symbol", help="Symbol (repeat)")] = None,
    timeframe: Annotated[str, typer.Option(help="Bar timeframe")] = DEFAULT_TIMEFRAME,
    speed: Annotated[float, typer.Option(help="Replay speed: 0 = as fast as possible, 60 = 1 h per minute")] = 0.0,
    start: Annotated[str | None, typer.Option(help="Replay from (ISO date or epoch ms)")] = None,
    recent_days: Annotated[
        float | None,
        typer.Option(
            help="Replay only the lake's last N days (never before the champion's training end); instead of --start"
        ),
    ] = None,
    end: Annotated[str | None, typer.Option(help="Replay until (ISO date or epoch ms)")] = None,
    cash: Annotated[float, typer.Option(help="Starting cash of a new session", max=1e12)] = 10_000.0,
    fraction: Annotated[float, typer.Option(help="Share of equity per new position")] = 0.5,
    max_bars: Annotated[int | None, typer.Option(help="Stop after this many bars")] = None,
    mode: Annotated[
        str, typer.Option(help="paper (default) or live: orders go to the exchange (needs keys)")
    ] = "paper",
    follow: Annotated[bool, typer.Option(help="After the replay, keep waiting for new candles in the lake")] = False,
    feed: Annotated[
        str,
        typer.Option(
            help="replay (the lake), ccxt (the exchange: WebSocket, REST fallback) or bus (the market-data "
            "service's candles: tradeloop market-data run; needs REDIS_URL)"
        ),
    ] = "replay",
    allow_in_sample: Annotated[
        bool,
        typer.Option(
            "--allow-in-sample",
            help="Start at or before the champion's training end (the session is marked "
            "in-sample: its results replay the training data)",
        ),
    ] = False,
    adapt_thresholds: Annotated[
        bool,
        typer.Option(
            "--adapt-thresholds",
            help="A new session adapts its champion's threshold from closed trades' outcomes (bounded, capped "
            "steps, minimum samples; freeze or revert it through the API)",
        ),
    ] = False,
    window_bars: Annotated[
        int,
        typer.Option(
            help="Bars of history per symbol each decision sees (at least "
            "the strategy's and model's warm-up: tradeloop.thresholds.warmup)"
        ),
    ] = 400,
    risk: Annotated[
        list[str] | None,
        typer.Option(
            "--risk",
            help="A risk limit of a new session, KEY=VALUE (repeat), e.g. --risk max_drawdown=0.2 "
            "--risk max_order_notional=5000; null turns one off (README: risk limits)",
        ),
    ] = None,
    leverage: Annotated[
        int | None,
        typer.Option(help="Perpetuals (--exchange binanceusdm): leverage set on the venue for every symbol"),
    ] = None,
    margin_mode: Annotated[
        str, typer.Option(help="Perpetuals: isolated (a liquidation takes only that position's margin) or cross")
    ] = "isolated",
    orders: Annotated[
        list[str] | None,
        typer.Option(
            "--orders",
            help="An order or sizing rule of a new session, KEY=VALUE (repeat; the backtest's options), e.g. "
            "--orders stop_loss=0.05 --orders entry_order=limit --orders limit_offset=0.002 (README: order types)",
        ),
    ] = None,
    risk_file: Annotated[
        Path | None, typer.Option(help="Risk limits of a new session as a JSON object (--risk pairs override)")
    ] = None,
) -> None:
    """Trade the promoted model over the replay feed (paper by default); Ctrl-C stops cleanly.
    A new session must start after the champion's training end (its first bar: --start, the
    lake's first candle, or now for --feed ccxt) unless --allow-in-sample."""
    from pydantic import ValidationError

    from live.runner import SessionConfig, run_session
    from tradeloop.observability import serve_metrics
    from tradeloop.ops.status import IN_SAMPLE_WARNING, sample_label
    from tradeloop.thresholds import OnlineConfig

    settings = get_settings()
    configure_logging(settings, service="engine", text_format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    traded = tuple(symbols or DEFAULT_SYMBOLS)
    first = parse_time(start, field="--start") if start else None
    if recent_days is not None:
        if start:
            raise ConfigError(f"--start {start} and --recent-days {recent_days:g} both set the first bar; give one")
        first = recent_start(
            settings, strategy=strategy, exchange=exchange, symbols=traded, timeframe=timeframe, days=recent_days
        )
    try:
        config = SessionConfig(
            name=name,
            strategy=strategy,
            exchange=exchange,
            symbols=traded,
            timeframe=timeframe,
            speed=speed,
            start=first,
            end=parse_time(end, field="--end") if end else None,
            init_cash=cash,
            fraction=fraction,
            mode=mode,
            follow_s=5.0 if follow else None,
            feed=feed,
            allow_in_sample=allow_in_sample,
            adapt_thresholds=OnlineConfig() if adapt_thresholds else None,
            window_bars=window_bars,
            risk=risk_config(risk, file=risk_file),
            orders=order_rules(orders),
            perps=perp_instruments(traded, leverage=leverage, margin_mode=margin_mode),
        )
    except ValidationError as exc:  # a bad option is named as the user typed it, never a traceback
        names = {"symbols": "--symbol", "init_cash": "--cash", "follow_s": "--follow", "risk": "--risk"}
        names |= {f: "--" + f.replace("_", "-") for f in SessionConfig.model_fields if f not in names}
        raise config_error(exc, what="live session", model=SessionConfig, names=names) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        serve_metrics(settings)  # TRADELOOP_METRICS_PORT: /metrics for Prometheus (tradeloop.observability)
        engine = await run_session(settings, config, max_bars=max_bars, stop=stop)
        console.print(
            f"session {name!r} ({sample_label(engine.session.in_sample)}): {engine.bars} bar(s) "
            f"processed, cash {engine.cash:,.2f}, "
            f"positions { ({s: q for s, q in engine.positions.items() if q}) }",
            highlight=False,
        )
        if engine.session.in_sample:
            console.print(f"note: session {name!r} {IN_SAMPLE_WARNING}", highlight=False)

    asyncio.run(main())


def recent_start(
    settings, *, strategy: str, exchange: str, symbols: tuple[str, ...], timeframe: str, days: float
) -> int:
    """The first bar of a replay of recent candles: ``days`` before the lake's last candle of
    these series, but after the champion's training end (so the session is out of sample)."""
    from tradeloop.data import CandleLake, SeriesKey
    from tradeloop.data.schema import timeframe_ms
    from tradeloop.registry import ModelRegistry

    if not (math.isfinite(days) and days > 0):
        raise ConfigError(f"--recent-days {days:g} must be a positive number of days (30 replays the last month)")
    lake = CandleLake(settings.lake_dir)
    lasts = {symbol: lake.last_ts(SeriesKey(exchange, symbol, timeframe)) for symbol in symbols}
    missing = [symbol for symbol, last in lasts.items() if last is None]
    if missing:
        raise ConfigError(
            f"--recent-days: the lake under {settings.lake_dir} has no {exchange} {timeframe} candles "
            f"of {missing}; import them first (`tradeloop data import`, or `make demo`)"
        )
    newest = max(last for last in lasts.values() if last is not None)
    first = max(0, newest - int(days * 86_400_000))  # more days than the lake holds: from its start
    entry = ModelRegistry(settings.registry_dir).champion(strategy)
    if entry is not None:
        _, model = ModelRegistry(settings.registry_dir).load(strategy)
        first = max(first, model.trained_until + timeframe_ms(timeframe))
    return first


app.command("health")(health_cmd.health)


@app.command("sessions")
@handle_errors
def list_sessions(
    stale_after: Annotated[
        float | None, typer.Option(help="Seconds without a heartbeat before a session is stale (default 180)")
    ] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide the terminal")] = False,
) -> None:
    """Every trading session with its status (running only while its engine's heartbeat is
    fresh; stale when not; finished: a replay reached the end of its data), equity and last bar."""
    from tradeloop.ops import EquityPoint
    from tradeloop.ops.models import utcnow
    from tradeloop.ops.status import IN_SAMPLE_WARNING, STALE_AFTER_S, sample_label, session_status

    store = _store()
    now = utcnow()
    tbl = FitTable(
        "Trading sessions",
        ["name", "status", "mode", "sample", "strategy", "symbols", "equity", "cash", "last bar", "reduce-only"],
        optional=["equity", "last bar", "symbols", "strategy", "cash", "reduce-only", "mode"],
    )
    notes = []
    for s in store.sessions():
        equity = store.frame(EquityPoint, s.id).sort("ts")["equity"]
        status = session_status(s.status, s.heartbeat_at, now=now, stale_after_s=stale_after or STALE_AFTER_S)
        tbl.add_row(
            s.name,
            status,
            s.mode,
            sample_label(s.in_sample),
            s.strategy,
            ",".join(s.symbols),
            fmt_num(equity[-1] if len(equity) else s.cash, False),
            fmt_num(s.cash, False),
            fmt_ts(s.last_bar_ts),
            _reduce_only(s.halted, s.needs_ack),
        )
        if s.in_sample:
            notes.append(f"session {s.name!r} is IN-SAMPLE: it {IN_SAMPLE_WARNING}")
        if s.needs_ack:
            notes.append(
                f"session {s.name!r} needs an acknowledgement (no entries): {s.needs_ack}; "
                f"`tradeloop live ack {s.name}` once resolved"
            )
        notes += [
            f"session {s.name!r}: {symbol} halted (no entries): {why}; "
            f"`tradeloop live ack {s.name} --symbol {symbol}` once resolved"
            for symbol, why in sorted((s.halted or {}).items())
        ]
    tbl.print(console, wide=wide)
    for note in notes:
        console.print(note, soft_wrap=True, highlight=False, markup=False)


def _reduce_only(halted: dict | None, needs_ack: str | None) -> str:
    parts = (["needs ack"] if needs_ack else []) + [f"{symbol} halted" for symbol in sorted(halted or {})]
    return ", ".join(parts) or "-"


def _transition(name: str, status: str) -> None:
    row = _store().set_status(name, status)
    console.print(f"session {row.name!r} is now {row.status}")


@app.command()
@handle_errors
def pause(name: Annotated[str, typer.Argument(help="Session name")]) -> None:
    """Stop opening or closing positions; fills and equity marks go on."""
    _transition(name, "paused")


@app.command()
@handle_errors
def resume(name: Annotated[str, typer.Argument(help="Session name")]) -> None:
    """Trade again after a pause."""
    _transition(name, "running")


@app.command()
@handle_errors
def stop(name: Annotated[str, typer.Argument(help="Session name")]) -> None:
    """End the session for good (a running engine exits before its next bar)."""
    _transition(name, "stopped")


@app.command()
@handle_errors
def ack(
    name: Annotated[str, typer.Argument(help="Session name")],
    symbol: Annotated[str | None, typer.Option(help="Lift this symbol's halt instead")] = None,
) -> None:
    """Acknowledge what put a session in reduce-only. Without --symbol: a balance drift
    (needs ack); the venue's balances as they are now become the reference. With --symbol:
    lift that symbol's halt (refused while one of its orders still has an unknown outcome).
    The audit log records who acknowledged."""
    row = _store().acknowledge(name, symbol=symbol)
    what = f"{symbol} may open positions again" if symbol else "it may open positions again"
    console.print(
        f"session {row.name!r} acknowledged: {what}"
        + (f" (still halted: {', '.join(sorted(row.halted))})" if row.halted else "")
    )


def perp_instruments(symbols: tuple[str, ...], *, leverage: int | None, margin_mode: str) -> dict:
    """Every symbol's ``PerpInstrument`` when ``--leverage`` is given (a perpetuals session)."""
    if leverage is None:
        return {}
    from pydantic import ValidationError

    from live.brokers.perps import PerpInstrument
    from tradeloop.errors import config_error

    try:
        spec = PerpInstrument(leverage=leverage, margin_mode=margin_mode)
    except ValidationError as exc:
        raise config_error(exc, what="perpetual instrument", model=PerpInstrument) from None
    return dict.fromkeys(symbols, spec)


@app.command("risk")
@handle_errors
def show_risk(name: Annotated[str, typer.Argument(help="Session name")]) -> None:
    """The session's risk limits (stored when it started) and its risk engine's state: the
    high-water mark, the drawdown and whether the kill switch tripped (``ack`` re-arms it)."""
    from rich.table import Table

    from tradeloop.risk import RiskConfig

    session = _store().session(name)
    table = Table(title=f"Risk of session {name!r}", title_justify="left", header_style="bold")
    table.add_column("limit / state")
    table.add_column("value", justify="right")
    for what, value in risk_rows(RiskConfig.parse(session.risk_config or {}), session.risk_state):
        table.add_row(what, value)
    console.print(table)


@app.command("positions")
@handle_errors
def show_positions(name: Annotated[str, typer.Argument(help="Session name")]) -> None:
    """The session's positions, each with its book (``champion``, or the challenger trading a capital
    slice): instrument, signed quantity (short < 0), entry and last price, unrealised and realised
    P&L, and a perpetual's liquidation price as the venue reported it; then the champion's and the
    whole session's cash."""
    from tradeloop.challengers.books import CHAMPION, session_books

    store = _store()
    session = store.session(name)
    tbl = FitTable(
        f"Positions of session {name!r}",
        ["book", "instrument", "quantity", "entry", "last", "unrealized", "realized", "liquidation"],
        optional=["liquidation", "realized"],
    )
    rows = store.positions(session.id)
    with store.transaction() as db:
        books = session_books(db, session)  # marks and P&L as the engine computes them, every book
    for book_name, book in books.items():
        for held in book.positions(include_flat=book_name == CHAMPION):
            row = rows.get(held.instrument.symbol) if book_name == CHAMPION else None
            tbl.add_row(
                book_name[:12],
                str(held.instrument),
                fmt_num(held.quantity),
                "-" if held.is_flat else fmt_num(held.entry_price),
                fmt_num(held.mark_price),
                "-" if held.is_flat else f"{held.unrealized_pnl:,.2f}",
                f"{held.realized_pnl:,.2f}",
                fmt_num(row.liquidation_price) if row is not None and row.liquidation_price else "-",
            )
    tbl.print(console)
    whole = sum(b.cash for b in books.values())
    console.print(f"cash: champion {session.cash:,.2f}, whole session {whole:,.2f}")
