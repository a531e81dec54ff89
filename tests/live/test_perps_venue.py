"""USDⓈ-M perpetuals through the real ccxt ``binanceusdm`` client and the loopback fapi venue:
leverage and margin mode set before the first order, shorts opened and closed, reduce-only,
algo stop and take-profit orders, funding as cash flows, positions with liquidation prices.

Expected numbers are worked by hand from Binance's rules as the venue states them
(``tests/futures_account.py``): taker fee 0.05%, BTCUSDT's first bracket mmr 0.4% (cum 0),
ETHUSDT's 0.5%; liquidation ``(WB + cum - side*Q*EP) / (Q*mmr - side*Q)``."""

from __future__ import annotations

import asyncio

import ccxt.async_support as ccxt
import pytest
from futures_account import Position
from futures_exchange_server import BinanceUsdmLoopback
from loopback_http import binance_error_classes, rate_limited

from live.brokers.base import OrderRequest
from live.brokers.ccxt_broker import CcxtBrokerConfig
from live.brokers.perps import PerpInstrument, PerpsBroker, perp_symbol
from tradeloop.data.exchanges import make_exchange
from tradeloop.trading import InstrumentId, OrderType, TimeInForce

FAST = CcxtBrokerConfig(recv_window_s=0.2, visibility_window_s=0.5, query_interval_s=0.1, read_attempts=2)
BTC = "BTC-USDT-PERP"
INSTRUMENTS = {
    "BTC/USDT:USDT": PerpInstrument(leverage=10, margin_mode="isolated"),
    "ETH-USDT": PerpInstrument(leverage=3, margin_mode="cross"),
}


def client(server: BinanceUsdmLoopback) -> ccxt.Exchange:
    exchange = make_exchange(
        "binanceusdm",
        timeout_s=2.0,
        api_url=server.url,
        asynchronous=True,
        credentials={"apiKey": server.api_key, "secret": server.secret},
        allow_insecure_loopback=True,
    )
    exchange.enableRateLimit = False
    return binance_error_classes(exchange)


def run(server: BinanceUsdmLoopback, scenario, *, instruments=INSTRUMENTS):
    async def main():
        broker = PerpsBroker(client(server), instruments=instruments, config=FAST)
        try:
            return await scenario(broker)
        finally:
            await broker.close()

    return asyncio.run(main())


@pytest.fixture
def server():
    with BinanceUsdmLoopback(prices={"BTCUSDT": 30_000.0, "ETHUSDT": 2_000.0}, balances={"USDT": 1_000.0}) as srv:
        yield srv


