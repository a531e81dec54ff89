"""``tradeloop arbitrage run``: cross-venue arbitrage detection over the venues' top of book
(``live.arbitrage``), stored in the operational database and published on the bus."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter
from typing import Annotated

import typer

from tradeloop.cli.common import console, handle_errors
from tradeloop.errors import ConfigError, ExchangeError, config_error
from tradeloop.settings import get_settings

app = typer.Typer(help="Cross-venue arbitrage detection over top of book (detection only: nothing is traded).")


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
) -> None:
    """Watch every venue's best bid and ask of the symbols (WebSocket) and report each
    opportunity to buy on one venue and sell on another after both taker fees: stored in the
    operational database (GET /arbitrage/opportunities) and published on the bus stream
    `arbitrage` (REDIS_URL; in-process without it). TRADELOOP_EXCHANGE_API_URL and
    TRADELOOP_EXCHANGE_WS_URL apply to the first venue. Runs until interrupted."""
    import ccxt
    from pydantic import ValidationError

    from live.arbitrage import ArbitrageService, merge_tops, taker_fees, top_of_book
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
    api = venue_values(api_urls, option="--api-url", venues=names, example="binance=https://api.binance.com")
    ws = venue_values(ws_urls, option="--ws-url", venues=names, example="binance=wss://stream.binance.com:9443/ws")
    if settings.exchange_api_url:
        api.setdefault(names[0], settings.exchange_api_url)
    if settings.exchange_ws_url:
        ws.setdefault(names[0], settings.exchange_ws_url)
    from tradeloop.observability import serve_metrics

    serve_metrics(settings)  # TRADELOOP_METRICS_PORT: /metrics for Prometheus (the tradeloop_venue_* series)

    async def main() -> tuple[int, Counter]:
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
            service = ArbitrageService(ArbitrageScanner(config), bus=bus, market=MarketStore(store))
            console.print(
                f"arbitrage {', '.join(traded)} on {', '.join(names)}; taker fees {fees}",
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
        return service.events, seen

    events, seen = asyncio.run(main())
    for (venue, symbol), n in sorted(seen.items()):
        console.print(f"{venue} {symbol}: {n} quote(s)", highlight=False)
    console.print(f"arbitrage: {events} event(s) stored and published", highlight=False)
