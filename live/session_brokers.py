"""A session's broker, its keys and its account locks: one venue's, or several venues' behind a router.

Rules:

* Paper: the backtest's fill rules (``PaperBroker``), whatever venues the symbols are on.
* Live on its own exchange alone (every symbol plain): that venue's ccxt broker (the perpetuals
  broker on a ``PERPETUAL_VENUES`` venue), keyed as ``live.venue_keys`` says.
* Live on several venues (``live.venues``), which is any session whose symbols' venues are not
  its exchange alone (``--exchange binance --symbol okx:BTC-USDT`` trades on OKX only): one
  broker per venue its symbols are on, each with that venue's own keys and URLs
  (``live.venue_keys``), behind one ``live.brokers.router.BrokerRouter``; the session's exchange
  gets no broker, keys or lock unless a symbol is on it. The feed splits the same way
  (``live.session_feeds``). Each venue's keys are checked before any data
  (:func:`check_venue_keys`); a venue without keys is a ``ConfigError`` naming the variables to set.
* One account lock per venue account (``live.locks.account_lock_key``): a second engine on any
  of the session's venue accounts is refused, naming the holder.
* Refused, because they cannot work yet (:func:`check_live_venues`): a live session on several
  venues with a stored credential (one venue's keys, ``live.venue_keys``), and one on several
  venues of which one is a perpetuals venue (its margin account is reconciled by positions, its
  funding booked, by checks that take one venue's broker: trade perpetuals in a session of
  their own), and one whose venues' symbols are quoted in different assets (the session keeps
  one cash figure, in one quote asset: ``live.reconcile``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from live.brokers.base import Broker
from live.brokers.ccxt_broker import CcxtBroker
from live.brokers.paper import PaperBroker
from live.brokers.perps import PerpInstrument, PerpsBroker
from live.brokers.router import BrokerRouter
from live.locks import EngineLocks, account_lock_key
from live.venue_keys import VenueAccess, refuse_stored_credential, venue_access
from live.venues import instrument_of, several_venues, venues_of
from tradeloop.backtest import BacktestConfig
from tradeloop.data.exchanges import make_exchange
from tradeloop.errors import ConfigError, SessionStateError
from tradeloop.identity.credentials import CredentialStore, vault_of
from tradeloop.identity.vault import ExchangeSecret
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.settings import Settings
from tradeloop.trading import PERPETUAL_VENUES


def session_secret(settings: Settings, store: OpsStore, session: TradingSession) -> ExchangeSecret | None:
    """The stored exchange credential a live session made through the API trades with
    (``sessions.credential_id``, decrypted with ``TRADELOOP_ENCRYPTION_KEY``); None for a paper
    session or one on the engine host's own keys."""
    if session.mode != "live" or session.credential_id is None:
        return None
    credentials = CredentialStore(store)
    info = credentials.info(session.credential_id)
    if info.exchange != session.exchange or (session.owner_id is not None and info.user_id != session.owner_id):
        raise ConfigError(
            f"session {session.name!r} trades on {session.exchange} for user {session.owner_id}, but its stored "
            f"credential {info.name!r} is user {info.user_id}'s {info.exchange} account; stop the session and make a "
            "new one with a credential of its owner for its exchange"
        )
    return credentials.secret(session.credential_id, vault=vault_of(settings))


def check_live_venues(
    mode: str, exchange: str, symbols: Sequence[str], *, name: str = "", stored_credential: bool = False
) -> None:
    """What a live session on several venues cannot do yet (module rules): a ConfigError naming the fix."""
    venues = sorted(venues_of(exchange, symbols))
    if mode != "live" or not several_venues(exchange, symbols):
        return
    if stored_credential:
        refuse_stored_credential(name, venues, own=exchange)
    perpetual = [v for v in venues if v in PERPETUAL_VENUES]
    if perpetual:
        raise ConfigError(
            f"a live session on several venues ({venues}) trades spot venues only; {perpetual} trade perpetuals, "
            "whose margin account is reconciled by positions and whose funding is booked per venue: trade them in "
            "a live session of their own, or replay them together on paper (--mode paper)"
        )
    quotes = {key: _quote(instrument_of(exchange, key).symbol) for key in symbols}
    if len(set(quotes.values())) > 1:
        raise ConfigError(
            f"a live session on several venues keeps one cash figure in one quote asset, but its symbols are quoted "
            f"in {sorted(set(quotes.values()))} ({', '.join(f'{k}: {q}' for k, q in quotes.items())}); trade symbols "
            "of one quote asset together (e.g. BTC-USDT and okx:ETH-USDT), or replay them on paper (--mode paper)"
        )


def _quote(symbol: str) -> str:
    """The quote asset of a lake symbol (``BTC-USDT`` -> ``USDT``; a perpetual's settle suffix dropped)."""
    return symbol.split(":")[0].rsplit("-", 1)[-1].rsplit("/", 1)[-1].upper()


