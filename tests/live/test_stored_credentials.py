"""A live session made for a user with one of their stored exchange credentials (what
``POST /sessions`` with ``mode=live`` writes) trades with that account: the engine the runner
builds decrypts the credential with ``TRADELOOP_ENCRYPTION_KEY`` and signs its orders with it,
on an engine host that has no exchange keys of its own. The loopback Binance checks the
``X-MBX-APIKEY`` header and the HMAC signature of every signed request, as Binance does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from exchange_server import BinanceLoopback

from live.runner import SessionConfig, build_engine, run_session
from tests.live.conftest import World, trained_world  # noqa: F401  (shared fixture)
from tests.live.venue_session import START, SYMBOL, run_bars
from tradeloop.errors import DataError, NotConfiguredError
from tradeloop.identity import IdentityStore, Role
from tradeloop.identity.credentials import CredentialStore, vault_of
from tradeloop.identity.vault import ExchangeSecret
from tradeloop.ops import OpsStore
from tradeloop.ops.session_spec import SessionSpec, create_session
from tradeloop.registry import ModelRegistry
from tradeloop.settings import Settings

PAIR = SYMBOL.replace("-", "")
NAME = "ana-live"


def settings_for(world: World, server: BinanceLoopback, database_url: str, **extra: str) -> Settings:
    """An engine host with the venue's URL and no TRADELOOP_EXCHANGE_API_KEY of its own."""
    return Settings(
        TRADELOOP_DATA_DIR=str(world.root),
        DATABASE_URL=database_url,
        TRADELOOP_EXCHANGE_API_URL=server.url,
        TRADELOOP_ALLOW_INSECURE_LOOPBACK="true",
        **extra,
    )


def ana_session(settings: Settings, secret: ExchangeSecret) -> int:
    """Ana (a trader) stores her Binance credential; a live session of hers names it. The credential's id."""
    store = OpsStore.open(settings.effective_database_url)
    ana = IdentityStore(store).create_user(username="ana", password="correct horse battery", role=Role.TRADER)
    info = CredentialStore(store).put(
        user_id=ana.id, name="main", exchange="binance", secret=secret, vault=vault_of(settings), now=datetime.now(UTC)
    )
    spec = SessionSpec(
        name=NAME, exchange="binance", symbols=(SYMBOL,), timeframe="1m", mode="live", start=START, allow_in_sample=True
    )
    create_session(store, ModelRegistry(settings.registry_dir), spec, owner_id=ana.id, credential_id=info.id)
    store.close()
    return info.id


def resume_config() -> SessionConfig:
    """``tradeloop live run --name ana-live ...`` as the API's run_command gives it (no --mode: the row has it)."""
    return SessionConfig(name=NAME, exchange="binance", symbols=(SYMBOL,), timeframe="1m", start=START)


def test_the_engine_trades_with_the_sessions_stored_credential_not_the_hosts_keys(
    trained_world: World, tmp_path
) -> None:
    key = Fernet.generate_key().decode()
    account = {"api_key": "ana-binance-key", "secret": "ana-binance-secret"}
    with BinanceLoopback(candles={}, prices={PAIR: 17_150.0}, balances={"BUSD": 10_000.0}, **account) as server:
        settings = settings_for(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}", TRADELOOP_ENCRYPTION_KEY=key)
        assert settings.exchange_api_key is None
        ana_session(settings, ExchangeSecret(**account))
        engine = build_engine(settings, resume_config())
        assert engine.session.mode == "live"

        async def scenario() -> None:
            try:
                await engine.reconcile()
                await run_bars(engine, settings, NAME, until=lambda e: bool(server.calls("POST", "/api/v3/order")))
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        [sent] = server.calls("POST", "/api/v3/order")
        assert sent["side"] == "BUY" and sent["symbol"] == PAIR
        [order] = [o for o in engine.store.orders(engine.session.id) if o.intent == "enter_long"]
        assert order.status == "filled"  # the venue took it: the key and the signature were Ana's
        assert server.orders[order.client_order_id]["status"] == "FILLED"


