"""The arbitrage scanner on crafted books (fees, the thinner side, stale quotes, lifetime) and
on real quotes of Binance and Kraken for BTC/USDT (tests/fixtures/arbitrage, MIT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradeloop.arbitrage import ArbitrageConfig, ArbitrageScanner, TopOfBook, quote
from tradeloop.errors import ConfigError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "arbitrage"
FEES = {"a": 0.001, "b": 0.001}


def top(
    venue: str, ts: int, *, bid: float, ask: float, bid_size: float = 1.0, ask_size: float = 1.0, symbol="BTC/USDT"
) -> TopOfBook:
    return TopOfBook(venue=venue, symbol=symbol, ts=ts, bid=bid, bid_size=bid_size, ask=ask, ask_size=ask_size)


def test_taker_fees_on_both_legs_make_a_gross_spread_unprofitable() -> None:
    buy, sell = top("a", 0, bid=99.9, ask=100.0), top("b", 0, bid=100.15, ask=100.2)
    costly = quote(buy, sell, ArbitrageConfig(taker_fees=FEES))
    assert costly.gross_bps == pytest.approx(15.0)
    assert costly.net_profit == pytest.approx(100.15 * 0.999 - 100.0 * 1.001)
    assert costly.net_bps == pytest.approx(-5.015, abs=1e-3)
    scanner = ArbitrageScanner(ArbitrageConfig(taker_fees=FEES))
    assert scanner.update(buy) == [] and scanner.update(sell) == []
    cheap = ArbitrageScanner(ArbitrageConfig(taker_fees={"a": 0.0005, "b": 0.0005}))
    cheap.update(buy)
    (event,) = cheap.update(sell)
    assert event.kind == "opened" and (event.opportunity.buy_venue, event.opportunity.sell_venue) == ("a", "b")
    assert event.opportunity.net_bps == pytest.approx((100.15 * 0.9995 - 100.0 * 1.0005) / 100.0 * 1e4)


def test_size_is_the_thinner_side_and_the_cap() -> None:
    buy, sell = top("a", 0, bid=99, ask=100, ask_size=2.0), top("b", 0, bid=101, ask=102, bid_size=0.5)
    assert quote(buy, sell, ArbitrageConfig(taker_fees=FEES)).size == 0.5
    capped = quote(buy, sell, ArbitrageConfig(taker_fees=FEES, max_size=0.2))
    assert capped.size == 0.2 and capped.net_profit == pytest.approx(0.2 * (101 * 0.999 - 100 * 1.001))


def test_an_opportunity_opens_changes_and_closes_with_its_duration() -> None:
    scanner = ArbitrageScanner(ArbitrageConfig(taker_fees=FEES, min_net_bps=1.0))
    kinds = []
    for quote_ in (
        top("a", 0, bid=99, ask=100), top("b", 0, bid=100.1, ask=100.3),  # 10 bps gross: not after fees
        top("b", 1_000, bid=100.5, ask=100.6),  # 50 bps gross, ~30 net: opens
        top("a", 1_500, bid=99, ask=100, ask_size=0.4),  # the same spread, less size: changes
        top("b", 1_800, bid=100.7, ask=100.8),  # better
        top("b", 4_000, bid=100.1, ask=100.2),  # gone: closes
    ):  # fmt: skip
        events = scanner.update(quote_)
        kinds += [(e.kind, e.opportunity) for e in events]
    assert [k for k, _ in kinds] == ["opened", "updated", "updated", "closed"]
    closed = kinds[-1][1]
    assert (closed.start_ts, closed.end_ts, closed.duration_ms) == (1_000, 4_000, 3_000)
    assert closed.size == 0.4 and closed.sell_price == 100.7
    assert closed.best_net_bps == pytest.approx((100.7 * 0.999 - 100 * 1.001) / 100 * 1e4)
    assert scanner.open_opportunities() == []


def test_a_stale_quote_takes_no_part_and_closes_what_it_held_open() -> None:
    scanner = ArbitrageScanner(ArbitrageConfig(taker_fees=FEES, max_quote_age_ms=2_000))
    scanner.update(top("b", 0, bid=101, ask=101.1))
    assert scanner.update(top("a", 5_000, bid=99, ask=100)) == []  # b's quote is 5 s old
    (opened,) = scanner.update(top("b", 5_100, bid=101, ask=101.1))
    assert opened.kind == "opened"
    (closed,) = scanner.update(top("a", 9_000, bid=99, ask=100))  # now b is 3.9 s behind
    assert closed.kind == "closed" and closed.opportunity.end_ts == 9_000
    assert scanner.update(top("a", 8_000, bid=1, ask=2)) == []  # older than the quote held: ignored


def test_a_transfer_costs_the_withdrawal_and_needs_its_fee() -> None:
    buy, sell = top("a", 0, bid=99, ask=100), top("b", 0, bid=101, ask=102)
    config = ArbitrageConfig(taker_fees=FEES, transfer=True, withdrawal_fees={"a": {"BTC": 0.005}})
    moved = quote(buy, sell, config)
    assert moved.net_profit == pytest.approx(101 * 0.999 - 100 * 1.001 - 0.005 * 100)
    with pytest.raises(ConfigError, match=r"withdrawal_fees\['b'\]\['BTC'\]"):
        quote(sell, buy, config)
    with pytest.raises(ConfigError, match="taker_fees has no fee for venue='c'"):
        quote(top("c", 0, bid=1, ask=2), sell, config)


def recorded() -> tuple[TopOfBook, TopOfBook]:
    """Binance's and Kraken's BTC/USDT tickers as ccxt parsed them (Kraken's bid size: its lot
    volume; its body has no time, so it takes Binance's: same-day captures, not simultaneous)."""
    data = json.loads((FIXTURES / "btc_usdt_tickers.json").read_text())["tickers"]
    b, k = data["binance"]["parsedResponse"], data["kraken"]["parsedResponse"]
    kraken_raw = data["kraken"]["httpResponse"]["result"]["XBTUSDT"]
    binance = TopOfBook(venue="binance", symbol=b["symbol"], ts=b["timestamp"], bid=b["bid"],
                        bid_size=b["bidVolume"], ask=b["ask"], ask_size=b["askVolume"])  # fmt: skip
    kraken = TopOfBook(venue="kraken", symbol=k["symbol"], ts=b["timestamp"], bid=k["bid"], ask=k["ask"],
                       bid_size=float(kraken_raw["b"][2]), ask_size=float(kraken_raw["a"][2]))  # fmt: skip
    return binance, kraken


def test_recorded_binance_and_kraken_quotes_cross_gross_but_not_after_their_fees() -> None:
    binance, kraken = recorded()
    assert kraken.bid > binance.ask  # Kraken bid 73380.6 over Binance ask 73369.84
    real_fees = ArbitrageConfig(taker_fees={"binance": 0.001, "kraken": 0.0026})  # ccxt markets' taker rates
    q = quote(binance, kraken, real_fees)
    assert q.gross_bps == pytest.approx((73380.6 - 73369.84) / 73369.84 * 1e4) and 1.4 < q.gross_bps < 1.5
    assert q.net_bps < -30 and q.size == pytest.approx(0.03321)  # Binance's ask is the thinner side
    scanner = ArbitrageScanner(real_fees)
    assert scanner.update(binance) == [] and scanner.update(kraken) == []
    free = ArbitrageScanner(ArbitrageConfig(taker_fees={"binance": 0.0, "kraken": 0.0}))
    free.update(binance)
    (event,) = free.update(kraken)
    o = event.opportunity
    assert (o.buy_venue, o.sell_venue, o.size) == ("binance", "kraken", pytest.approx(0.03321))
    assert o.net_profit == pytest.approx(0.03321 * (73380.6 - 73369.84))
    withdrawn = ArbitrageConfig(
        taker_fees={"binance": 0.0, "kraken": 0.0}, transfer=True, withdrawal_fees={"binance": {"BTC": 0.0002}}
    )
    assert quote(binance, kraken, withdrawn).net_profit < 0  # moving the coins costs more than the spread
