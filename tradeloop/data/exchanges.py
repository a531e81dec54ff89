"""Build ccxt exchange clients with tradeloop's timeouts and URL overrides."""

from __future__ import annotations

from typing import Any

import ccxt
import ccxt.async_support
import ccxt.pro

from tradeloop.errors import UnknownExchangeError


def make_exchange(
    exchange_id: str,
    *,
    timeout_s: float = 10.0,
    api_url: str | None = None,
    credentials: dict[str, str] | None = None,
    asynchronous: bool = False,
    websocket: bool = False,
    ws_url: str | None = None,
) -> ccxt.Exchange:
    """A ccxt client (``ccxt.async_support`` when ``asynchronous``, ``ccxt.pro`` when
    ``websocket``) with rate limiting on and ccxt's own retries off: an order is never
    re-sent behind the caller's back.

    ``api_url`` replaces the REST base (e.g. ``http://127.0.0.1:8765``); for Binance it is the
    host that serves ``/api/v3/...``. ``ws_url`` replaces every WebSocket URL (ccxt.pro).
    """
    if exchange_id not in ccxt.exchanges:
        raise UnknownExchangeError(
            f"exchange={exchange_id!r} is not a ccxt exchange id; "
            f"known ids include {', '.join(ccxt.exchanges[:8])}, ... (see ccxt.exchanges)"
        )
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": int(timeout_s * 1000)}
    if exchange_id == "binance":
        config["options"] = {"fetchMarkets": {"types": ["spot"]}}
    if credentials:
        config.update({k: v for k, v in credentials.items() if v})
        if exchange_id == "binance":  # spot trading needs neither the currency nor the margin lists
            config["options"].update({"fetchCurrencies": False, "fetchMargins": False})
    module = ccxt.pro if websocket else ccxt.async_support if asynchronous else ccxt
    exchange: ccxt.Exchange = getattr(module, exchange_id)(config)
    if api_url:
        _override_public_url(exchange, api_url.rstrip("/"))
    if ws_url:
        streams = exchange.urls["api"].get("ws", {})
        for name, url in list(streams.items()):
            if isinstance(url, str):
                streams[name] = ws_url
    return exchange


def _override_public_url(exchange: ccxt.Exchange, base: str) -> None:
    api = exchange.urls.get("api")
    if isinstance(api, dict):
        for name, url in list(api.items()):
            if isinstance(url, str) and url.startswith("http"):
                path = url.split("://", 1)[1]
                suffix = path[path.index("/"):] if "/" in path else ""
                api[name] = base + suffix
    else:
        exchange.urls["api"] = base
