"""A live session on two venues run as the runner runs it (``live.runner.run_session``): ``BTC-BUSD``
on Binance (the session's exchange) and ``okx:BTC-BUSD`` on OKX (one quote asset: a live session
keeps one cash figure, ``live.session_brokers``), each fed by its own ccxt.pro
WebSocket feed (``tests/ws_exchange_server.py``, ``tests/okx_ws_server.py``), each traded through
its own ccxt broker with its own keys (``TRADELOOP_EXCHANGE_*`` for Binance,
``TRADELOOP_VENUES__OKX__*`` for OKX): the loopback venues check every signature, so a key sent
to the wrong venue is refused there.

Both venues stream the same real candles (the bundled Binance 1m sample, moved by whole weeks to
just after the champion's training end, as live bars come after it), so the champion enters both
instruments at one bar: bar 154 after ``START`` (a paper replay of the sample decides it there).
The WebSocket scripts start four bars before it.
"""

from __future__ import annotations

import asyncio
import shutil

import polars as pl
import pytest
from cryptography.fernet import Fernet
from exchange_server import BinanceLoopback
from okx_server import OkxLoopback
from okx_ws_server import OkxWsLoopback
from pydantic import SecretStr
from ws_exchange_server import BinanceWsLoopback

from live.brokers.ccxt_orders import venue_client_id
from live.engine import EngineConfig, LiveEngine
from live.locks import EngineLocks
from live.runner import SessionConfig, build_engine, bus_feed, run_session
from tests.live.conftest import World, trained_world  # noqa: F401  (shared fixture)
from tests.live.venue_session import START, SYMBOL
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.errors import ConfigError, SessionStateError
from tradeloop.ops import EquityPoint, OpsStore
from tradeloop.ops.models import utcnow
from tradeloop.registry import ModelRegistry
from tradeloop.settings import Settings

OKX_SYMBOL = "BTC-BUSD"  # listed on the OKX loopback as its BTC-USDT is, quoted in BUSD
OKX_KEY = f"okx:{OKX_SYMBOL}"
PAIR = SYMBOL.replace("-", "")  # BTCBUSD on Binance
BINANCE_PRICE, OKX_PRICE = 17_000.0, 17_010.0
STEP, WEEK = 60_000, 7 * 86_400_000
TUNING = EngineConfig(venue_check_every_bars=1, publish=False)


class Crash(Exception):
    """The engine process dying after the creates went out, before their answers were stored."""


def timeline(world: World) -> tuple[pl.DataFrame, int, int]:
    """The sample's candles moved by whole weeks past the champion's training end; the first bar
    the WebSockets stream (the lake holds those before it) and the bar the champion enters at."""
    _, champion = ModelRegistry(world.settings.registry_dir).load("sma_cross")
    shift = (champion.trained_until - START) // WEEK * WEEK + WEEK
    frame = CandleLake(world.settings.lake_dir).read(SeriesKey("binance", SYMBOL, "1m")).sort("ts")
    entry = START + shift + 154 * STEP
    return frame.with_columns(pl.col("ts") + shift), entry - 4 * STEP, entry


def script(frame: pl.DataFrame, first: int, bars: int) -> list[list]:
    """``bars`` candles from ``first`` as WebSocket rows (the last one still forming)."""
    part = frame.filter(pl.col("ts") >= first).head(bars)
    return [list(r) for r in part.select("ts", "open", "high", "low", "close", "volume").iter_rows()]


def data_root(world: World, root, frame: pl.DataFrame, first: int) -> None:
    """The champion, and the warm-up before ``first`` in the lake for both venues' series."""
    shutil.copytree(world.settings.registry_dir, root / "registry")
    lake = CandleLake(root / "lake")
    warm = frame.filter(pl.col("ts") < first)
    lake.write(SeriesKey("binance", SYMBOL, "1m"), warm)
    lake.write(SeriesKey("okx", OKX_SYMBOL, "1m"), warm)


def rest_venues(frame: pl.DataFrame) -> tuple[BinanceLoopback, OkxLoopback]:
    """REST venues: orders, accounts, and the candles a gap's backfill would ask for."""
    binance = BinanceLoopback(candles={(PAIR, "1m"): frame}, prices={PAIR: BINANCE_PRICE}, balances={"BUSD": 20_000.0})
    okx = OkxLoopback(candles={(OKX_SYMBOL, "1m"): frame}, prices={OKX_SYMBOL: OKX_PRICE}, balances={"BUSD": 20_000.0})
    spot = next(i for i in okx.instruments if i["instId"] == "BTC-USDT")
    okx.instruments = [*okx.instruments, spot | {"instId": OKX_SYMBOL, "quoteCcy": "BUSD"}]
    return binance, okx


