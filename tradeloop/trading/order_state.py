"""The order state machine: which status may follow which.

Every transition is persisted before the action it leads to (``sent`` before the create goes
out, ``cancel_requested`` before the cancel does), and an impossible one is refused with
:class:`~tradeloop.errors.OrderStateError`. Reading the table:

* ``new`` -> ``sent`` is the only way to the venue; ``new`` may also be ``canceled`` (never
  sent: the order manager dropped it) or ``rejected`` (refused before it was sent).
* ``sent`` -> anything the venue can answer, or ``unknown`` when it does not prove one.
* ``unknown`` -> whatever a later query proves (it is resolved, never re-sent).
* ``cancel_requested`` -> ``canceled``, or a fill that raced the cancel, or back to
  ``acknowledged``/``partially_filled`` when the venue refuses the cancel.
* ``filled``, ``canceled``, ``rejected`` and ``expired`` are terminal.
* A status may always follow itself (a repeated report changes nothing).
"""

from __future__ import annotations

from tradeloop.errors import OrderStateError
from tradeloop.trading.enums import OrderStatus

S = OrderStatus
TERMINAL = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED})
_OPEN_NEXT = {S.PARTIALLY_FILLED, S.FILLED, S.CANCEL_REQUESTED, S.CANCELED, S.EXPIRED, S.REJECTED, S.UNKNOWN}

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.NEW: frozenset({S.SENT, S.CANCELED, S.REJECTED}),
    S.SENT: frozenset({S.ACKNOWLEDGED} | _OPEN_NEXT - {S.CANCEL_REQUESTED}),
    S.ACKNOWLEDGED: frozenset(_OPEN_NEXT),
    S.PARTIALLY_FILLED: frozenset(_OPEN_NEXT - {S.REJECTED}),
    S.CANCEL_REQUESTED: frozenset({S.CANCELED, S.FILLED, S.PARTIALLY_FILLED, S.ACKNOWLEDGED, S.EXPIRED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.ACKNOWLEDGED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}


def can_transition(current: str, to: str) -> bool:
    """True when an order in ``current`` may move to ``to`` (a status may follow itself)."""
    a, b = OrderStatus(current), OrderStatus(to)
    return a == b or b in TRANSITIONS[a]


def check_transition(current: str, to: str, *, client_order_id: str = "") -> OrderStatus:
    """``to`` as an ``OrderStatus``; raises ``OrderStateError`` naming the order and both states
    when the move is impossible (a terminal order never reopens)."""
    if not can_transition(current, to):
        allowed = ", ".join(sorted(TRANSITIONS[OrderStatus(current)])) or "none: it is final"
        raise OrderStateError(
            f"order {client_order_id or '?'}: {current} -> {to} is not a valid transition (from {current}: {allowed})"
        )
    return OrderStatus(to)