def test_a_wrong_stored_secret_is_refused_by_the_venue_and_no_order_is_assumed_placed(
    trained_world: World, tmp_path
) -> None:
    """The credential holds the right key with a wrong secret: Binance refuses the signature
    (401, a definite refusal); the engine records the entry as rejected, its cash untouched."""
    key = Fernet.generate_key().decode()
    with BinanceLoopback(candles={}, prices={PAIR: 17_150.0}, balances={"BUSD": 10_000.0}, api_key="k") as server:
        settings = settings_for(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}", TRADELOOP_ENCRYPTION_KEY=key)
        ana_session(settings, ExchangeSecret(api_key="k", secret="not-the-secret"))
        engine = build_engine(settings, resume_config())

        async def scenario() -> None:
            try:
                await run_bars(engine, settings, NAME, until=lambda e: bool(e.store.orders(e.session.id)))
                await run_bars(engine, settings, NAME, until=lambda e: True, limit=1)
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        assert len(server.calls("POST", "/api/v3/order")) == 1  # asked once, never blindly re-sent
        assert not server.orders  # refused: nothing reached the book
        assert [(o.intent, o.status) for o in engine.store.orders(engine.session.id)] == [("enter_long", "rejected")]
        assert engine.cash == pytest.approx(10_000.0) and not engine.positions.get(SYMBOL)


def test_without_the_encryption_key_the_engine_refuses_to_start_and_names_the_variable(
    trained_world: World, tmp_path
) -> None:
    with BinanceLoopback(candles={}, prices={PAIR: 17_150.0}) as server:
        database = f"sqlite:///{tmp_path / 'ops.db'}"
        keyed = settings_for(trained_world, server, database, TRADELOOP_ENCRYPTION_KEY=Fernet.generate_key().decode())
        ana_session(keyed, ExchangeSecret(api_key="k", secret="s"))
        with pytest.raises(NotConfiguredError, match="TRADELOOP_ENCRYPTION_KEY"):
            build_engine(settings_for(trained_world, server, database), resume_config())
        other = settings_for(trained_world, server, database, TRADELOOP_ENCRYPTION_KEY=Fernet.generate_key().decode())
        with pytest.raises(Exception, match="cannot be decrypted with TRADELOOP_ENCRYPTION_KEY's keys"):
            build_engine(other, resume_config())


def test_a_resumed_live_sessions_preflight_checks_its_stored_credential_and_mode(
    trained_world: World, tmp_path
) -> None:
    """``tradeloop live run --name ana-live`` resumes with no --mode (the CLI's default, paper)
    and with --mode live on a host without keys: either way the preflight, before the data
    check (exit 2 before 3), checks the row's mode and stored credential, not the CLI's."""
    key = Fernet.generate_key().decode()
    with BinanceLoopback(candles={}, prices={PAIR: 17_150.0}) as server:
        database = f"sqlite:///{tmp_path / 'ops.db'}"
        ana_session(
            settings_for(trained_world, server, database, TRADELOOP_ENCRYPTION_KEY=key),
            ExchangeSecret(api_key="k", secret="s"),
        )
        empty = tmp_path / "elsewhere"  # an engine host whose lake lacks the series: the data check would fail
        host = {
            "TRADELOOP_DATA_DIR": str(empty),
            "DATABASE_URL": database,
            "TRADELOOP_EXCHANGE_API_URL": server.url,
            "TRADELOOP_ALLOW_INSECURE_LOOPBACK": "true",
        }
        with pytest.raises(NotConfiguredError, match="TRADELOOP_ENCRYPTION_KEY"):
            asyncio.run(run_session(Settings(**host), resume_config()))  # paper by the CLI, live by the row
        keyed = Settings(**host, TRADELOOP_ENCRYPTION_KEY=key)
        live = resume_config().model_copy(update={"mode": "live"})
        with pytest.raises(DataError, match="no candles in the lake"):  # past the keys: Ana's credential serves
            asyncio.run(run_session(keyed, live))