def two_venue_settings(root, binance, okx, binance_ws=None, okx_ws=None, *, okx_keys: bool = True) -> Settings:
    okx_entry: dict[str, str] = {"api_url": okx.url}
    if okx_ws is not None:
        okx_entry["ws_url"] = okx_ws.url
    if okx_keys:
        okx_entry |= {"api_key": okx.api_key, "secret": okx.secret, "password": okx.passphrase}
    return Settings(
        TRADELOOP_DATA_DIR=str(root),
        DATABASE_URL=f"sqlite:///{root / 'ops.db'}",
        TRADELOOP_EXCHANGE_API_KEY=binance.api_key,
        TRADELOOP_EXCHANGE_SECRET=binance.secret,
        TRADELOOP_EXCHANGE_API_URL=binance.url,
        TRADELOOP_EXCHANGE_WS_URL=binance_ws.url if binance_ws is not None else "ws://127.0.0.1:9/ws",
        TRADELOOP_VENUES={"okx": okx_entry},
        TRADELOOP_ALLOW_INSECURE_LOOPBACK="true",
    )


def two_venue_config(name: str = "two-live", *, feed: str = "ccxt") -> SessionConfig:
    return SessionConfig(
        name=name, exchange="binance", symbols=(SYMBOL, OKX_KEY), timeframe="1m", mode="live", feed=feed,
        allow_in_sample=True, fraction=0.4,
    )  # fmt: skip


