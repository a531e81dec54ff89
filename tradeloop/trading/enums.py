"""Enumerations of the trading vocabulary (``StrEnum``: equal to their stored strings)."""

from __future__ import annotations

from enum import StrEnum


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for a buy (the position grows), -1 for a sell."""
        return 1 if self is OrderSide.BUY else -1

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(StrEnum):
    """``market`` fills at the next price; ``limit`` at its price or better; ``stop`` becomes a
    market order once the price trades through its trigger; ``take_profit`` likewise, on the
    profitable side."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    TAKE_PROFIT = "take_profit"


class TimeInForce(StrEnum):
    GTC = "gtc"  # good till canceled (or the order manager's maximum age)
    IOC = "ioc"  # immediate or cancel: what does not fill at once is canceled
    POST_ONLY = "post_only"  # maker only: refused when it would take liquidity


class OrderStatus(StrEnum):
    """An order's lifecycle (``tradeloop.trading.order_state`` holds the allowed transitions)."""

    NEW = "new"  # stored, not sent
    SENT = "sent"  # the create may have gone out (committed before it does)
    ACKNOWLEDGED = "acknowledged"  # the venue holds it open
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # sent, and the venue has not proved what became of it


class OrderIntentKind(StrEnum):
    """Why an order exists: what the decision asked for."""

    ENTER_LONG = "enter_long"
    EXIT_LONG = "exit_long"
    ENTER_SHORT = "enter_short"
    EXIT_SHORT = "exit_short"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"
    FLATTEN = "flatten"  # the kill switch closing a position

    @property
    def reduces(self) -> bool:
        """True for every intent that only shrinks a position (allowed when reduce-only)."""
        return self not in (OrderIntentKind.ENTER_LONG, OrderIntentKind.ENTER_SHORT)


class SessionMode(StrEnum):
    PAPER = "paper"
    LIVE = "live"


class FeedKind(StrEnum):
    REPLAY = "replay"  # candles from the lake
    CCXT = "ccxt"  # the venue's WebSocket (ccxt.pro), REST when it fails
    BUS = "bus"  # the market-data service's candles on the bus (live.marketdata)
