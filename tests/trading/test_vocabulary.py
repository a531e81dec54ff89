"""The trading vocabulary: the order state machine allows the lifecycle and refuses the
impossible; ``InstrumentId`` round-trips its text form and refuses malformed names; the
enums compare equal to the strings the database stores."""

from __future__ import annotations

import pytest

from tradeloop.errors import ConfigError, OrderStateError
from tradeloop.trading import (
    TERMINAL,
    InstrumentId,
    OrderIntent,
    OrderIntentKind,
    OrderSide,
    OrderStatus,
    OrderType,
    can_transition,
    check_transition,
)

S = OrderStatus

LIFECYCLES = [
    [S.NEW, S.SENT, S.ACKNOWLEDGED, S.PARTIALLY_FILLED, S.FILLED],
    [S.NEW, S.SENT, S.FILLED],
    [S.NEW, S.SENT, S.UNKNOWN, S.FILLED],
    [S.NEW, S.SENT, S.ACKNOWLEDGED, S.CANCEL_REQUESTED, S.CANCELED],
    [S.NEW, S.SENT, S.ACKNOWLEDGED, S.CANCEL_REQUESTED, S.PARTIALLY_FILLED, S.CANCEL_REQUESTED, S.FILLED],
    [S.NEW, S.SENT, S.ACKNOWLEDGED, S.CANCEL_REQUESTED, S.ACKNOWLEDGED],  # the venue refused the cancel
    [S.NEW, S.SENT, S.REJECTED],
    [S.NEW, S.SENT, S.ACKNOWLEDGED, S.EXPIRED],
    [S.NEW, S.CANCELED],  # dropped before it was sent
]


@pytest.mark.parametrize("path", LIFECYCLES, ids=lambda p: "-".join(p))
def test_each_lifecycle_a_venue_can_produce_is_allowed(path: list[OrderStatus]) -> None:
    for a, b in zip(path, path[1:], strict=False):
        assert check_transition(a, b, client_order_id="x") is b


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.NEW, S.ACKNOWLEDGED),  # never past `sent` without it being stored first
        (S.NEW, S.FILLED),
        (S.NEW, S.UNKNOWN),
        (S.SENT, S.NEW),
        (S.SENT, S.CANCEL_REQUESTED),  # nothing to cancel before the venue holds it
        (S.UNKNOWN, S.SENT),  # resolved, never re-sent
        (S.PARTIALLY_FILLED, S.ACKNOWLEDGED),
    ],
)
def test_impossible_transitions_are_refused_naming_the_order_and_both_states(a, b) -> None:
    assert not can_transition(a, b)
    with pytest.raises(OrderStateError, match=rf"order tl7-1: {a} -> {b} is not a valid transition"):
        check_transition(a, b, client_order_id="tl7-1")


@pytest.mark.parametrize("end", sorted(TERMINAL))
def test_a_terminal_order_never_reopens_but_may_repeat_its_status(end: OrderStatus) -> None:
    assert can_transition(end, end)
    for other in OrderStatus:
        if other != end:
            assert not can_transition(end, other)


def test_statuses_and_sides_equal_their_stored_strings() -> None:
    assert S.ACKNOWLEDGED == "acknowledged" and OrderSide("sell") is OrderSide.SELL
    assert OrderSide.BUY.sign == 1 and OrderSide.SELL.sign == -1 and OrderSide.BUY.opposite is OrderSide.SELL
    assert OrderIntentKind.FLATTEN.reduces and not OrderIntentKind.ENTER_SHORT.reduces


@pytest.mark.parametrize(
    ("text", "venue", "symbol", "perp"),
    [
        ("binance:BTC/USDT", "binance", "BTC/USDT", False),
        ("binanceusdm:BTC/USDT:USDT", "binanceusdm", "BTC/USDT:USDT", True),
        ("coinbase:BTC-USD", "coinbase", "BTC-USD", False),
    ],
)
def test_instrument_ids_round_trip_their_text(text: str, venue: str, symbol: str, perp: bool) -> None:
    inst = InstrumentId.parse(text)
    assert (inst.venue, inst.symbol, inst.is_perpetual, str(inst)) == (venue, symbol, perp, text)
    assert InstrumentId(venue, symbol) == inst and hash(InstrumentId(venue, symbol)) == hash(inst)


@pytest.mark.parametrize("text", ["BTC/USDT", ":BTC/USDT", "binance:", "binance: BTC"])
def test_malformed_instrument_names_are_refused_with_the_form(text: str) -> None:
    with pytest.raises(ConfigError, match="venue|symbol"):
        InstrumentId.parse(text)


def test_an_intent_needs_exactly_one_amount_and_the_prices_its_type_needs() -> None:
    btc = InstrumentId("binance", "BTC/USDT")
    with pytest.raises(ValueError, match="exactly one of quantity and quote_amount"):
        OrderIntent(instrument=btc, side=OrderSide.BUY, kind=OrderIntentKind.ENTER_LONG)
    with pytest.raises(ValueError, match="limit order needs price"):
        OrderIntent(instrument=btc, side=OrderSide.BUY, kind=OrderIntentKind.ENTER_LONG, quantity=1.0,
                    order_type=OrderType.LIMIT)  # fmt: skip
    with pytest.raises(ValueError, match="needs trigger_price"):
        OrderIntent(instrument=btc, side=OrderSide.SELL, kind=OrderIntentKind.STOP_LOSS, quantity=1.0,
                    order_type=OrderType.STOP)  # fmt: skip
    entry = OrderIntent(instrument=btc, side=OrderSide.BUY, kind=OrderIntentKind.ENTER_LONG, quantity=0.5,
                        reference_price=100.0)  # fmt: skip
    assert entry.notional() == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("venue", "symbol", "derivative"),
    [
        ("binance", "BTC/USDT", False),
        ("binance", "BTC-USDT", False),
        ("binanceusdm", "BTC/USDT:USDT", True),
        ("okx", "BTC/USDT:USDT-250328", True),  # a dated future: a settle currency, an expiry
        ("binance", "BTC-USDT-PERP", True),
    ],
)
def test_any_symbol_with_a_settle_currency_is_a_derivative(venue: str, symbol: str, derivative: bool) -> None:
    assert InstrumentId(venue, symbol).is_derivative is derivative
