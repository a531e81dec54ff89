"""Build ccxt exchange clients with tradeloop's timeouts and URL overrides, instrumented for
exchange health (``tradeloop.observability.venues``): :func:`instrument` times every REST call
by venue and endpoint (``GET klines``: the method and ccxt's path template, so ids never make
a series) and classifies its error; a WebSocket watch (``watch_*``) reports data received and
every reconnection (a new connection to a URL it had one to)."""

from __future__ import annotations

import contextvars
import functools
import inspect
import ipaddress
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support
import ccxt.pro

from tradeloop.data.request_queues import RequestQueues, account_of, request_queues
from tradeloop.errors import ConfigError, UnknownExchangeError
from tradeloop.observability.venues import VenueHealth, venue_health
from tradeloop.redaction import register_secret, route_print_to_log


def make_exchange(
    exchange_id: str,
    *,
    timeout_s: float = 10.0,
    api_url: str | None = None,
    credentials: dict[str, str] | None = None,
    asynchronous: bool = False,
    websocket: bool = False,
    ws_url: str | None = None,
    allow_insecure_loopback: bool = False,
    health: VenueHealth | None = None,
    queues: RequestQueues | None = None,
) -> ccxt.Exchange:
    """A ccxt client (``ccxt.async_support`` when ``asynchronous``, ``ccxt.pro`` when
    ``websocket``) with rate limiting on and ccxt's own retries off: an order is never
    re-sent behind the caller's back.

    ``api_url`` replaces the REST base (e.g. ``http://127.0.0.1:8765``); for Binance it is the
    host that serves ``/api/v3/...``, for OKX the one that serves ``/api/v5/...``. ``ws_url``
    replaces every WebSocket URL (ccxt.pro).

    A client with ``credentials`` signs its requests: it is refused when any of its URLs is
    plain ``http://`` or ``ws://``, unless ``allow_insecure_loopback`` is set and every such
    URL points at this machine (a loopback test exchange).

    Every client reports its calls to ``health`` (default: the process's :func:`venue_health`,
    which exports the ``tradeloop_venue_*`` metrics), and every async client waits in the request
    queue of its venue and account (default: the process's
    :func:`tradeloop.data.request_queues.request_queues`), shared with the process's other
    clients of that account.
    """
    if exchange_id not in ccxt.exchanges:
        raise UnknownExchangeError(
            f"exchange={exchange_id!r} is not a ccxt exchange id; "
            f"known ids include {', '.join(ccxt.exchanges[:8])}, ... (see ccxt.exchanges)"
        )
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": int(timeout_s * 1000)}
    if exchange_id == "binance":
        config["options"] = {"fetchMarkets": {"types": ["spot"]}}
    if exchange_id == "binanceusdm":  # USDⓈ-M perpetuals: its default market list is the linear one
        config["options"] = {}
    if exchange_id == "okx":  # spot: one instruments request instead of four (spot, futures, swaps, options)
        config["options"] = {"fetchMarkets": {"types": ["spot"]}}
    if credentials:
        register_secret(*credentials.values())  # never in a log line, ccxt's DEBUG included
        config.update({k: v for k, v in credentials.items() if v})
        if exchange_id in ("binance", "binanceusdm"):  # trading needs neither the currency nor the margin lists
            config["options"].update({"fetchCurrencies": False, "fetchMargins": False})
    module = ccxt.pro if websocket else ccxt.async_support if asynchronous else ccxt
    exchange: ccxt.Exchange = getattr(module, exchange_id)(config)
    if exchange_id == "okx" and credentials:  # with keys, ccxt would ask OKX's signed currency list; trading needs none
        exchange.has = {**exchange.has, "fetchCurrencies": False}
    exchange.log = route_print_to_log(logging.getLogger(f"ccxt.verbose.{exchange_id}"))
    if api_url:
        _override_public_url(exchange, api_url.rstrip("/"))
    if ws_url:
        streams = exchange.urls["api"].get("ws", {})
        if isinstance(streams, str):  # OKX: one base URL, the client appends /public, /business, /private
            exchange.urls["api"]["ws"] = ws_url
        for name, url in list(streams.items()) if isinstance(streams, dict) else []:
            if isinstance(url, str):
                streams[name] = ws_url
    if credentials:
        _refuse_plain_text(exchange, allow_loopback=allow_insecure_loopback)
    (queues or request_queues()).attach(exchange, account=account_of(credentials))
    return instrument(exchange, health or venue_health())


