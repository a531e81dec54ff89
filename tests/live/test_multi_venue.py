"""Several venues at once, through the real ccxt clients: the loopback Binance spot venue
(``tests/exchange_server.py``) and the loopback OKX venue (``tests/okx_server.py``,
``tests/okx_ws_server.py``) side by side.

One ``BrokerRouter`` sends each order to its instrument's venue (``BTC-BUSD``: Binance, the
session's exchange; ``okx:BTC-USDT``: OKX), each with that venue's precision, minimums, fees and
wire format; fills come back per venue under the session's key; a session trading one
instrument on each venue replays bars and its orders land on the right venue."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal

import ccxt
import polars as pl
import pytest
from exchange_server import BinanceLoopback
from okx_server import OkxLoopback
from okx_ws_server import OkxWsLoopback

from live.brokers.base import OrderRequest
from live.brokers.ccxt_broker import CcxtBroker
from live.brokers.ccxt_orders import venue_client_id
from live.brokers.router import BrokerRouter
from live.bus import make_bus
from live.engine import EngineConfig, LiveEngine
from live.feeds.ccxt_feed import CcxtFeed, CcxtFeedConfig
from live.models import ModelSlot
from live.runner import SessionConfig, backtest_config, open_session
from live.venue_feed import VenueReplay
from tests.live.conftest import World, trained_world  # noqa: F401  (shared fixture)
from tests.live.venue_session import FAST, START, SYMBOL, broker_on
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.exchanges import make_exchange
from tradeloop.ops import OpsStore
from tradeloop.registry import ModelRegistry
from tradeloop.trading import InstrumentId

OKX_KEY = "okx:BTC-USDT"
PAIR = SYMBOL.replace("-", "")  # BTCBUSD on Binance
BINANCE_PRICE, OKX_PRICE = 17_000.0, 17_010.0


def okx_broker(server: OkxLoopback, *, secret: str | None = None) -> CcxtBroker:
    exchange = make_exchange(
        "okx",
        timeout_s=1.0,
        api_url=server.url,
        asynchronous=True,
        credentials={"apiKey": server.api_key, "secret": secret or server.secret, "password": server.passphrase},
        allow_insecure_loopback=True,
    )
    exchange.enableRateLimit = False
    return CcxtBroker(exchange, config=FAST)


def router_on(binance: BinanceLoopback, okx: OkxLoopback) -> BrokerRouter:
    return BrokerRouter({"binance": broker_on(binance), "okx": okx_broker(okx)}, default_venue="binance")


def venues(**okx_options):
    binance = BinanceLoopback(candles={}, prices={PAIR: BINANCE_PRICE}, balances={"BUSD": 20_000.0})
    okx = OkxLoopback(prices={"BTC-USDT": OKX_PRICE}, balances={"USDT": 20_000.0}, **okx_options)
    return binance, okx


def test_each_order_goes_to_its_venue_with_that_venues_rules() -> None:
    """Market buys of 1,000 quote on each venue fill there (OKX: 0.15% taker fee, Binance: 0.1%),
    a limit price goes out on each venue's tick, a 5-quote buy passes OKX's minimum size but not
    Binance's 10-quote minimum notional, and an instrument on a venue without a broker is refused
    before anything is sent."""
    binance, okx = venues()
    with binance, okx:
        router = router_on(binance, okx)

        async def scenario() -> list:
            states = [
                await router.submit(OrderRequest("tl1-1-BTCBUSD-en", SYMBOL, "buy", quote_amount=1_000.0)),
                await router.submit(OrderRequest("tl1-1-okxBTCUSDT-en", OKX_KEY, "buy", quote_amount=1_000.0)),
                await router.submit(
                    OrderRequest("tl1-2-BTCBUSD-li", SYMBOL, "buy", 0.01, order_type="limit", price=16_999.987)
                ),
                await router.submit(
                    OrderRequest("tl1-2-okxBTCUSDT-li", OKX_KEY, "buy", 0.01, order_type="limit", price=16_999.987)
                ),
                await router.submit(OrderRequest("tl1-3-BTCBUSD-en", SYMBOL, "buy", quote_amount=5.0)),
                await router.submit(OrderRequest("tl1-3-okxBTCUSDT-en", OKX_KEY, "buy", quote_amount=5.0)),
                await router.submit(OrderRequest("tl1-4-krakenBTCUSD-en", "kraken:BTC-USD", "buy", quote_amount=5.0)),
            ]
            states.append(await router.open_orders(OKX_KEY))
            states.append(await router.cancel(OrderRequest("tl1-2-okxBTCUSDT-li", OKX_KEY, "buy", 0.01)))
            states.append(await router.balances())
            states.append((router.market_rules([SYMBOL, OKX_KEY]), router.fees([SYMBOL, OKX_KEY])))
            states.append((router.is_dust(OKX_KEY, 0.000005), router.is_dust(SYMBOL, 0.000005)))
            await router.close()
            return states

        b_mkt, o_mkt, b_lim, o_lim, b_small, o_small, nowhere, listed, canceled, balances, rules, dust = asyncio.run(
            scenario()
        )
    assert (b_mkt.status, o_mkt.status) == ("filled", "filled")
    [b_fill], [o_fill] = b_mkt.fills, o_mkt.fills
    assert (b_fill.symbol, o_fill.symbol) == (SYMBOL, OKX_KEY)  # named by the session's key
    assert (b_fill.price, o_fill.price) == (BINANCE_PRICE, OKX_PRICE)
    assert b_fill.fee == pytest.approx(b_fill.quantity * BINANCE_PRICE * 0.001)
    assert o_fill.fee == pytest.approx(o_fill.quantity * OKX_PRICE * 0.0015)
    assert okx.fills[0]["clOrdId"] == venue_client_id("okx", "tl1-1-okxBTCUSDT-en") == "tl11okxBTCUSDTen"
    [sent] = [c for c in okx.calls("/api/v5/trade/batch-orders") if c["clOrdId"] == "tl11okxBTCUSDTen"]
    assert (sent["ordType"], sent["tdMode"], sent["tgtCcy"], sent["sz"]) == ("market", "cash", "quote_ccy", "1000")
    [b_sent] = [c for c in binance.calls("POST", "/api/v3/order") if c["newClientOrderId"] == "tl1-1-BTCBUSD-en"]
    assert float(b_sent["quoteOrderQty"]) == 1_000.0
    # each venue's tick: Binance 0.01, OKX 0.1; both rest below the last price
    assert (b_lim.status, o_lim.status) == ("acknowledged", "acknowledged")
    assert binance.orders["tl1-2-BTCBUSD-li"]["price"] == "16999.99000000"
    assert Decimal(okx.orders["tl12okxBTCUSDTli"]["px"]) == Decimal("17000.0")
    # each venue's minimums: Binance refuses 5 BUSD (MIN_NOTIONAL 10); OKX takes 5 USDT (minSz 0.00001 BTC)
    assert b_small.status == "rejected" and "MIN_NOTIONAL" in b_small.reason
    assert o_small.status == "filled" and o_small.fills[0].quantity == pytest.approx(0.00029394, abs=1e-8)
    assert nowhere.status == "rejected" and "no broker for venue 'kraken'" in nowhere.reason
    assert listed == {"tl12okxBTCUSDTli"} and canceled.status == "canceled"
    assert okx.orders["tl12okxBTCUSDTli"]["state"] == "canceled"
    held = b_fill.quantity + o_fill.quantity + o_small.fills[0].quantity
    assert balances["BTC"] == pytest.approx(held) and {"BUSD", "USDT"} <= set(balances)
    markets, fees = rules
    assert (markets[SYMBOL].price_tick, markets[OKX_KEY].price_tick) == (0.01, 0.1)
    assert (markets[SYMBOL].amount_step, markets[OKX_KEY].amount_step) == (0.00001, 1e-8)
    assert fees == {SYMBOL: (0.001, 0.001), OKX_KEY: (0.0015, 0.001)}
    assert dust == (True, True)  # under OKX's minSz and under Binance's lot step


def test_the_okx_loopback_refuses_a_bad_signature_passphrase_or_stale_timestamp() -> None:
    """OKX's signing as the exchange checks it: a client with a wrong secret gets 50113, a wrong
    passphrase 50105, a clock 60 s ahead 50102 (all ``AuthenticationError`` / ``InvalidNonce`` in
    ccxt), and the broker turns the refused create into ``rejected`` with nothing placed."""
    _, okx = venues()
    with okx:

        async def scenario() -> list:
            out = []
            bad = okx_broker(okx, secret="not-the-secret")
            out.append(await bad.submit(OrderRequest("tl9-1-okxBTCUSDT-en", OKX_KEY[4:], "buy", quote_amount=50.0)))
            await bad.close()
            for options in ({"password": "wrong-passphrase"}, {"options": {"timeDifference": -60_000}}):
                client = make_exchange("okx", api_url=okx.url, asynchronous=True, credentials={
                    "apiKey": okx.api_key, "secret": okx.secret, "password": okx.passphrase,
                }, allow_insecure_loopback=True)  # fmt: skip
                client.password = options.get("password", client.password)
                client.options.update(options.get("options", {}))
                try:
                    await client.fetch_balance()
                except ccxt.BaseError as exc:
                    out.append(exc)
                finally:
                    await client.close()
            return out

        refused, passphrase, stale = asyncio.run(scenario())
        # the same request, signed by hand: the right signature is accepted
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        sign = hmac.new(okx.secret.encode(), f"{stamp}GET/api/v5/account/balance".encode(), hashlib.sha256).digest()
        headers = {
            "OK-ACCESS-KEY": okx.api_key,
            "OK-ACCESS-PASSPHRASE": okx.passphrase,
            "OK-ACCESS-TIMESTAMP": stamp,
            "OK-ACCESS-SIGN": base64.b64encode(sign).decode(),
        }
        with urllib.request.urlopen(urllib.request.Request(okx.url + "/api/v5/account/balance", headers=headers)) as r:
            assert json.loads(r.read())["code"] == "0"
        headers["OK-ACCESS-SIGN"] = base64.b64encode(b"x" * 32).decode()
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(urllib.request.Request(okx.url + "/api/v5/account/balance", headers=headers))
        assert http.value.code == 401 and json.loads(http.value.read())["code"] == "50113"
    assert refused.status == "rejected" and "50113" in refused.reason and "Invalid Sign" in refused.reason
    assert okx.book == [] and okx.creates == {}  # refused before the venue looked at it
    assert isinstance(passphrase, ccxt.AuthenticationError) and "50105" in str(passphrase)
    assert isinstance(stale, ccxt.InvalidNonce) and "50102" in str(stale)


def test_okx_candles_arrive_over_its_business_websocket_per_bar(tmp_path) -> None:
    """ccxt.pro subscribes to OKX's candle channels on ``/ws/v5/business`` and the feed closes
    each bar once, across a dropped connection."""
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    script = {
        inst: [[t0 + i * 60_000, p + i, p + i + 1, p + i - 1, p + i + 0.5, 2.0 + i] for i in range(6)]
        for inst, p in (("BTC-USDT", 17_000.0), ("ETH-USDT", 1_200.0))
    }
    with OkxLoopback() as rest, OkxWsLoopback(script, drop_after=5) as ws:
        client = make_exchange("okx", timeout_s=5.0, api_url=rest.url, websocket=True, ws_url=ws.url)
        feed = CcxtFeed(
            client,
            lake=CandleLake(tmp_path),
            symbols=["BTC-USDT", "ETH-USDT"],
            timeframe="1m",
            config=CcxtFeedConfig(settle_s=3.0, backoff_base_s=0.05),
            seed=1,
        )

        async def collect() -> list:
            out = []
            try:
                async for batch in feed.batches():
                    out.append(batch)
                    if len(out) == 5:
                        return out
            finally:
                await feed.close()
            return out

        batches = asyncio.run(asyncio.wait_for(collect(), 20.0))
        assert ws.connections >= 2 and all(p == "/ws/v5/business" for p in ws.paths)
    assert {(a["channel"], a["instId"]) for a in ws.subscriptions} == {
        ("candle1m", "BTC-USDT"),
        ("candle1m", "ETH-USDT"),
    }
    assert [b.ts for b in batches] == [r[0] for r in script["BTC-USDT"][:5]]  # the 6th is still forming
    for b in batches:
        i = (b.ts - t0) // 60_000
        assert b.candles["close"].to_list() == pytest.approx([script["BTC-USDT"][i][4], script["ETH-USDT"][i][4]])


def test_a_session_on_two_venues_sends_each_instruments_orders_to_its_venue(trained_world: World, tmp_path) -> None:
    """A live session trades ``BTC-BUSD`` on Binance (its exchange) and ``okx:BTC-USDT`` on OKX,
    both replayed from the lake (the OKX series holds the same real candles, so the champion
    enters both at the same bar). Each entry goes out once, to its own venue, in that venue's
    wire format; its fill is stored as made there, and the positions are the instruments'."""
    lake = CandleLake(tmp_path / "lake")
    candles = CandleLake(trained_world.settings.lake_dir).read(SeriesKey("binance", SYMBOL, "1m"))
    lake.write(SeriesKey("binance", SYMBOL, "1m"), candles)
    lake.write(SeriesKey("okx", "BTC-USDT", "1m"), candles)
    binance, okx = venues()
    with binance, okx:
        store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
        registry = ModelRegistry(trained_world.settings.registry_dir)
        config = SessionConfig(
            name="two-venues", exchange="binance", symbols=(SYMBOL, OKX_KEY), timeframe="1m", mode="live",
            start=START, allow_in_sample=True, fraction=0.4,
        )  # fmt: skip
        session = open_session(store, registry, config)
        engine = LiveEngine(
            store=store,
            session=session,
            broker=router_on(binance, okx),
            bus=make_bus(None),
            slot=ModelSlot.for_session(registry, session),
            backtest=backtest_config(session),
            config=EngineConfig(venue_check_every_bars=1, publish=False),
        )
        feed = VenueReplay(lake, exchange="binance", symbols=list(config.symbols), timeframe="1m", start=START)

        def entered(venue: str) -> bool:
            return any(o.venue == venue and o.intent == "enter_long" for o in store.orders(session.id))

        async def scenario() -> int:
            bars, until = 0, 1000
            try:
                await engine.reconcile()
                async for batch in feed.batches():
                    if engine.window.is_empty():
                        engine.window = feed.history(before_ts=batch.ts, bars=400)
                    await engine.on_batch(batch)
                    bars += 1
                    if entered("binance") and entered("okx"):
                        until = min(until, bars + 1)  # one more bar: its venue check compares the balances
                    if bars >= until:
                        break
            finally:
                await engine.broker.close()
            return bars

        bars = asyncio.run(scenario())
        assert bars < 1000, "no entry on both venues within 1000 bars"
        orders = {o.symbol: o for o in store.orders(session.id) if o.intent == "enter_long"}
        assert set(orders) == {SYMBOL, OKX_KEY}
        b_order, o_order = orders[SYMBOL], orders[OKX_KEY]
        assert (b_order.venue, o_order.venue) == ("binance", "okx") and b_order.decided_ts == o_order.decided_ts
        assert (b_order.status, o_order.status) == ("filled", "filled")
        assert binance.creates[b_order.client_order_id] == 1 and b_order.client_order_id not in okx.creates
        assert okx.creates[venue_client_id("okx", o_order.client_order_id)] == 1
        assert o_order.client_order_id not in binance.creates
        [okx_sent] = okx.calls("/api/v5/trade/batch-orders")
        assert Decimal(okx_sent["sz"]) == Decimal(str(o_order.quote_amount)).quantize(Decimal("0.1"), "ROUND_DOWN")
        fills = {f.symbol: f for f in store.fills(session.id)}
        assert (fills[SYMBOL].venue, fills[SYMBOL].price) == ("binance", BINANCE_PRICE)
        assert (fills[OKX_KEY].venue, fills[OKX_KEY].price) == ("okx", OKX_PRICE)
        assert fills[OKX_KEY].fee == pytest.approx(fills[OKX_KEY].quantity * OKX_PRICE * 0.0015)
        positions = {(p.venue, p.symbol): p.quantity for p in store.position_rows(session.id)}
        assert positions == {
            ("binance", SYMBOL): pytest.approx(fills[SYMBOL].quantity),
            ("okx", "BTC-USDT"): pytest.approx(fills[OKX_KEY].quantity),
        }
        assert engine.positions == {SYMBOL: positions[("binance", SYMBOL)], OKX_KEY: positions[("okx", "BTC-USDT")]}
        assert engine.instrument(OKX_KEY) == InstrumentId("okx", "BTC-USDT")
        events = [a.event for a in store.audit_log(session.id)]
        assert "venue_baseline" in events  # the venues' balances were compared, summed over both
        assert "balance_drift" not in events and "venue_check_failed" not in events
        store.close()


def test_a_venue_replay_names_each_instrument_by_its_session_key(trained_world: World, tmp_path) -> None:
    lake = CandleLake(tmp_path / "lake")
    candles = CandleLake(trained_world.settings.lake_dir).read(SeriesKey("binance", SYMBOL, "1m")).head(5)
    lake.write(SeriesKey("binance", SYMBOL, "1m"), candles)
    lake.write(SeriesKey("okx", "BTC-USDT", "1m"), candles.tail(3))
    feed = VenueReplay(lake, exchange="binance", symbols=[SYMBOL, OKX_KEY], timeframe="1m")

    async def batches() -> list:
        return [b async for b in feed.batches()]

    got = asyncio.run(batches())
    assert [b.candles["symbol"].to_list() for b in got] == [[SYMBOL]] * 2 + [[SYMBOL, OKX_KEY]] * 3
    assert [b.ts for b in got] == candles["ts"].to_list()
    history = feed.history(before_ts=int(candles["ts"][-1]), bars=10)
    assert history.group_by("symbol").len().sort("symbol").rows() == [(SYMBOL, 4), (OKX_KEY, 2)]
    assert pl.Series(feed.frame["symbol"]).unique().sort().to_list() == [SYMBOL, OKX_KEY]
