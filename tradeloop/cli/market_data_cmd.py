"""``tradeloop market-data run``: the market-data service of one venue (``live.marketdata``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from tradeloop.cli.common import console, handle_errors
from tradeloop.errors import ConfigError
from tradeloop.settings import get_settings

app = typer.Typer(help="The market-data service: owns a venue's connections and publishes closed candles on the bus.")


@app.command("run")
@handle_errors
def run(
    exchange: Annotated[str, typer.Option(help="The venue (a ccxt id)")] = "binance",
    symbols: Annotated[
        list[str] | None, typer.Option("--symbol", help="A symbol engines may trade (repeat), e.g. BTC-USDT")
    ] = None,
    timeframe: Annotated[str, typer.Option(help="Bar timeframe")] = "1m",
    sources: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="Another venue quoting the same symbols, a fallback in priority order (repeat): a bar comes "
            "from the first healthy source (live.marketdata.sources)",
        ),
    ] = None,
    divergence: Annotated[
        float, typer.Option(help="A source's close this far from the sources' median is unhealthy (0.02 = 2%)")
    ] = 0.02,
    max_batches: Annotated[int | None, typer.Option(help="Stop after publishing this many bars")] = None,
    quotes: Annotated[
        bool, typer.Option("--quotes", help="Also publish each symbol's best bid and ask on quotes:<venue>")
    ] = False,
    quote_interval_ms: Annotated[
        int, typer.Option(help="With --quotes: a symbol's quotes go out at most this often (ms); the newest wins")
    ] = 250,
) -> None:
    """Publish the venue's closed candles on the bus (stream market:<venue>:<timeframe>) and the
    latest prices; engines read them with `tradeloop live run --feed bus`. With --quotes, also
    the venue's top of book (live.marketdata.quotes). Needs REDIS_URL."""
    from live.arbitrage import top_of_book
    from live.bus import RedisBus, check_redis
    from live.feeds.ccxt_feed import CcxtFeed
    from live.marketdata.quotes import QuotePublisher
    from live.marketdata.service import MarketDataService
    from live.marketdata.sources import SourcedFeed
    from live.venue_monitor import VenueMonitor
    from tradeloop.data import CandleLake
    from tradeloop.data.exchanges import make_exchange
    from tradeloop.data.schema import ccxt_symbol, check_exchange, timeframe_ms
    from tradeloop.observability.venues import venue_health
    from tradeloop.ops import OpsStore
    from tradeloop.ops.market_store import MarketStore

    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.redis_url:
        raise ConfigError("the market-data service publishes on the bus and needs REDIS_URL; set it (redis://...)")
    for venue in (exchange, *(sources or [])):
        check_exchange(venue)
    timeframe_ms(timeframe)
    if not 0 < divergence < 1:
        raise ConfigError(f"--divergence {divergence:g} must lie between 0 and 1 (0.02 = 2%)")
    if quote_interval_ms < 0:
        raise ConfigError(f"--quote-interval-ms {quote_interval_ms} must be 0 or more (0: every quote goes out)")
    traded = list(dict.fromkeys(symbols or ["BTC-USDT"]))
    redis_url = settings.redis_url
    from tradeloop.observability import serve_metrics

    serve_metrics(settings)  # TRADELOOP_METRICS_PORT: /metrics for Prometheus (the tradeloop_venue_* series)

    async def main() -> None:
        await check_redis(redis_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)

        def venue_feed(venue: str, *, primary: bool) -> CcxtFeed:
            client = make_exchange(  # TRADELOOP_EXCHANGE_*_URL point at the traded venue only
                venue,
                timeout_s=settings.http_timeout_s,
                api_url=settings.exchange_api_url if primary else None,
                websocket=True,
                ws_url=settings.exchange_ws_url if primary else None,
            )
            return CcxtFeed(client, lake=lake, symbols=traded, timeframe=timeframe)

        primary = venue_feed(exchange, primary=True)
        feeds = [primary] + [venue_feed(v, primary=False) for v in dict.fromkeys(sources or []) if v != exchange]
        health = venue_health()  # every client above reports its calls here (tradeloop.data.exchanges)
        feed = SourcedFeed(feeds, divergence=divergence, health=health) if len(feeds) > 1 else primary
        bus = RedisBus(redis_url, prefix=settings.redis_prefix)
        service = MarketDataService(feed, bus, venue=exchange, timeframe=timeframe)
        store = OpsStore.open(settings.effective_database_url)  # the venues' health snapshots (GET /venues/health)
        monitor = VenueMonitor({f.exchange.id: f.exchange for f in feeds}, market=MarketStore(store), health=health)
        publisher = QuotePublisher(bus, venue=exchange, min_interval_ms=quote_interval_ms) if quotes else None
        try:
            side = [asyncio.create_task(monitor.run(stop))]
            if publisher is not None:  # on the candles' client, closed with the feed
                tops = top_of_book(primary.exchange, [ccxt_symbol(s) for s in traded])
                side.append(asyncio.create_task(publisher.run(tops, stop=stop)))
            task = asyncio.create_task(service.run(stop=stop, max_batches=max_batches))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            task.cancel()  # the service closes the feed and its client: the quotes' too
            stopping.cancel()
            await asyncio.gather(task, *side, return_exceptions=True)
        finally:
            await bus.close()
            store.close()
        console.print(f"market data {exchange} {timeframe}: {service.published} bar(s) published", highlight=False)
        if publisher is not None:
            console.print(f"quotes {exchange}: {publisher.published} published", highlight=False)

    asyncio.run(main())
