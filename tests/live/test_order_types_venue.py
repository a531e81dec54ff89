"""Order types, partial fills, cancels and refusals on the loopback Binance spot venue, through
the real ccxt client: first what ccxt makes of each Binance refusal, then the broker.

Expected prices, quantities and fees are worked out by hand from the venue's rules
(``tests/binance_rules.py``: a resting order fills at its limit, a marketable one at the last
price, a fired stop at the trade's price; commission 0.1% in the quote asset)."""

from __future__ import annotations

import asyncio

import ccxt.async_support as ccxt
import pytest
from exchange_server import BinanceLoopback
from loopback_http import Fault, binance_error_classes, rate_limited

from live.brokers.base import OrderRequest
from live.brokers.ccxt_broker import CcxtBroker, CcxtBrokerConfig
from tradeloop.data.exchanges import make_exchange
from tradeloop.trading import OrderType, TimeInForce

FAST = CcxtBrokerConfig(recv_window_s=0.2, visibility_window_s=0.5, query_interval_s=0.1, read_attempts=2)


def client(server: BinanceLoopback) -> ccxt.Exchange:
    exchange = make_exchange(
        "binance",
        timeout_s=2.0,
        api_url=server.url,
        asynchronous=True,
        credentials={"apiKey": server.api_key, "secret": server.secret},
        allow_insecure_loopback=True,
    )
    exchange.enableRateLimit = False
    return binance_error_classes(exchange)


def run(server: BinanceLoopback, scenario):
    """Run ``scenario(broker)`` with a broker on ``server``; closes the client."""

    async def main():
        broker = CcxtBroker(client(server), config=FAST)
        try:
            return await scenario(broker)
        finally:
            await broker.close()

    return asyncio.run(main())


@pytest.fixture
def server():
    with BinanceLoopback(candles={}, prices={"BTCUSDT": 20_000.0}, balances={"USDT": 10_000.0, "BTC": 1.0}) as srv:
        yield srv


def limit(cid: str, side: str, qty: float, price: float, tif: TimeInForce = TimeInForce.GTC) -> OrderRequest:
    return OrderRequest(cid, "BTC-USDT", side, qty, order_type=OrderType.LIMIT, price=price, time_in_force=tif)


def creates(server: BinanceLoopback) -> list[str]:
    return [r for r in server.requests if r.startswith(("POST /api/v3/order ", "POST /api/v3/order/cancelReplace"))]


# ---------------------------------------------------------------------- what ccxt raises for each refusal
REFUSALS = [  # (what is sent, ccxt's class for Binance's answer, Binance's message)
    ("buy 0.6 BTC, 10000 USDT held", ccxt.InsufficientFunds, "Account has insufficient balance for requested action."),
    ("post-only that would take", ccxt.OrderImmediatelyFillable, "Order would immediately match and take."),
    ("stop that would fire at once", ccxt.OrderImmediatelyFillable, "Stop price would trigger immediately."),
    ("9001 BTC (LOT_SIZE max 9000)", ccxt.InvalidOrder, "Filter failure: LOT_SIZE"),
    ("price 2000000 (PRICE_FILTER max 1000000)", ccxt.InvalidOrder, "Filter failure: PRICE_FILTER"),
    ("2 USDT worth (MIN_NOTIONAL 10)", ccxt.BadRequest, "Filter failure: MIN_NOTIONAL"),
    ("cancel an order the venue does not know", ccxt.OrderNotFound, "Unknown order sent."),
    ("query an order the venue does not know", ccxt.OrderNotFound, "Order does not exist."),
    ("any request past the rate limit", ccxt.DDoSProtection, "Too many requests"),
    ("cancel-replace of an unknown order", ccxt.BadResponse, "Order cancel-replace failed."),
]


