"""``tradeloop arbitrage run``: cross-venue arbitrage detection over the venues' top of book
(``live.arbitrage``), stored in the operational database and published on the bus; with
``--paper-execute`` (off by default) both legs of each opening are paper-traded
(``live.arbitrage_paper``) from the inventory ``--inventory`` pre-funds; never real money."""

from __future__ import annotations

import asyncio
import logging
import math
import signal
from collections import Counter
from typing import TYPE_CHECKING, Annotated

import typer

from tradeloop.cli.common import console, handle_errors
from tradeloop.errors import ConfigError, ExchangeError, config_error
from tradeloop.settings import get_settings

if TYPE_CHECKING:
    from tradeloop.arbitrage import PaperExecutionConfig

app = typer.Typer(
    help="Cross-venue arbitrage detection over top of book (detection only unless --paper-execute: never real money)."
)
PAPER_OPTIONS = ("--max-notional", "--min-notional", "--inventory", "--paper-session")


def venue_values(pairs: list[str] | None, *, option: str, venues: list[str], example: str) -> dict[str, str]:
    """``VENUE=VALUE`` options by venue; a malformed one, or one naming no ``--venue``, is a
    ConfigError naming it."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        venue, sep, value = pair.partition("=")
        venue, value = venue.strip(), value.strip()
        if not sep or not venue or not value:
            raise ConfigError(f"{option} {pair!r}: write VENUE=VALUE, e.g. {option} {example}")
        if venue not in venues:
            raise ConfigError(f"{option} {pair!r} names {venue!r}, which is no --venue ({', '.join(venues)}); add it")
        out[venue] = value
    return out


def fee_overrides(pairs: list[str] | None, *, venues: list[str]) -> dict[str, float]:
    out = {}
    for venue, text in venue_values(pairs, option="--taker-fee", venues=venues, example="binance=0.00075").items():
        try:
            rate = float(text)
        except ValueError:
            rate = -1.0
        if not 0 <= rate < 0.1:
            raise ConfigError(f"--taker-fee {venue}={text}: give a rate between 0 and 0.1 (0.001 is 0.1%)")
        out[venue] = rate
    return out


def inventory_of(pairs: list[str] | None, *, venues: list[str]) -> dict[str, dict[str, float]]:
    """``--inventory VENUE=ASSET:AMOUNT[,ASSET:AMOUNT]`` (repeat) as venue -> asset -> amount; a
    malformed one, one naming no ``--venue``, an amount that is no finite number >= 0, or an
    asset of a venue given twice is a ConfigError naming it."""
    out: dict[str, dict[str, float]] = {}
    example = "--inventory binance=USDT:10000,BTC:0.5"
    for pair in pairs or []:
        venue, sep, held = pair.partition("=")
        venue = venue.strip()
        if not sep or not venue or not held.strip():
            raise ConfigError(f"--inventory {pair!r}: write VENUE=ASSET:AMOUNT, e.g. {example}")
        if venue not in venues:
            raise ConfigError(
                f"--inventory {pair!r} names {venue!r}, which is no --venue ({', '.join(venues)}); add it"
            )
        for item in held.split(","):
            asset, colon, text = item.strip().partition(":")
            try:
                amount = float(text)
            except ValueError:
                amount = -1.0
            if not colon or not asset.strip() or not math.isfinite(amount) or not amount >= 0:
                raise ConfigError(
                    f"--inventory {pair!r}: {item.strip()!r} is no ASSET:AMOUNT with a finite amount >= 0; "
                    f"e.g. {example}"
                )
            given, name = out.setdefault(venue, {}), asset.strip().upper()
            if name in given:
                raise ConfigError(
                    f"--inventory {pair!r}: {name} on {venue} is given twice ({given[name]:g} and {amount:g}); "
                    "give each asset of a venue once"
                )
            given[name] = amount
    return out


@app.command("run")
@handle_errors
def run(
    venues: Annotated[
        list[str] | None, typer.Option("--venue", help="A venue (a ccxt id) to compare; repeat, two at least")
    ] = None,
    symbols: Annotated[
        list[str] | None, typer.Option("--symbol", help="A symbol quoted on every venue (repeat)")
    ] = None,
    min_net_bps: Annotated[float, typer.Option(help="An opportunity needs a net spread above this (bps)")] = 0.0,
    max_size: Annotated[float | None, typer.Option(help="Base amount taken at most (default: the book's)")] = None,
    max_quote_age_ms: Annotated[
        int, typer.Option(help="A quote this far behind the symbol's newest takes no part (ms)")
    ] = 2_000,
    fee_rates: Annotated[
        list[str] | None,
        typer.Option("--taker-fee", help="VENUE=RATE: the venue's taker fee instead of ccxt's markets' (repeat)"),
    ] = None,
    api_urls: Annotated[
        list[str] | None,
        typer.Option("--api-url", help="VENUE=URL: the venue's REST base (a proxy, a test venue); repeat"),
    ] = None,
    ws_urls: Annotated[
        list[str] | None, typer.Option("--ws-url", help="VENUE=URL: the venue's WebSocket URL; repeat")
    ] = None,
    paper_execute: Annotated[
        bool,
        typer.Option(
            "--paper-execute",
            help="Paper-trade both legs of each opening at the quotes (never real money); off: detection only",
        ),
    ] = False,
    max_notional: Annotated[
        float | None, typer.Option(help="With --paper-execute: quote amount one pair buys at most, e.g. 1000")
    ] = None,
    min_notional: Annotated[
        float, typer.Option(help="With --paper-execute: a pair worth no more than this is skipped (quote)")
    ] = 0.0,
    inventory: Annotated[
        list[str] | None,
        typer.Option(
            "--inventory",
            help="With --paper-execute: VENUE=ASSET:AMOUNT[,ASSET:AMOUNT] held there at the start (repeat); "
            "a venue sells only what it holds",
        ),
    ] = None,
    paper_session: Annotated[
        str, typer.Option(help="With --paper-execute: the paper session its orders and fills are stored under")
    ] = "arbitrage-paper",
) -> None:
    """Watch every venue's best bid and ask of the symbols (WebSocket) and report each
    opportunity to buy on one venue and sell on another after both taker fees: stored in the
    operational database (GET /arbitrage/opportunities) and published on the bus stream
    `arbitrage` (REDIS_URL; in-process without it). TRADELOOP_EXCHANGE_API_URL and
    TRADELOOP_EXCHANGE_WS_URL apply to the first venue. Runs until interrupted. Detection
    only unless --paper-execute: then each opening's two legs are paper-traded at the quoted
    prices with the taker fees, from the pre-funded --inventory, as orders and fills of the
    paper session (stream `arbitrage_executions`)."""
    import ccxt
    from pydantic import ValidationError

    from live.arbitrage import ArbitrageService, merge_tops, taker_fees, top_of_book, venue_limits
    from live.arbitrage_paper import PaperExecutor
    from live.brokers.quote_paper import QuotePaperBroker
    from live.bus import check_redis, make_bus
    from tradeloop.arbitrage import ArbitrageConfig, ArbitrageScanner
    from tradeloop.data.exchanges import make_exchange
    from tradeloop.data.schema import ccxt_symbol, check_exchange
    from tradeloop.ops import OpsStore
    from tradeloop.ops.market_store import MarketStore

    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = list(dict.fromkeys(venues or []))
    if len(names) < 2:
        raise ConfigError(f"--venue given {len(names)} time(s); compare two venues at least, e.g. --venue binance "
                          "--venue kraken")  # fmt: skip
    for venue in names:
        check_exchange(venue)
    traded = [ccxt_symbol(s) for s in dict.fromkeys(symbols or ["BTC-USDT"])]
    overrides = fee_overrides(fee_rates, venues=names)
    try:  # the options checked before any connection; the fees come from the venues
        options = ArbitrageConfig(
            taker_fees={}, min_net_bps=min_net_bps, max_size=max_size, max_quote_age_ms=max_quote_age_ms
        )
    except ValidationError as exc:
        names_shown = {"max_size": "--max-size", "max_quote_age_ms": "--max-quote-age-ms"}
        raise config_error(exc, what="arbitrage", model=ArbitrageConfig, names=names_shown) from None
    paper = paper_option(
        paper_execute, max_notional=max_notional, min_notional=min_notional, paper_session=paper_session,
        inventory=inventory_of(inventory, venues=names), venues=names,
    )  # fmt: skip
    for symbol in traded if paper is not None else []:
        if ":" in symbol:
            raise ConfigError(f"--symbol {symbol}: --paper-execute trades spot symbols only (BASE-QUOTE)")
    if paper is not None:  # the paper session is checked before any venue is connected to
        paused = check_session(settings.effective_database_url, paper, symbols=traded, venues=names)
        if paused is not None:
            console.print(paused, highlight=False, soft_wrap=True)
    api = venue_values(api_urls, option="--api-url", venues=names, example="binance=https://api.binance.com")
    ws = venue_values(ws_urls, option="--ws-url", venues=names, example="binance=wss://stream.binance.com:9443/ws")
    if settings.exchange_api_url:
        api.setdefault(names[0], settings.exchange_api_url)
    if settings.exchange_ws_url:
        ws.setdefault(names[0], settings.exchange_ws_url)
    from tradeloop.observability import serve_metrics

    serve_metrics(settings)  # TRADELOOP_METRICS_PORT: /metrics for Prometheus (the tradeloop_venue_* series)

    async def main() -> tuple[int, Counter, int]:
        if settings.redis_url:
            await check_redis(settings.redis_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        clients = {
            v: make_exchange(v, timeout_s=settings.http_timeout_s, api_url=api.get(v), websocket=True, ws_url=ws.get(v))
            for v in names
        }
        bus = make_bus(settings.redis_url, prefix=settings.redis_prefix)
        store = OpsStore.open(settings.effective_database_url)
        seen: Counter = Counter()
        try:
            fees = await taker_fees(clients, traded, overrides=overrides)
            config = options.model_copy(update={"taker_fees": fees})
            executor = None
            if paper is not None:
                book = QuotePaperBroker(taker_fees=fees)
                limits = await venue_limits(clients, traded)  # amount steps and minimums
                executor = PaperExecutor(paper, store=store, broker=book, symbols=traded, limits=limits)
            service = ArbitrageService(
                ArbitrageScanner(config), bus=bus, market=MarketStore(store), executor=executor, symbols=traded
            )
            console.print(
                f"arbitrage {', '.join(traded)} on {', '.join(names)}; taker fees {fees}",
                highlight=False,
                soft_wrap=True,
            )
            if paper is not None:
                console.print(
                    f"paper execution into session {paper.session!r}: at most {paper.max_notional} a pair "
                    "(its buy leg's fee included); "
                    f"inventory {paper.as_dict()['inventory']}",
                    highlight=False,
                    soft_wrap=True,
                )
            tops = merge_tops(*(top_of_book(c, traded) for c in clients.values()))

            async def counted():
                async for top in tops:
                    seen[(top.venue, top.symbol)] += 1
                    yield top

            task = asyncio.create_task(service.run(counted()))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            task.cancel()
            results = await asyncio.gather(task, return_exceptions=True)
            await tops.aclose()
            if isinstance(results[0], Exception):
                raise results[0]
        except ccxt.BaseError as exc:  # a venue refused or could not be reached (exit 4)
            raise ExchangeError(f"arbitrage stopped: {type(exc).__name__}: {exc}") from None
        finally:
            await asyncio.gather(*(c.close() for c in clients.values()), return_exceptions=True)
            await bus.close()
            store.close()
        return service.events, seen, service.executions

    events, seen, executed = asyncio.run(main())
    for (venue, symbol), n in sorted(seen.items()):
        console.print(f"{venue} {symbol}: {n} quote(s)", highlight=False)
    console.print(f"arbitrage: {events} event(s) stored and published", highlight=False)
    if paper is not None:
        console.print(f"arbitrage: {executed} pair(s) paper-executed", highlight=False)


def paper_option(
    on: bool,
    *,
    max_notional: float | None,
    min_notional: float,
    paper_session: str,
    inventory: dict[str, dict[str, float]],
    venues: list[str] | None = None,
) -> PaperExecutionConfig | None:
    """The paper-execution option of ``--paper-execute`` (None: detection only); a paper option
    without it, or ``--paper-execute`` without what it needs, is a ConfigError saying what to add."""
    from tradeloop.arbitrage import PaperExecutionConfig

    given = [
        name
        for name, value in zip(
            PAPER_OPTIONS,
            (max_notional is not None, min_notional != 0.0, bool(inventory), paper_session != "arbitrage-paper"),
            strict=True,
        )
        if value
    ]  # fmt: skip
    if not on:
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --paper-execute; add it, or drop them to detect only")
        return None
    if max_notional is None:
        raise ConfigError("--paper-execute needs --max-notional: the quote amount one pair buys at most, e.g. 1000")
    if not inventory:
        raise ConfigError(
            "--paper-execute needs --inventory on every venue (a spot venue sells only what it holds), "
            "e.g. --inventory binance=USDT:10000,BTC:0.5 --inventory kraken=USDT:10000,BTC:0.5"
        )
    try:
        config = PaperExecutionConfig(
            max_notional=max_notional, min_notional=min_notional, inventory=inventory, session=paper_session
        )
    except ConfigError as exc:
        names = {"max_notional=": "--max-notional=", "min_notional=": "--min-notional=", "session=": "--paper-session=",
                 "inventory[": "--inventory ["}  # fmt: skip
        text = str(exc)
        for field, option in names.items():
            text = text.replace(field, option)
        raise ConfigError(text) from None
    missing = [v for v in venues or [] if v not in inventory]
    if missing:
        raise ConfigError(
            f"--paper-execute needs --inventory on every venue; none for {', '.join(missing)}: add e.g. "
            f"--inventory {missing[0]}=USDT:10000,BTC:0.5 (or {missing[0]}=USDT:0 to hold nothing there)"
        )
    return config


def check_session(url: str, paper: PaperExecutionConfig, *, symbols: list[str], venues: list[str]) -> str | None:
    """The paper session's checks that need no venue (``live.arbitrage_session`` rule 2: another
    mode or strategy, stopped or finished, other settings, quote assets), before connecting;
    a line saying so when it is paused (None: not)."""
    from live.arbitrage_session import check_paper_session
    from tradeloop.errors import SessionStateError
    from tradeloop.ops import OpsStore

    store = OpsStore.open(url)
    try:
        try:
            row = store.session(paper.session)
        except SessionStateError:
            row = None
        check_paper_session(row, paper, symbols=symbols, venues=venues)
    finally:
        store.close()
    if row is not None and row.status != "running":
        return (
            f"paper session {paper.session!r} is {row.status}: openings are detected and stored but not traded "
            f"until `tradeloop live resume {paper.session}`"
        )
    return None
