"""Each venue's keys and URLs for a live session, which may trade on several venues (``live.venues``).

Rules:

* **The session's own exchange** (its plain symbols) signs with the session's stored credential
  (``sessions.credential_id``: ``live.session_brokers.session_secret``) when it has one; else
  with ``TRADELOOP_VENUES__<VENUE>__API_KEY`` / ``__SECRET`` / ``__PASSWORD`` when that venue has
  an entry with keys; else, when it is the host's exchange (``TRADELOOP_EXCHANGE``), with
  ``TRADELOOP_EXCHANGE_API_KEY`` / ``_SECRET`` / ``_PASSWORD``, as a single-venue session always did.
* **The host's keys are the host's exchange's**: ``TRADELOOP_EXCHANGE_*`` keys and URLs are used
  for the venue ``TRADELOOP_EXCHANGE`` names and no other (a session with ``--exchange kraken``
  on a Binance host needs ``TRADELOOP_VENUES__KRAKEN__*``); another venue (``okx:BTC-USDT``)
  signs only with its own ``TRADELOOP_VENUES__OKX__*`` keys.
* **Blank is unset** (``tradeloop.settings.VenueKeys``): a key or secret that is empty or only
  spaces, in a venue's entry, the host's variables or a stored credential, is no key.
* **URLs** (ccxt's REST base, ccxt.pro's WebSocket) of a venue: its ``__API_URL`` / ``__WS_URL``,
  else, for the host's exchange only, ``TRADELOOP_EXCHANGE_API_URL`` / ``_WS_URL``.
* **A stored credential is one venue's account**: a live session whose symbols span several
  venues and that names one is refused (the credential store keeps one exchange per
  credential); such a session trades on the engine host's keys per venue.
* A venue without an API key and a secret is a ``ConfigError`` naming the variables to set,
  raised before any data is read or any order sent. Keys are ``SecretStr`` in the settings and
  never reach a log (``tradeloop.settings.register_settings_secrets``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tradeloop.errors import ConfigError
from tradeloop.identity.vault import ExchangeSecret
from tradeloop.settings import Settings

OWN_KEYS = ("TRADELOOP_EXCHANGE_API_KEY", "TRADELOOP_EXCHANGE_SECRET")


def venue_variable(venue: str, name: str) -> str:
    """The environment variable of one of ``venue``'s settings: ``('okx', 'API_KEY')`` ->
    ``TRADELOOP_VENUES__OKX__API_KEY``."""
    return f"TRADELOOP_VENUES__{venue.upper()}__{name}"


@dataclass(frozen=True, kw_only=True, slots=True)
class VenueAccess:
    """What a live session's client of one venue signs with and where it connects (module rules)."""

    venue: str
    credentials: dict[str, str] = field(repr=False)  # ccxt's apiKey, secret, password
    api_url: str | None = None
    ws_url: str | None = None
    source: str  # where the keys come from, for messages: "TRADELOOP_VENUES__OKX__API_KEY", ...

    @property
    def api_key(self) -> str:
        return self.credentials["apiKey"]


def venue_urls(settings: Settings, venue: str, *, own: str) -> tuple[str | None, str | None]:
    """``venue``'s (REST, WebSocket) URL overrides (module rules); ``own``: the session's exchange."""
    entry = settings.venues.get(venue)
    api_url = entry.api_url if entry is not None else None
    ws_url = entry.ws_url if entry is not None else None
    if venue == settings.exchange:
        api_url, ws_url = api_url or settings.exchange_api_url, ws_url or settings.exchange_ws_url
    return api_url, ws_url


def venue_access(settings: Settings, venue: str, *, own: str, secret: ExchangeSecret | None = None) -> VenueAccess:
    """The keys and URLs of ``venue`` for a live session on ``own`` (its exchange), ``secret``
    being the session's stored credential (``own``'s keys) if it has one.

    Raises
    ------
    ConfigError
        ``venue`` has no (non-blank) API key and secret; the message names the variables to set.
    """
    api_url, ws_url = venue_urls(settings, venue, own=own)
    if secret is not None and venue == own:
        if _blank(secret.api_key) or _blank(secret.secret):
            raise ConfigError(
                f"the stored credential of this session has a blank API key or secret for {venue}; store the "
                "account's keys again (PUT /credentials) or start the session without a credential"
            )
        keys = {"apiKey": secret.api_key, "secret": secret.secret, "password": secret.password or ""}
        return VenueAccess(
            venue=venue, credentials=keys, api_url=api_url, ws_url=ws_url, source="its stored credential"
        )
    entry = settings.venues.get(venue)
    host = venue == settings.exchange
    if entry is not None and (entry.api_key is not None or entry.secret is not None or not host):
        key, sec, password, source = entry.api_key, entry.secret, entry.password, venue_variable(venue, "API_KEY")
    elif host:
        key, sec, password = settings.exchange_api_key, settings.exchange_secret, settings.exchange_password
        source = OWN_KEYS[0]
    else:
        key = sec = password = None
        source = venue_variable(venue, "API_KEY")
    if key is None or sec is None or _blank(key.get_secret_value()) or _blank(sec.get_secret_value()):
        raise ConfigError(missing_keys(venue, host=settings.exchange))
    keys = {
        "apiKey": key.get_secret_value(),
        "secret": sec.get_secret_value(),
        "password": password.get_secret_value() if password is not None else "",
    }
    return VenueAccess(venue=venue, credentials=keys, api_url=api_url, ws_url=ws_url, source=source)


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def missing_keys(venue: str, *, host: str) -> str:
    """What to set for ``venue``'s keys (module rules); ``host``: ``TRADELOOP_EXCHANGE``."""
    mine = [venue_variable(venue, "API_KEY"), venue_variable(venue, "SECRET")]
    wanted = " and ".join(OWN_KEYS) + f" (or {' and '.join(mine)})" if venue == host else " and ".join(mine)
    not_host = (
        ""
        if venue == host
        else f" (TRADELOOP_EXCHANGE_API_KEY and the rest are the keys of TRADELOOP_EXCHANGE={host}, never sent to "
        f"{venue})"
    )
    return (
        f"mode='live' trades real money on {venue} and needs its API key and secret: set {wanted}, plus "
        f"{'TRADELOOP_EXCHANGE_PASSWORD' if venue == host else venue_variable(venue, 'PASSWORD')} where the venue "
        f"has a passphrase (see .env.example){not_host}; or use --mode paper"
    )


def refuse_stored_credential(name: str, venues: list[str], *, own: str) -> None:
    """A live session on several ``venues`` cannot trade with a stored credential (module rules)."""
    others = [v for v in venues if v != own]
    wanted = ", ".join([f"{' and '.join(OWN_KEYS)} for {own}"] + [
        f"{venue_variable(v, 'API_KEY')} and {venue_variable(v, 'SECRET')} for {v}" for v in others
    ])  # fmt: skip
    raise ConfigError(
        f"session {name!r} trades live on {venues} but names a stored credential, which holds one venue's keys; "
        f"a live session on several venues trades on the engine host's keys per venue: stop it and start a new one "
        f"without a credential (tradeloop live run --mode live ...) on a host with {wanted}"
    )
