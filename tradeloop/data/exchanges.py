"""Build ccxt exchange clients with tradeloop's timeouts and URL overrides."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support
import ccxt.pro

from tradeloop.errors import ConfigError, UnknownExchangeError
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
    return exchange


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