def market(cid: str, side: str, qty: float, symbol: str = BTC, *, reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(cid, symbol, side, qty, reduce_only=reduce_only)


def trigger(cid: str, kind: OrderType, side: str, qty: float, at: float) -> OrderRequest:
    return OrderRequest(cid, BTC, side, qty, order_type=kind, trigger_price=at, reduce_only=True)


def test_leverage_and_margin_mode_are_set_once_before_the_first_order(server: BinanceUsdmLoopback) -> None:
    server.margin_type["ETHUSDT"] = "CROSSED"  # already what the config asks: "no need to change" counts as set

    async def scenario(broker: PerpsBroker):
        return [
            await broker.submit(market("b-1", "sell", 0.01)),
            await broker.submit(market("b-2", "sell", 0.01)),
            await broker.submit(market("e-1", "buy", 0.1, "ETH-USDT")),
        ]

    states = run(server, scenario)
    assert [s.status for s in states] == ["filled"] * 3
    settings = [r.split(" ")[1] for r in server.requests if r.startswith("POST")]
    assert settings == [
        "/fapi/v1/marginType", "/fapi/v1/leverage", "/fapi/v1/order", "/fapi/v1/order",
        "/fapi/v1/marginType", "/fapi/v1/leverage", "/fapi/v1/order",
    ]  # fmt: skip
    margin = [(c["symbol"], c["marginType"]) for c in server.calls("POST", "/fapi/v1/marginType")]
    leverage = [(c["symbol"], c["leverage"]) for c in server.calls("POST", "/fapi/v1/leverage")]
    assert margin == [("BTCUSDT", "ISOLATED"), ("ETHUSDT", "CROSSED")]
    assert leverage == [("BTCUSDT", "10"), ("ETHUSDT", "3")]
    assert server.margin_type == {"BTCUSDT": "ISOLATED", "ETHUSDT": "CROSSED"}
    assert server.leverage == {"BTCUSDT": 10, "ETHUSDT": 3}


def test_an_instrument_without_config_or_with_refused_settings_sends_no_entry(server: BinanceUsdmLoopback) -> None:
    """ETHUSDT holds an isolated long; the config asks for cross, which the venue refuses while a
    position exists (-4048): the entry is refused unsent, the reduce-only exit still goes out."""
    server.margin_type["ETHUSDT"] = "ISOLATED"
    server.positions["ETHUSDT"] = Position(amount=0.5, entry=2_000.0, isolated_wallet=0.5 * 2_000.0 / 3)

    async def scenario(broker: PerpsBroker):
        entry = await broker.submit(market("e-in", "buy", 0.1, "ETH-USDT"))
        exit_ = await broker.submit(market("e-out", "sell", 0.5, "ETH-USDT", reduce_only=True))
        return entry, exit_

    entry, exit_ = run(server, scenario)
    assert entry.status == "rejected" and "Margin type cannot be changed if there exists position." in entry.reason
    assert exit_.status == "filled" and server.positions["ETHUSDT"].amount == 0.0
    assert server.creates == {"e-out": 1}  # the entry never reached the order endpoint

    unlisted = run(server, lambda b: b.submit(market("b-x", "sell", 0.01)), instruments={})
    assert unlisted.status == "rejected" and "no PerpInstrument for BTC/USDT:USDT" in unlisted.reason
    assert "b-x" not in server.creates and not server.calls("POST", "/fapi/v1/leverage")[1:]


def test_a_short_is_opened_reported_with_its_liquidation_price_and_closed(server: BinanceUsdmLoopback) -> None:
    async def scenario(broker: PerpsBroker):
        opened = await broker.submit(market("s-1", "sell", 0.01))
        eth = await broker.submit(market("s-2", "sell", 0.3, "ETH-USDT"))
        server.trade("BTCUSDT", 29_000.0)
        held = await broker.positions()
        closed = await broker.submit(market("s-3", "buy", 0.01, reduce_only=True))
        again = await broker.submit(market("s-4", "buy", 0.01, reduce_only=True))  # nothing left to reduce
        return opened, eth, held, closed, again, await broker.positions([BTC]), await broker.balances()

    opened, eth, held, closed, again, after, balances = run(server, scenario)
    assert opened.status == "filled" and [(f.side, f.quantity, f.price) for f in opened.fills] == [
        ("sell", 0.01, 30_000.0)
    ]
    assert opened.fills[0].symbol == BTC and opened.fills[0].fee == pytest.approx(0.15)
    btc, ethp = sorted(held, key=lambda p: p.instrument.symbol)
    assert btc.instrument == InstrumentId("binanceusdm", "BTC/USDT:USDT")
    assert (btc.quantity, btc.entry_price, btc.mark_price) == (-0.01, 30_000.0, 29_000.0)
    assert (btc.margin_mode, btc.leverage) == ("isolated", 10.0)
    assert btc.unrealized_pnl == pytest.approx(10.0)
    # isolated short: WB = 0.01 * 30000 / 10 = 30; (30 + 0.01 * 30000) / (0.01 * 0.004 + 0.01)
    assert btc.liquidation_price == pytest.approx(330.0 / 0.01004, rel=1e-6)
    # cross short: WB = the wallet (1000 - 0.15 - 0.3 in fees) less BTC's isolated wallet (30) = 969.55;
    # (969.55 + 0.3 * 2000) / (0.3 * 0.005 + 0.3)
    assert (ethp.quantity, ethp.margin_mode, ethp.leverage) == (-0.3, "cross", 3.0)
    assert ethp.liquidation_price == pytest.approx(1569.55 / 0.3015, rel=1e-6)
    assert closed.status == "filled" and [(f.side, f.quantity, f.price) for f in closed.fills] == [
        ("buy", 0.01, 29_000.0)
    ]
    assert again.status == "rejected" and "ReduceOnly Order is rejected." in again.reason
    assert after == []
    # 1000 - 0.15 - 0.3 (opening fees) + 0.01 * (30000 - 29000) - 0.145 (closing fee) + the open ETH short's
    # unrealized PnL (0: its mark did not move)
    assert balances["USDT"] == pytest.approx(1_000.0 - 0.15 - 0.3 + 10.0 - 0.145)


def test_stop_and_take_profit_are_algo_orders_that_fire_on_the_trade_price(server: BinanceUsdmLoopback) -> None:
    stop = trigger("p-stop", OrderType.STOP, "buy", 0.01, 31_000.0)
    take = trigger("p-take", OrderType.TAKE_PROFIT, "buy", 0.01, 28_000.0)

    async def scenario(broker: PerpsBroker):
        await broker.submit(market("p-in", "sell", 0.01))
        placed = [await broker.submit(stop), await broker.submit(take)]
        listed = await broker.open_orders(BTC)
        too_late = await broker.submit(trigger("p-now", OrderType.STOP, "buy", 0.01, 29_000.0))
        server.trade("BTCUSDT", 31_100.0)
        fired = await broker.query(stop)
        canceled = await broker.cancel(take)
        return placed, listed, too_late, fired, canceled, await broker.positions()

    placed, listed, too_late, fired, canceled, held = run(server, scenario)
    assert [s.status for s in placed] == ["acknowledged", "acknowledged"]
    assert [(a["clientAlgoId"], a["orderType"], a["reduceOnly"]) for a in server.algo_book] == [
        ("p-stop", "STOP_MARKET", True),
        ("p-take", "TAKE_PROFIT_MARKET", True),
    ]
    assert {"p-stop", "p-take"} <= listed
    assert too_late.status == "rejected" and "Order would immediately trigger." in too_late.reason
    assert fired.status == "filled" and [(f.quantity, f.price) for f in fired.fills] == [(0.01, 31_100.0)]
    assert fired.venue_order_id == server.algo_book[0]["actualOrderId"] == "8000001"  # its trades' order
    assert canceled.status == "canceled" and server.algo_book[1]["algoStatus"] == "CANCELED"
    assert held == []
    assert [c["symbol"] for c in server.calls("POST", "/fapi/v1/order")] == ["BTCUSDT"]  # only the entry


def test_funding_is_reported_once_per_payment(server: BinanceUsdmLoopback, monkeypatch) -> None:
    """A short receives a positive rate and pays a negative one (``-amount x mark x rate``);
    commissions and realized PnL are other income; pages overlap on their boundary time."""
    monkeypatch.setattr("live.brokers.perps.FUNDING_PAGE", 2)
    t0 = 1_800_000_000_000

    async def scenario(broker: PerpsBroker):
        await broker.submit(market("f-1", "sell", 0.01))
        server.pay_funding("BTCUSDT", 0.0001, ts=t0 + 8 * 3_600_000)
        server.pay_funding("BTCUSDT", -0.0002, ts=t0 + 16 * 3_600_000)
        server.pay_funding("BTCUSDT", 0.0001, ts=t0 + 16 * 3_600_000)  # same time: only the id tells them apart
        first = await broker.funding_payments(BTC, since_ms=t0)
        server.pay_funding("BTCUSDT", 0.0003, ts=t0 + 24 * 3_600_000)
        return first, await broker.funding_payments(BTC, since_ms=t0)

    first, second = run(server, scenario)
    assert [p.amount for p in first] == pytest.approx([0.03, -0.06, 0.03])  # 0.01 x 30000 x rate
    assert len({p.id for p in first}) == 3 and all(p.asset == "USDT" for p in first)
    assert {p.instrument for p in first} == {InstrumentId("binanceusdm", "BTC/USDT:USDT")}
    assert [(p.amount, p.ts) for p in second] == [(pytest.approx(0.09), t0 + 24 * 3_600_000)]
    paid = [r for r in server.income if r["incomeType"] == "FUNDING_FEE"]
    assert sorted(p.id for p in [*first, *second]) == sorted(str(r["tranId"]) for r in paid)


REFUSALS = [  # (order, ccxt class with the fapi error map, Binance's message)
    (market("r-margin", "sell", 1.0), ccxt.InsufficientFunds, "Margin is insufficient."),
    (
        OrderRequest(
            "r-post", BTC, "buy", 0.01, order_type=OrderType.LIMIT, price=30_100.0, time_in_force=TimeInForce.POST_ONLY
        ),
        ccxt.OrderNotFillable,
        "the Post Only order will be rejected",
    ),
    (market("r-reduce", "buy", 0.01, reduce_only=True), ccxt.InvalidOrder, "ReduceOnly Order is rejected."),
    (
        trigger("r-trigger", OrderType.STOP, "sell", 0.01, 30_500.0),
        ccxt.OrderImmediatelyFillable,
        "immediately trigger",
    ),
    (market("r-small", "sell", 0.001, "ETH-USDT"), ccxt.InvalidOrder, "notional must be no smaller than 5"),
]


@pytest.mark.parametrize(("order", "expected", "message"), REFUSALS, ids=[r[0].client_order_id for r in REFUSALS])
def test_each_refusal_is_rejected_with_the_venues_reason(server: BinanceUsdmLoopback, order, expected, message) -> None:
    """What ccxt raises (its binance ``linear`` map: -2019, -5022, -2022, -2021, -4164) and what
    the broker makes of it: rejected with that message, sent once."""

    async def raw():
        exchange = client(server)
        try:
            await exchange.load_markets()
            params: dict = {"clientOrderId": f"{order.client_order_id}-raw"}
            if order.reduce_only:
                params["reduceOnly"] = True
            if order.trigger_price:
                params["triggerPrice"] = order.trigger_price
            if order.time_in_force == TimeInForce.POST_ONLY:
                params["postOnly"] = True
            kind = "limit" if order.price else "market"
            with pytest.raises(ccxt.BaseError) as raised:
                await exchange.create_order(
                    perp_symbol(order.symbol), kind, order.side, order.quantity, order.price, params
                )
            return raised.value
        finally:
            await exchange.close()

    error = asyncio.run(raw())
    assert type(error) is expected and message in str(error)
    state = run(server, lambda b: b.submit(order))
    assert state.status == "rejected" and message in state.reason
    assert server.creates == {f"{order.client_order_id}-raw": 1, order.client_order_id: 1}  # each sent once
    assert not server.book and not server.algo_book


def test_a_rate_limited_create_is_rejected_not_retried(server: BinanceUsdmLoopback) -> None:
    server.order_faults[1] = rate_limited()
    state = run(server, lambda b: b.submit(market("q-1", "sell", 0.01)))
    assert state.status == "rejected" and state.reason.startswith("venue refused")
    assert server.creates == {"q-1": 1} and not server.book


def test_a_post_only_limit_rests_fills_in_part_and_is_canceled(server: BinanceUsdmLoopback) -> None:
    order = OrderRequest(
        "l-1", BTC, "sell", 0.03, order_type=OrderType.LIMIT, price=30_500.0, time_in_force=TimeInForce.POST_ONLY
    )

    async def scenario(broker: PerpsBroker):
        placed = await broker.submit(order)
        server.trade("BTCUSDT", 30_600.0, qty=0.01)  # through the offer: 0.01 at its price, as a maker
        part = await broker.query(order)
        return placed, part, await broker.cancel(order), await broker.positions()

    placed, part, canceled, held = run(server, scenario)
    sent = server.calls("POST", "/fapi/v1/order")[0]
    assert (sent["type"], sent["timeInForce"], sent["price"]) == ("LIMIT", "GTX", "30500")
    assert placed.status == "acknowledged"
    assert part.status == "partially_filled" and [(f.quantity, f.price) for f in part.fills] == [(0.01, 30_500.0)]
    assert part.fills[0].fee == pytest.approx(0.01 * 30_500 * 0.0002)  # maker
    assert canceled.status == "canceled" and [f.trade_id for f in canceled.fills] == [f.trade_id for f in part.fills]
    assert [(p.quantity, p.entry_price) for p in held] == [(-0.01, 30_500.0)]


def test_replace_on_perpetuals_is_a_cancel_then_one_create(server: BinanceUsdmLoopback) -> None:
    def bid(cid: str, price: float) -> OrderRequest:
        return OrderRequest(cid, BTC, "buy", 0.01, order_type=OrderType.LIMIT, price=price)

    async def scenario(broker: PerpsBroker):
        await broker.submit(bid("m-1", 29_000.0))
        return await broker.replace(bid("m-1", 29_000.0), bid("m-2", 29_500.0))

    old, new = run(server, scenario)
    assert old.status == "canceled" and new.status == "acknowledged"
    assert [c["newClientOrderId"] for c in server.calls("POST", "/fapi/v1/order")] == ["m-1", "m-2"]
    assert [c["origClientOrderId"] for c in server.calls("DELETE", "/fapi/v1/order")] == ["m-1"]
