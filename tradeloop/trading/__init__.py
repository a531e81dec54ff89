"""The trading vocabulary every layer speaks: identities, states and records as types.

``InstrumentId`` names what is traded (``venue`` + ccxt ``symbol``); the enums name sides,
order types, statuses, times in force, session modes and feed kinds; ``OrderIntent`` is
what a decision asks for before risk and persistence; ``order_state`` holds the order
lifecycle and refuses impossible transitions. Enum members are ``StrEnum``: they compare
equal to the strings stored in the operational database, so rows read back need no mapping.
"""

from tradeloop.trading.enums import (
    FeedKind,
    OrderIntentKind,
    OrderSide,
    OrderStatus,
    OrderType,
    SessionMode,
    TimeInForce,
)
from tradeloop.trading.instrument import PERPETUAL_VENUES, InstrumentId
from tradeloop.trading.order_state import TERMINAL, can_transition, check_transition
from tradeloop.trading.records import PROTECTIVE_KINDS, FillRecord, OrderIntent, ProtectiveLeg

__all__ = [
    "PERPETUAL_VENUES",
    "PROTECTIVE_KINDS",
    "TERMINAL",
    "FeedKind",
    "FillRecord",
    "InstrumentId",
    "OrderIntent",
    "OrderIntentKind",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "ProtectiveLeg",
    "SessionMode",
    "TimeInForce",
    "can_transition",
    "check_transition",
]