_ENDPOINT: contextvars.ContextVar[str] = contextvars.ContextVar("tradeloop_ccxt_endpoint", default="other")
WATCHES = (
    "watch_ohlcv", "watch_ohlcv_for_symbols", "watch_ticker", "watch_tickers", "watch_bids_asks",
    "watch_order_book", "watch_order_book_for_symbols", "watch_trades", "watch_trades_for_symbols",
)  # fmt: skip


def _endpoint(args: tuple, kwargs: dict) -> str:
    """``GET klines`` from ccxt's ``fetch2(path, api, method, ...)`` arguments."""
    path = args[0] if args else kwargs.get("path", "?")
    method = args[2] if len(args) > 2 else kwargs.get("method", "GET")
    return f"{method} {path}"


def instrument(exchange: ccxt.Exchange, health: VenueHealth) -> ccxt.Exchange:
    """Report ``exchange``'s REST calls and WebSocket watches to ``health`` (see the module
    docstring); works on sync, ``async_support`` and ``pro`` clients. Returns ``exchange``."""
    venue = exchange.id
    fetch2, fetch = exchange.fetch2, exchange.fetch
    if inspect.iscoroutinefunction(fetch):

        @functools.wraps(fetch2)
        async def afetch2(*args: Any, **kwargs: Any) -> Any:
            token = _ENDPOINT.set(_endpoint(args, kwargs))
            try:
                return await fetch2(*args, **kwargs)
            finally:
                _ENDPOINT.reset(token)

        @functools.wraps(fetch)
        async def afetch(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                reply = await fetch(*args, **kwargs)
            except ccxt.BaseError as exc:
                health.record_call(venue, endpoint=_ENDPOINT.get(), seconds=time.perf_counter() - start, error=exc)
                raise
            health.record_call(venue, endpoint=_ENDPOINT.get(), seconds=time.perf_counter() - start)
            return reply

        exchange.fetch2, exchange.fetch = afetch2, afetch
    else:

        @functools.wraps(fetch2)
        def sfetch2(*args: Any, **kwargs: Any) -> Any:
            token = _ENDPOINT.set(_endpoint(args, kwargs))
            try:
                return fetch2(*args, **kwargs)
            finally:
                _ENDPOINT.reset(token)

        @functools.wraps(fetch)
        def sfetch(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                reply = fetch(*args, **kwargs)
            except ccxt.BaseError as exc:
                health.record_call(venue, endpoint=_ENDPOINT.get(), seconds=time.perf_counter() - start, error=exc)
                raise
            health.record_call(venue, endpoint=_ENDPOINT.get(), seconds=time.perf_counter() - start)
            return reply

        exchange.fetch2, exchange.fetch = sfetch2, sfetch
    known: dict[str, object] = {}  # WebSocket URL -> the connection last seen on it
    for name in WATCHES:
        watch = getattr(exchange, name, None)
        if watch is not None and inspect.iscoroutinefunction(watch):
            setattr(exchange, name, _watched(exchange, watch, venue, health, known))
    return exchange


def _watched(exchange: Any, watch: Any, venue: str, health: VenueHealth, known: dict[str, object]) -> Any:
    """``watch`` reporting its data, and every new connection to a URL it was connected to
    before (ccxt.pro opens one after a drop, often without raising to the caller)."""

    def connections() -> None:
        for url, client in list(getattr(exchange, "clients", {}).items()):
            before = known.get(url)
            if before is not None and before is not client:
                health.record_reconnect(venue)
            known[url] = client

    @functools.wraps(watch)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            data = await watch(*args, **kwargs)
        finally:
            connections()
        health.record_message(venue)
        return data

    return wrapper


def _refuse_plain_text(exchange: ccxt.Exchange, *, allow_loopback: bool) -> None:
    """Signed requests (API key, HMAC signature) never travel unencrypted to another host."""
    api = exchange.urls.get("api")
    urls = _strings(api)
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "ws"):
            continue
        if allow_loopback and _is_loopback(parts.hostname or ""):
            continue
        hint = (
            "only loopback hosts may use it"
            if allow_loopback
            else "use https:// (wss://), or for a test exchange on this machine set "
            "TRADELOOP_ALLOW_INSECURE_LOOPBACK=true"
        )
        raise ConfigError(
            f"exchange URL {url!r} is plain text, and this client signs requests with its API key; {hint}"
        )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _override_public_url(exchange: ccxt.Exchange, base: str) -> None:
    api = exchange.urls.get("api")
    if isinstance(api, dict):
        for name, url in list(api.items()):
            if isinstance(url, str) and url.startswith("http"):
                path = url.split("://", 1)[1]
                suffix = path[path.index("/") :] if "/" in path else ""
                api[name] = base + suffix
    else:
        exchange.urls["api"] = base
