"""Which venue a live session's broker, feed, keys and account locks are on (``live.session_brokers``,
``live.session_feeds``, ``live.venue_keys``): a session whose symbols are all on another venue
trades there only; a blank key is no key and locks nothing; the host's ``TRADELOOP_EXCHANGE_*``
keys go to ``TRADELOOP_EXCHANGE`` and no other venue. Nothing here reaches a venue."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from live.brokers.base import OrderRequest, OrderState
from live.brokers.ccxt_broker import CcxtBroker
from live.brokers.perps import PerpsBroker
from live.brokers.router import BrokerRouter
from live.locks import account_lock_key
from live.runner import SessionConfig
from live.session_brokers import check_live_venues, live_accesses, session_broker
from live.session_feeds import ccxt_feed, replay_feed
from live.venue_feed import VenueCcxtFeed, VenueReplay
from live.venue_keys import venue_access
from tradeloop.backtest import BacktestConfig
from tradeloop.errors import ConfigError
from tradeloop.settings import Settings
from tradeloop.trading import OrderStatus, OrderType

BINANCE = {"TRADELOOP_EXCHANGE_API_KEY": "binance-key-1", "TRADELOOP_EXCHANGE_SECRET": "binance-secret-1"}
OKX = {"okx": {"api_key": "okx-key-1", "secret": "okx-secret-1", "password": "okx-pass"}}


def settings_of(tmp_path, **env: object) -> Settings:
    return Settings(_env_file=None, TRADELOOP_DATA_DIR=str(tmp_path), **env)  # type: ignore[arg-type]


@pytest.mark.parametrize("exchange", ["binance", "binanceusdm"])
def test_symbols_all_on_another_venue_trade_there_never_on_the_session_exchange(tmp_path, exchange: str) -> None:
    """``--exchange binance --symbol okx:BTC-USDT``: the broker, the keys, the account lock and
    the feed are OKX's; Binance's keys are neither sent nor required (on binanceusdm the spot OKX
    symbol gets OKX's spot broker, not the perpetuals broker)."""
    settings = settings_of(tmp_path, **BINANCE, TRADELOOP_VENUES=OKX)
    session = SimpleNamespace(mode="live", exchange=exchange, symbols=["okx:BTC-USDT"], name="s")
    broker = session_broker(settings, session, backtest=BacktestConfig())  # type: ignore[arg-type]
    try:
        assert isinstance(broker, BrokerRouter) and list(broker.brokers) == ["okx"]
        okx = broker.brokers["okx"]
        assert type(okx) is CcxtBroker and not isinstance(okx, PerpsBroker)
        assert okx.exchange.apiKey == "okx-key-1" and okx.exchange.id == "okx"
    finally:
        asyncio.run(broker.close())
    accesses = live_accesses(settings_of(tmp_path, TRADELOOP_VENUES=OKX), exchange, session.symbols)  # no host keys
    assert list(accesses) == ["okx"] and accesses["okx"].api_key == "okx-key-1"
    config = SessionConfig(name="s", exchange=exchange, symbols=("okx:BTC-USDT",), timeframe="1m", feed="ccxt")
    feed = ccxt_feed(settings, config)
    try:
        assert isinstance(feed, VenueCcxtFeed) and list(feed.feeds) == ["okx"]
    finally:
        asyncio.run(feed.close())
    replay = replay_feed(settings, config.model_copy(update={"feed": "replay"}))
    assert isinstance(replay, VenueReplay) and [(k.exchange, k.symbol) for k in replay.keys] == [("okx", "BTC-USDT")]


def test_a_live_session_over_venues_of_different_quote_assets_is_refused() -> None:
    """One cash figure in one quote asset (``live.reconcile``): BUSD on Binance and USDT on OKX are refused."""
    with pytest.raises(ConfigError, match=r"one quote asset.*\['BUSD', 'USDT'\]"):
        check_live_venues("live", "binance", ["BTC-BUSD", "okx:BTC-USDT"])
    check_live_venues("live", "binance", ["BTC-USDT", "okx:ETH-USDT"])  # one quote asset: fine
    check_live_venues("paper", "binance", ["BTC-BUSD", "okx:BTC-USDT"])  # paper replays any


def test_blank_venue_keys_are_unset_and_never_hide_the_host_keys(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    for venue in ("OKX", "BINANCE"):  # empty and blank
        monkeypatch.setenv(f"TRADELOOP_VENUES__{venue}__API_KEY", "")
        monkeypatch.setenv(f"TRADELOOP_VENUES__{venue}__SECRET", " ")
    for name, value in BINANCE.items():
        monkeypatch.setenv(name, value)
    settings = settings_of(tmp_path)
    assert settings.venues["okx"].api_key is None and settings.venues["okx"].secret is None
    binance = venue_access(settings, "binance", own="binance")  # the blank entry hides nothing
    assert binance.api_key == "binance-key-1" and binance.source == "TRADELOOP_EXCHANGE_API_KEY"
    with pytest.raises(ConfigError, match="TRADELOOP_VENUES__OKX__API_KEY and TRADELOOP_VENUES__OKX__SECRET"):
        venue_access(settings, "okx", own="binance")
    monkeypatch.setenv("TRADELOOP_EXCHANGE_API_KEY", "")
    with pytest.raises(ConfigError, match="TRADELOOP_EXCHANGE_API_KEY and TRADELOOP_EXCHANGE_SECRET"):
        venue_access(settings_of(tmp_path), "binance", own="binance")


def test_a_live_account_lock_refuses_a_blank_key() -> None:
    for blank in (None, "", "   "):
        with pytest.raises(ConfigError, match="blank API key"):
            account_lock_key(mode="live", venue="okx", api_key=blank)
    assert account_lock_key(mode="paper", venue="okx", api_key=None) is None


def test_host_keys_go_only_to_the_host_exchange(tmp_path) -> None:
    """``--exchange kraken`` on a Binance host (``TRADELOOP_EXCHANGE=binance``) never signs with the
    Binance keys or uses their URL: it needs TRADELOOP_VENUES__KRAKEN__*."""
    urls = {"TRADELOOP_EXCHANGE_API_URL": "https://binance.example", "TRADELOOP_EXCHANGE_WS_URL": "wss://b.example"}
    settings = settings_of(tmp_path, **BINANCE, **urls)
    with pytest.raises(ConfigError) as refused:
        venue_access(settings, "kraken", own="kraken")
    message = str(refused.value)
    assert "TRADELOOP_VENUES__KRAKEN__API_KEY and TRADELOOP_VENUES__KRAKEN__SECRET" in message
    assert "TRADELOOP_EXCHANGE=binance" in message and "binance-secret-1" not in message
    kraken = {"kraken": {"api_key": "kraken-key-1", "secret": "kraken-secret-1"}}
    access = venue_access(settings_of(tmp_path, **BINANCE, **urls, TRADELOOP_VENUES=kraken), "kraken", own="kraken")
    assert access.api_key == "kraken-key-1" and (access.api_url, access.ws_url) == (None, None)
    host = venue_access(settings_of(tmp_path, **BINANCE, **urls, TRADELOOP_EXCHANGE="kraken"), "kraken", own="kraken")
    assert host.api_key == "binance-key-1" and host.api_url == "https://binance.example"  # kraken is the host's


class Venue:
    """One venue's broker without ``replace``: its cancel may raise; it records what went out."""

    def __init__(self, venue: str, *, cancel_raises: bool = False):
        self.venue, self.cancel_raises, self.sent = venue, cancel_raises, []

    async def cancel(self, order):
        self.sent.append(("cancel", order.client_order_id))
        if self.cancel_raises:
            raise TimeoutError("read timed out")
        return OrderState(order.client_order_id, OrderStatus.CANCELED.value)

    async def submit(self, order):
        self.sent.append(("submit", order.client_order_id))
        return OrderState(order.client_order_id, OrderStatus.ACKNOWLEDGED.value)

    async def query(self, order):
        return OrderState(order.client_order_id, OrderStatus.ACKNOWLEDGED.value, venue_order_id="v-1")


def test_a_replace_across_venues_or_whose_cancel_raises_sends_nothing_more_and_never_raises() -> None:
    binance, okx = Venue("binance"), Venue("okx", cancel_raises=True)
    router = BrokerRouter({"binance": binance, "okx": okx}, default_venue="binance")  # type: ignore[dict-item]
    stop = OrderRequest("old-1", "BTC-USDT", "sell", quantity=1.0, order_type=OrderType.STOP, trigger_price=9.0)
    moved = OrderRequest("new-1", "okx:BTC-USDT", "sell", quantity=1.0, order_type=OrderType.STOP, trigger_price=9.5)
    old, new = asyncio.run(router.replace(stop, moved))
    assert (old.status, old.venue_order_id) == ("acknowledged", "v-1")  # as its venue shows it, untouched
    assert new.status == "rejected" and "different venues" in new.reason and "nothing went out" in new.reason
    assert binance.sent == [] and okx.sent == []
    nowhere = OrderRequest("new-2", "kraken:BTC-USDT", "sell", quantity=1.0)
    old, new = asyncio.run(router.replace(stop, nowhere))
    assert new.status == "rejected" and "no broker for venue 'kraken'" in new.reason and binance.sent == []
    on_okx = OrderRequest("old-2", "okx:BTC-USDT", "sell", quantity=1.0, order_type=OrderType.STOP, trigger_price=9.0)
    old, new = asyncio.run(router.replace(on_okx, moved))  # the cancel raises: unknown, and no create
    assert old.status == "unknown" and "never resent" in old.reason
    assert new.status == "rejected" and okx.sent == [("cancel", "old-2")]