def test_a_live_session_on_two_venues_trades_each_on_its_venue_and_resumes_both(
    trained_world: World, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session trades the WebSocket bars; at the entry bar both creates go out, each to its
    own venue with that venue's keys, and the process dies before their answers are stored. The
    restart recovers each order from its own venue (never a second create), stores the fills
    under the session's keys, reconciles both venues' accounts bar after bar and trades on."""
    frame, streamed, entry = timeline(trained_world)
    root = tmp_path / "data"
    data_root(trained_world, root, frame, streamed)
    binance, okx = rest_venues(frame)
    submitted: list[str] = []
    submit = LiveEngine._submit

    async def submit_then_die(self: LiveEngine, order):  # the creates go out; the answers are lost
        state = await submit(self, order)
        submitted.append(order.symbol)
        if len(submitted) == 2:
            raise Crash("killed after both creates")
        return state

    monkeypatch.setattr(LiveEngine, "_submit", submit_then_die)
    first = script(frame, streamed, 6)  # the bars from `streamed` to `entry` close; the 6th is forming
    with binance, okx, BinanceWsLoopback({PAIR: first}) as b_ws, OkxWsLoopback({OKX_SYMBOL: first}) as o_ws:
        settings = two_venue_settings(root, binance, okx, b_ws, o_ws)
        with pytest.raises(Crash):
            asyncio.run(asyncio.wait_for(run_session(settings, two_venue_config(), engine_config=TUNING), 30))
        monkeypatch.undo()
        store = OpsStore.open(settings.effective_database_url)
        session = store.session("two-live")
        assert session.last_bar_ts == entry  # the entry bar committed before its creates went out
        orders = {o.symbol: o for o in store.orders(session.id)}
        assert set(orders) == {SYMBOL, OKX_KEY} and sorted(submitted) == sorted(orders)
        b_order, o_order = orders[SYMBOL], orders[OKX_KEY]
        assert (b_order.venue, o_order.venue) == ("binance", "okx") and b_order.decided_ts == entry
        assert b_order.status not in ("filled",) and o_order.status not in ("filled",)  # answers lost
        assert store.fills(session.id) == []
        # each create reached its own venue, signed with that venue's keys, once
        assert binance.creates == {b_order.client_order_id: 1}
        assert okx.creates == {venue_client_id("okx", o_order.client_order_id): 1}
        assert b_ws.subscriptions == ["btcbusd@kline_1m"]
        assert {(a["channel"], a["instId"]) for a in o_ws.subscriptions} == {("candle1m", OKX_SYMBOL)}
        reads_before = len(okx.requests), len(binance.requests)

        later = script(frame, entry + STEP, 6)  # the forming bar again, then 4 more close
        with BinanceWsLoopback({PAIR: later}) as b_ws2, OkxWsLoopback({OKX_SYMBOL: later}) as o_ws2:
            settings = two_venue_settings(root, binance, okx, b_ws2, o_ws2)
            engine = asyncio.run(
                asyncio.wait_for(run_session(settings, two_venue_config(), max_bars=5, engine_config=TUNING), 90)
            )
    events = store.audit_log(session.id)
    reconciled = {e.detail["client_order_id"]: e.detail["status"] for e in events if e.event == "order_reconciled"}
    assert reconciled == {b_order.client_order_id: "filled", o_order.client_order_id: "filled"}
    assert binance.creates == {b_order.client_order_id: 1}  # recovered by asking, never sent again
    assert okx.creates == {venue_client_id("okx", o_order.client_order_id): 1}
    fills = {f.symbol: f for f in store.fills(session.id)}
    assert set(fills) == {SYMBOL, OKX_KEY}
    assert (fills[SYMBOL].venue, fills[SYMBOL].price) == ("binance", BINANCE_PRICE)
    assert (fills[OKX_KEY].venue, fills[OKX_KEY].price) == ("okx", OKX_PRICE)
    assert fills[OKX_KEY].fee == pytest.approx(fills[OKX_KEY].quantity * OKX_PRICE * 0.0015)
    positions = {(p.venue, p.symbol): p.quantity for p in store.position_rows(session.id)}
    assert positions == {
        ("binance", SYMBOL): pytest.approx(fills[SYMBOL].quantity),
        ("okx", OKX_SYMBOL): pytest.approx(fills[OKX_KEY].quantity),
    }
    assert engine.positions == {SYMBOL: positions[("binance", SYMBOL)], OKX_KEY: positions[("okx", OKX_SYMBOL)]}
    # every bar decided once across the restart, the last one 5 bars after the entry
    marks = store.frame(EquityPoint, session.id)["ts"].sort().to_list()
    assert marks == [streamed + i * STEP for i in range(10)]
    assert store.session("two-live").last_bar_ts == entry + 5 * STEP
    # both venues' accounts were read at each bar's venue check after the restart
    okx_reads = [r for r in okx.requests[reads_before[0] :] if "/api/v5/account/balance" in r]
    binance_reads = [r for r in binance.requests[reads_before[1] :] if r.startswith("/api/v3/account")]
    assert len(okx_reads) >= 3 and len(binance_reads) >= 3
    names = [e.event for e in events]
    assert "venue_baseline" in names and "balance_drift" not in names and "venue_check_failed" not in names
    store.close()


def test_a_venue_without_keys_is_refused_before_any_data_or_order(trained_world: World, tmp_path) -> None:
    frame, first, _ = timeline(trained_world)
    root = tmp_path / "data"
    data_root(trained_world, root, frame, first)
    binance, okx = rest_venues(frame)
    with binance, okx:
        settings = two_venue_settings(root, binance, okx, okx_keys=False)
        with pytest.raises(ConfigError) as refused:
            asyncio.run(run_session(settings, two_venue_config()))
        assert binance.requests == [] and okx.requests == []  # nothing asked of either venue
    message = str(refused.value)
    assert "on okx and needs its API key and secret" in message
    assert "TRADELOOP_VENUES__OKX__API_KEY and TRADELOOP_VENUES__OKX__SECRET" in message
    assert "TRADELOOP_VENUES__OKX__PASSWORD" in message and binance.secret not in message
    store = OpsStore.open(f"sqlite:///{root / 'ops.db'}")
    assert store.sessions() == []  # no session row written
    store.close()


def test_each_venue_account_is_locked_so_a_second_engine_on_the_okx_account_is_refused(
    trained_world: World, tmp_path
) -> None:
    """The two-venue engine holds its session's lock and one lock per venue account; a second
    session trading OKX alone with the same OKX key is refused naming that account, while one on
    another OKX key is not."""
    frame, first, _ = timeline(trained_world)
    root = tmp_path / "data"
    data_root(trained_world, root, frame, first)
    binance, okx = rest_venues(frame)
    with binance, okx:  # the venues' URLs; nothing is sent to them here
        settings = two_venue_settings(root, binance, okx)
        store = OpsStore.open(settings.effective_database_url)
        locks = EngineLocks(store)
        engine = build_engine(settings, two_venue_config(), store=store, locks=locks)
        assert sorted(k.split(":")[1] for k in locks.keys) == ["binance", "okx"]
        assert "the okx account of TRADELOOP_VENUES__OKX__API_KEY" in locks.keys.values()

        def okx_alone(api_key: str) -> Settings:
            return Settings(
                TRADELOOP_DATA_DIR=str(root),
                DATABASE_URL=settings.effective_database_url,
                TRADELOOP_EXCHANGE="okx",  # the host's keys are its exchange's only
                TRADELOOP_EXCHANGE_API_KEY=api_key,
                TRADELOOP_EXCHANGE_SECRET=okx.secret,
                TRADELOOP_EXCHANGE_PASSWORD=okx.passphrase,
                TRADELOOP_EXCHANGE_API_URL=okx.url,
                TRADELOOP_ALLOW_INSECURE_LOOPBACK="true",
            )

        alone = SessionConfig(
            name="okx-alone", exchange="okx", symbols=("BTC-USDT",), timeframe="1m", mode="live", allow_in_sample=True
        )
        other = EngineLocks(OpsStore.open(settings.effective_database_url))
        with pytest.raises(SessionStateError, match="the okx account of TRADELOOP_EXCHANGE_API_KEY is already traded"):
            build_engine(okx_alone(okx.api_key), alone, locks=other)
        assert not other.keys
        another = build_engine(okx_alone("another-okx-key"), alone, locks=other)  # another account: its own lock
        assert [k.split(":")[1] for k in other.keys] == ["okx"]
        other.release()
        locks.release()

        async def close() -> None:
            await engine.broker.close()
            await another.broker.close()

        asyncio.run(close())
        store.close()


def test_the_bus_feed_reads_each_venues_stream_of_a_session_on_several_venues(tmp_path) -> None:
    from live.marketdata.bus_feed import BusFeed
    from live.venue_feed import VenueBusFeed

    settings = Settings(TRADELOOP_DATA_DIR=str(tmp_path), REDIS_URL="redis://127.0.0.1:6379/0")
    feed = bus_feed(settings, two_venue_config(feed="bus"))
    assert isinstance(feed, VenueBusFeed) and feed.name == "bus"
    assert {v: (f.stream, f.symbols) for v, f in feed.feeds.items() if isinstance(f, BusFeed)} == {
        "binance": ("market:binance:1m", [SYMBOL]),
        "okx": ("market:okx:1m", [OKX_SYMBOL]),
    }
    asyncio.run(feed.close())


def test_a_live_session_on_several_venues_with_a_stored_credential_is_refused(trained_world: World, tmp_path) -> None:
    """A stored credential holds one venue's keys: a session made with one (``POST /sessions``)
    whose symbols span venues is refused at start, naming the fix, before anything is decrypted."""
    from tradeloop.identity import IdentityStore, Role
    from tradeloop.identity.credentials import CredentialStore, vault_of
    from tradeloop.identity.vault import ExchangeSecret
    from tradeloop.ops.session_spec import create_session

    frame, first, _ = timeline(trained_world)
    root = tmp_path / "data"
    data_root(trained_world, root, frame, first)
    binance, okx = rest_venues(frame)
    with binance, okx:
        settings = two_venue_settings(root, binance, okx).model_copy(
            update={"encryption_key": SecretStr(Fernet.generate_key().decode())}
        )
        store = OpsStore.open(settings.effective_database_url)
        ana = IdentityStore(store).create_user(username="ana", password="correct horse battery", role=Role.TRADER)
        secret = ExchangeSecret(api_key=binance.api_key, secret=binance.secret)
        info = CredentialStore(store).put(
            user_id=ana.id, name="main", exchange="binance", secret=secret, vault=vault_of(settings), now=utcnow()
        )
        config = two_venue_config("ana-two")
        create_session(store, ModelRegistry(settings.registry_dir), config, owner_id=ana.id, credential_id=info.id)
        with pytest.raises(ConfigError) as refused:
            asyncio.run(run_session(settings, config))
        assert binance.requests == [] and okx.requests == []
        assert store.session("ana-two").last_bar_ts is None
        store.close()
    message = str(refused.value)
    assert "session 'ana-two' trades live on ['binance', 'okx'] but names a stored credential" in message
    assert "TRADELOOP_VENUES__OKX__API_KEY and TRADELOOP_VENUES__OKX__SECRET for okx" in message