@pytest.mark.parametrize(("case", "expected", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_ccxt_raises_its_class_for_each_binance_refusal(server: BinanceLoopback, case, expected, message) -> None:
    """ccxt's binance ``exceptions`` map (spot and common, read from the installed package):
    -2010 by message (InsufficientFunds, OrderImmediatelyFillable), -1013 LOT_SIZE and
    PRICE_FILTER by body text (InvalidOrder) but MIN_NOTIONAL only by code (BadRequest: an
    ExchangeError, not an InvalidOrder), -2011/-2013 OrderNotFound, HTTP 429 DDoSProtection,
    spot -2022 BadResponse."""
    server.check_balances = True
    if case.startswith("any request"):
        server.order_faults[1] = rate_limited()
    calls = {
        "buy 0.6 BTC": lambda x: x.create_order("BTC/USDT", "limit", "buy", 0.6, 19_000.0),
        "post-only": lambda x: x.create_order("BTC/USDT", "limit", "buy", 0.01, 20_100.0, {"postOnly": True}),
        "stop that": lambda x: x.create_order(
            "BTC/USDT", "limit", "sell", 0.01, 20_500.0, {"triggerPrice": 20_500.0, "timeInForce": "GTC"}
        ),
        "9001 BTC": lambda x: x.create_order("BTC/USDT", "limit", "sell", 9001, 1.0),
        "price 2000000": lambda x: x.create_order("BTC/USDT", "limit", "sell", 0.01, 2_000_000.0),
        "2 USDT worth": lambda x: x.create_order("BTC/USDT", "limit", "buy", 0.0001, 20_000.0),
        "cancel an order": lambda x: x.cancel_order(None, "BTC/USDT", {"clientOrderId": "nobody"}),
        "query an order": lambda x: x.fetch_order(None, "BTC/USDT", {"clientOrderId": "nobody"}),
        "any request": lambda x: x.create_order("BTC/USDT", "market", "buy", 0.01),
        "cancel-replace": lambda x: x.edit_order(
            None, "BTC/USDT", "limit", "buy", 0.01, 19_000.0, {"cancelOrigClientOrderId": "nobody"}
        ),
    }
    call = next(c for prefix, c in calls.items() if case.startswith(prefix))

    async def scenario():
        exchange = client(server)
        try:
            await exchange.load_markets()
            with pytest.raises(ccxt.BaseError) as raised:
                await call(exchange)
            return raised.value
        finally:
            await exchange.close()

    error = asyncio.run(scenario())
    assert type(error) is expected and message in str(error)
    assert not [o for o in server.book if o["status"] != "CANCELED"]  # nothing was placed


# ---------------------------------------------------------------------- the broker, order type by order type
def test_a_resting_limit_fills_in_part_then_in_full_at_its_price(server: BinanceLoopback) -> None:
    async def scenario(broker: CcxtBroker):
        placed = await broker.submit(limit("tl-1", "buy", 0.03, 19_500.0))
        server.trade("BTCUSDT", 19_600.0)  # above the bid: nothing
        server.trade("BTCUSDT", 19_400.0, qty=0.01)  # through the bid, 0.01 of liquidity
        part = await broker.query(limit("tl-1", "buy", 0.03, 19_500.0))
        server.trade("BTCUSDT", 19_450.0)
        done = await broker.query(limit("tl-1", "buy", 0.03, 19_500.0))
        return placed, part, done

    placed, part, done = run(server, scenario)
    assert placed.status == "acknowledged" and placed.fills == () and placed.venue_order_id == "1000"
    assert part.status == "partially_filled"
    assert [(f.quantity, f.price, f.trade_id) for f in part.fills] == [(0.01, 19_500.0, "10000")]
    assert done.status == "filled"
    assert [(f.quantity, f.price, f.trade_id) for f in done.fills] == [
        (0.01, 19_500.0, "10000"),
        (0.02, 19_500.0, "10001"),
    ]
    assert [f.fee for f in done.fills] == pytest.approx([0.01 * 19_500 * 0.001, 0.02 * 19_500 * 0.001])
    assert server.balances["BTC"] == pytest.approx(1.03) and server.balances["USDT"] == pytest.approx(
        10_000.0 - 0.03 * 19_500 * 1.001
    )
    sent = server.calls("POST", "/api/v3/order")[0]
    assert (sent["type"], sent["timeInForce"], sent["price"], sent["quantity"]) == ("LIMIT", "GTC", "19500", "0.03")


def test_ioc_expires_unless_marketable_and_post_only_never_takes(server: BinanceLoopback) -> None:
    async def scenario(broker: CcxtBroker):
        return [
            await broker.submit(limit("ioc-away", "buy", 0.01, 19_000.0, TimeInForce.IOC)),
            await broker.submit(limit("ioc-take", "buy", 0.01, 20_100.0, TimeInForce.IOC)),
            await broker.submit(limit("po-take", "buy", 0.01, 20_100.0, TimeInForce.POST_ONLY)),
            await broker.submit(limit("po-rest", "buy", 0.01, 19_900.0, TimeInForce.POST_ONLY)),
        ]

    away, take, po_take, po_rest = run(server, scenario)
    assert away.status == "expired" and away.fills == ()
    assert take.status == "filled" and [(f.quantity, f.price) for f in take.fills] == [(0.01, 20_000.0)]  # the last
    assert po_take.status == "rejected" and "Order would immediately match and take." in po_take.reason
    assert po_rest.status == "acknowledged" and server.orders["po-rest"]["type"] == "LIMIT_MAKER"
    assert "po-take" not in server.orders and server.creates["po-take"] == 1  # refused once, never retried


def test_stop_and_take_profit_fire_on_the_trade_price(server: BinanceLoopback) -> None:
    """Stop-limit sell (trigger 19000, limit 18900) and take-profit-limit sell (trigger = limit =
    21000) are native here; a stop-market is not (the capture lists no STOP_LOSS): refused
    unsent. With STOP_LOSS listed, the stop-market fires and fills at the trade price."""
    stop = OrderRequest(
        "sl", "BTC-USDT", "sell", 0.01, order_type=OrderType.STOP, price=18_900.0, trigger_price=19_000.0
    )
    tp = OrderRequest(
        "tp", "BTC-USDT", "sell", 0.01, order_type=OrderType.TAKE_PROFIT, price=21_000.0, trigger_price=21_000.0
    )
    stop_market = OrderRequest("slm", "BTC-USDT", "sell", 0.01, order_type=OrderType.STOP, trigger_price=19_000.0)

    async def scenario(broker: CcxtBroker):
        placed = [await broker.submit(stop), await broker.submit(tp), await broker.submit(stop_market)]
        server.trade("BTCUSDT", 19_500.0)
        quiet = [await broker.query(stop), await broker.query(tp)]
        server.trade("BTCUSDT", 18_950.0)  # through the stop's trigger, above its limit
        server.trade("BTCUSDT", 21_050.0)  # through the take-profit's
        return placed, quiet, [await broker.query(stop), await broker.query(tp)]

    placed, quiet, fired = run(server, scenario)
    assert [s.status for s in placed] == ["acknowledged", "acknowledged", "rejected"]
    assert "no native STOP_LOSS orders" in placed[2].reason and server.creates["slm"] == 0
    assert [server.orders[c]["type"] for c in ("sl", "tp")] == ["STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"]
    assert [s.status for s in quiet] == ["acknowledged", "acknowledged"]
    assert [(s.status, [(f.quantity, f.price) for f in s.fills]) for s in fired] == [
        ("filled", [(0.01, 18_950.0)]),
        ("filled", [(0.01, 21_050.0)]),
    ]

    info = next(s for s in server.exchange_info["symbols"] if s["symbol"] == "BTCUSDT")
    info["orderTypes"] = [*info["orderTypes"], "STOP_LOSS", "TAKE_PROFIT"]  # a market that lists them

    async def native(broker: CcxtBroker):
        placed = await broker.submit(stop_market)
        server.trade("BTCUSDT", 18_800.0)
        return placed, await broker.query(stop_market)

    placed, filled = run(server, native)
    assert placed.status == "acknowledged" and server.orders["slm"]["type"] == "STOP_LOSS"
    assert filled.status == "filled" and [(f.quantity, f.price) for f in filled.fills] == [(0.01, 18_800.0)]


def test_cancel_returns_the_fills_before_it_or_the_fill_that_raced_it(server: BinanceLoopback) -> None:
    async def scenario(broker: CcxtBroker):
        await broker.submit(limit("c-1", "sell", 0.05, 20_500.0))
        server.trade("BTCUSDT", 20_600.0, qty=0.02)
        canceled = await broker.cancel(limit("c-1", "sell", 0.05, 20_500.0))
        await broker.submit(limit("c-2", "sell", 0.01, 20_800.0))  # the last is 20600: it rests
        server.trade("BTCUSDT", 20_900.0)  # fills before the cancel arrives
        raced = await broker.cancel(limit("c-2", "sell", 0.01, 20_800.0))
        never = await broker.cancel(limit("c-3", "sell", 0.01, 20_500.0))
        return canceled, raced, never

    canceled, raced, never = run(server, scenario)
    assert canceled.status == "canceled" and [(f.quantity, f.price) for f in canceled.fills] == [(0.02, 20_500.0)]
    assert server.orders["c-1"]["status"] == "CANCELED" and server.orders["c-1"]["executedQty"] == "0.02000000"
    assert raced.status == "filled" and [(f.quantity, f.price) for f in raced.fills] == [(0.01, 20_800.0)]
    assert "not open at the cancel" in raced.reason
    assert never.status == "unknown" and "does not know" in never.reason
    assert len(server.calls("DELETE", "/api/v3/order")) == 3


def test_an_unconfirmed_cancel_is_looked_up_not_assumed(server: BinanceLoopback) -> None:
    """The first cancel is refused by the rate limit (the order stays open: cancel_requested,
    send it again); the second is carried out but its answer comes after the client's timeout
    (the lookup finds it canceled)."""
    server.path_faults["DELETE /api/v3/order"] = {1: rate_limited(), 2: Fault(200, {}, delay_s=2.5)}
    order = limit("u-1", "buy", 0.01, 19_000.0)

    async def scenario(broker: CcxtBroker):
        await broker.submit(order)
        return await broker.cancel(order), await broker.cancel(order)

    refused, late = run(server, scenario)
    assert refused.status == "cancel_requested" and "still open: cancel again" in refused.reason
    assert late.status == "canceled" and "cancel not confirmed (RequestTimeout)" in late.reason
    assert len(server.calls("DELETE", "/api/v3/order")) == 2  # one request per cancel: none repeated by ccxt


def test_cancel_replace_is_one_request_and_its_new_order_goes_out_once(server: BinanceLoopback) -> None:
    async def scenario(broker: CcxtBroker):
        await broker.submit(limit("r-1", "buy", 0.01, 19_000.0))
        moved = await broker.replace(limit("r-1", "buy", 0.01, 19_000.0), limit("r-2", "buy", 0.01, 19_500.0))
        server.trade("BTCUSDT", 19_400.0)  # fills r-2; a cancel-replace of it now fails
        late = await broker.replace(limit("r-2", "buy", 0.01, 19_500.0), limit("r-3", "buy", 0.01, 19_600.0))
        return moved, late

    (old, new), (filled, refused) = run(server, scenario)
    assert old.status == "canceled" and new.status == "acknowledged"
    [first, second] = server.calls("POST", "/api/v3/order/cancelReplace")
    assert (first["cancelOrigClientOrderId"], first["newClientOrderId"], first["price"]) == ("r-1", "r-2", "19500")
    assert first["cancelReplaceMode"] == "STOP_ON_FAILURE"
    assert server.orders["r-1"]["status"] == "CANCELED" and server.orders["r-2"]["price"] == "19500.00000000"
    assert filled.status == "filled" and [(f.quantity, f.price) for f in filled.fills] == [(0.01, 19_500.0)]
    assert refused.status == "rejected" and "Unknown order sent." in refused.reason
    assert "r-3" not in server.orders and server.creates["r-3"] == 1 and second["newClientOrderId"] == "r-3"


def test_each_refusal_is_rejected_with_the_venues_reason_and_never_resent(server: BinanceLoopback) -> None:
    server.check_balances = True
    server.order_faults[4] = rate_limited()
    orders = [
        limit("x-funds", "buy", 0.6, 19_000.0),  # 11400 USDT > 10000
        limit("x-lot", "sell", 9001, 1.0),
        limit("x-notional", "buy", 0.0001, 20_000.0),
        limit("x-limited", "buy", 0.01, 19_000.0),
    ]

    async def scenario(broker: CcxtBroker):
        return [await broker.submit(o) for o in orders]

    states = run(server, scenario)
    assert [s.status for s in states] == ["rejected"] * 4
    reasons = [s.reason for s in states]
    assert "Account has insufficient balance for requested action." in reasons[0]
    assert "Filter failure: LOT_SIZE" in reasons[1] and "Filter failure: MIN_NOTIONAL" in reasons[2]
    assert reasons[3].startswith("venue refused") and "Too many requests" in reasons[3]
    assert [r.split("newClientOrderId=")[1].split("&")[0] for r in creates(server)] == [
        o.client_order_id for o in orders
    ]
    assert not server.book  # nothing placed, nothing sent twice


def test_a_stop_is_moved_by_cancel_replace(server: BinanceLoopback) -> None:
    """Trailing a protective stop: the stop-limit at 19000/18900 becomes 19500/19400 in one request."""

    def stop(cid: str, at: float) -> OrderRequest:
        return OrderRequest(cid, "BTC-USDT", "sell", 0.01, order_type=OrderType.STOP, price=at - 100, trigger_price=at)

    async def scenario(broker: CcxtBroker):
        await broker.submit(stop("st-1", 19_000.0))
        moved = await broker.replace(stop("st-1", 19_000.0), stop("st-2", 19_500.0))
        server.trade("BTCUSDT", 19_450.0)  # through the new trigger only, above its limit
        return moved, await broker.query(stop("st-2", 19_500.0))

    (old, new), fired = run(server, scenario)
    [sent] = server.calls("POST", "/api/v3/order/cancelReplace")
    assert (sent["type"], sent["stopPrice"], sent["price"], sent["timeInForce"]) == (
        "STOP_LOSS_LIMIT",
        "19500",
        "19400",
        "GTC",
    )
    assert old.status == "canceled" and new.status == "acknowledged"
    assert fired.status == "filled" and [(f.quantity, f.price) for f in fired.fills] == [(0.01, 19_450.0)]