def live_accesses(
    settings: Settings, exchange: str, symbols: Sequence[str], *, secret: ExchangeSecret | None = None
) -> dict[str, VenueAccess]:
    """Each venue's keys and URLs for a live session on ``exchange`` trading ``symbols``, the
    session's exchange first when a symbol is on it (ConfigError for a venue without keys:
    ``live.venue_keys``)."""
    venues = list(venues_of(exchange, symbols))
    venues.sort(key=lambda v: v != exchange)  # the session's exchange first, when a symbol is on it
    return {v: venue_access(settings, v, own=exchange, secret=secret) for v in venues}


async def check_venue_keys(settings: Settings, name: str, *, mode: str, exchange: str, symbols: Sequence[str]) -> None:
    """A live session's keys and venue URLs, checked before any data: those of a resumed
    session (``name``) by its stored row (its mode, exchange, symbols and stored credential:
    :func:`session_secret`), since a resume names no ``--mode`` (``api.session_options.run_command``);
    a new session's by the given ``mode``, ``exchange`` and ``symbols``.

    Raises
    ------
    ConfigError
        The session trades live and a venue of it has no usable keys (no stored credential or
        host keys, an undecryptable credential, a venue URL refused), or it is refused by
        :func:`check_live_venues`.
    """
    store = OpsStore.open(settings.effective_database_url)
    try:
        try:
            session: TradingSession | None = store.session(name)
        except SessionStateError:
            session = None
        secret, stored = None, False
        if session is not None:
            mode, exchange, symbols = session.mode, session.exchange, tuple(session.symbols)
            stored = session.credential_id is not None
            check_live_venues(mode, exchange, symbols, name=name, stored_credential=stored)
            secret = session_secret(settings, store, session)
    finally:
        store.close()
    if mode != "live":
        return
    check_live_venues(mode, exchange, symbols, name=name, stored_credential=stored)
    for venue, access in live_accesses(settings, exchange, symbols, secret=secret).items():
        await _venue_broker(settings, venue, access, perps=None).close()  # refuses an insecure URL


def session_broker(
    settings: Settings,
    session: TradingSession,
    *,
    backtest: BacktestConfig,
    perps: Mapping[str, PerpInstrument] | None = None,
    secret: ExchangeSecret | None = None,
) -> Broker:
    """The broker of ``session`` (module rules): the paper broker, one venue's, or a router of
    each venue's (``perps``: by session key)."""
    if session.mode == "paper" or not several_venues(session.exchange, session.symbols):
        return make_broker(
            settings, session.mode, exchange=session.exchange, backtest=backtest, perps=perps, secret=secret
        )
    accesses = live_accesses(settings, session.exchange, session.symbols, secret=secret)
    brokers: dict[str, Broker] = {}
    for venue, access in accesses.items():
        mine = {instrument_of(session.exchange, k).symbol: p for k, p in (perps or {}).items()
                if instrument_of(session.exchange, k).venue == venue}  # fmt: skip
        brokers[venue] = _venue_broker(settings, venue, access, perps=mine)
    return BrokerRouter(brokers, default_venue=session.exchange)


def take_account_locks(locks: EngineLocks, accesses: Mapping[str, VenueAccess], *, mode: str) -> None:
    """One lock per venue account of a live session (``live.locks``); nothing for paper."""
    for venue, access in accesses.items():
        account = account_lock_key(mode=mode, venue=venue, api_key=access.api_key)
        if account is not None:
            locks.acquire(account, what=f"the {venue} account of {access.source}")


def make_broker(
    settings: Settings,
    mode: str,
    *,
    exchange: str,
    backtest: BacktestConfig,
    perps: Mapping[str, PerpInstrument] | None = None,
    secret: ExchangeSecret | None = None,
) -> Broker:
    """Paper: the backtest's fill rules. Live: the venue through ccxt, with ``secret`` (a
    session's stored credential: ``session_secret``) or else the engine host's exchange keys
    (``live.venue_keys``); a perpetuals venue (``PERPETUAL_VENUES``) gets the perpetuals broker
    with each instrument's leverage and margin mode (``perps``; an instrument without one is
    refused its entries)."""
    if mode == "paper":
        return PaperBroker.of(backtest)
    access = venue_access(settings, exchange, own=exchange, secret=secret)
    return _venue_broker(settings, exchange, access, perps=perps)


def _venue_broker(
    settings: Settings, venue: str, access: VenueAccess, *, perps: Mapping[str, PerpInstrument] | None
) -> Broker:
    client = make_exchange(
        venue,
        timeout_s=settings.http_timeout_s,
        api_url=access.api_url,
        credentials=access.credentials,
        asynchronous=True,
        allow_insecure_loopback=settings.allow_insecure_loopback,
    )
    if venue in PERPETUAL_VENUES:
        return PerpsBroker(client, instruments=dict(perps or {}))
    return CcxtBroker(client)
