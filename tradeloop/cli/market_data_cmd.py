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
    max_batches: Annotated[int | None, typer.Option(help="Stop after publishing this many bars")] = None,
) -> None:
    """Publish the venue's closed candles on the bus (stream market:<venue>:<timeframe>) and the
    latest prices; engines read them with `tradeloop live run --feed bus`. Needs REDIS_URL."""
    from live.bus import RedisBus, check_redis
    from live.feeds.ccxt_feed import CcxtFeed
    from live.marketdata.service import MarketDataService
    from tradeloop.data import CandleLake
    from tradeloop.data.exchanges import make_exchange
    from tradeloop.data.schema import check_exchange, timeframe_ms

    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.redis_url:
        raise ConfigError("the market-data service publishes on the bus and needs REDIS_URL; set it (redis://...)")
    check_exchange(exchange)
    timeframe_ms(timeframe)
    traded = list(dict.fromkeys(symbols or ["BTC-USDT"]))
    redis_url = settings.redis_url

    async def main() -> None:
        await check_redis(redis_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        client = make_exchange(
            exchange,
            timeout_s=settings.http_timeout_s,
            api_url=settings.exchange_api_url,
            websocket=True,
            ws_url=settings.exchange_ws_url,
        )
        lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
        feed = CcxtFeed(client, lake=lake, symbols=traded, timeframe=timeframe)
        bus = RedisBus(redis_url, prefix=settings.redis_prefix)
        service = MarketDataService(feed, bus, venue=exchange, timeframe=timeframe)
        try:
            task = asyncio.create_task(service.run(stop=stop, max_batches=max_batches))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            task.cancel()
            stopping.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await bus.close()
        console.print(f"market data {exchange} {timeframe}: {service.published} bar(s) published", highlight=False)

    asyncio.run(main())
