"""ATR stops and limit entries on hand-made bars: expectations worked out by hand in the comments.

Each case runs on the compiled kernel and on the plain reference
(``tradeloop.backtest.reference.single_symbol_reference``), which share no code.
"""

import numpy as np
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.backtest.reference import single_symbol_reference
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT

H = 3_600_000
Row = tuple[float, float, float, float, int]  # open, high, low, close, signal
FLAT: Row = (100, 100, 100, 100, 0)
# window 2: TR(bar 1) = max(102-100, |102-100|, |100-100|) = 2, TR(bar 2) = max(103-99, |103-101|, |99-101|) = 4,
# so the first ATR, at bar 2 (the decision bar), is (2 + 4) / 2 = 3
WARM: list[Row] = [(100, 101, 99, 100, 0), (100, 102, 100, 101, 0), (101, 103, 99, 100, ENTER_LONG)]
BUY_AT_100: Row = (100, 100, 100, 100, ENTER_LONG)  # limit_offset=0.01 -> buy limit at 99
SELL_AT_100: Row = (100, 100, 100, 100, ENTER_SHORT)  # limit_offset=0.01 -> sell limit at 101


def frame(rows: list[Row], symbol: str = "X") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [i * H for i in range(len(rows))],
            "symbol": [symbol] * len(rows),
            **{name: [float(r[i]) for r in rows] for i, name in enumerate(("open", "high", "low", "close"))},
            "volume": [1.0] * len(rows),
            "signal": [int(r[4]) for r in rows],
        },
        schema_overrides={"signal": pl.Int8},
    )


def mirror(rows: list[Row]) -> list[Row]:
    """Prices reflected around 100 (p -> 200 - p), longs become shorts."""
    swap = {ENTER_LONG: ENTER_SHORT, ENTER_SHORT: ENTER_LONG, EXIT_LONG: EXIT_SHORT, EXIT_SHORT: EXIT_LONG}
    out = []
    for o, h, lo, c, s in rows:
        flags = sum(v for k, v in swap.items() if s & k)
        out.append((200 - o, 200 - lo, 200 - h, 200 - c, flags))
    return out


@pytest.fixture(params=["kernel", "reference"])
def run(request):
    """``run(rows, **config) -> list of trades`` as dicts with bar indexes, on the engine under test."""

    def kernel(rows: list[Row], **cfg) -> list[dict]:
        config = BacktestConfig(**{"fee_rate": 0.0, "init_cash": 1000.0, "atr_window": 2, **cfg})
        trades = run_backtest(frame(rows), config, timeframe="1h").trades.sort("entry_ts")
        return [
            {**t, "entry_bar": t["entry_ts"] // H, "exit_bar": t["exit_ts"] // H, "reason": t["exit_reason"]}
            for t in trades.iter_rows(named=True)
        ]

    def reference(rows: list[Row], **cfg) -> list[dict]:
        config = BacktestConfig(**{"fee_rate": 0.0, "init_cash": 1000.0, "atr_window": 2, **cfg})
        cols = [np.array([float(r[i]) for r in rows]) for i in range(4)]
        trades, _ = single_symbol_reference(
            *cols,
            np.array([r[4] for r in rows]),
            init_cash=config.init_cash,
            fee=config.fee_rate,
            slippage=config.slippage,
            fraction=config.fraction,
            stop_loss=config.stop_loss,
            take_profit=config.take_profit,
            trailing_stop=config.trailing_stop,
            atr_stop=config.atr_stop,
            atr_trailing=config.atr_trailing,
            atr_window=config.atr_window,
            limit_offset=config.limit_offset if config.entry_order == "limit" else None,
            limit_ttl=config.limit_ttl_bars,
            maker_fee=config.maker_fee_rate,
        )
        return [
            {
                "side": t.side,
                "entry_bar": t.entry_bar,
                "exit_bar": t.exit_bar,
                "qty": t.qty,
                "entry_price": t.entry_price,
                "exit_price": t.exit_price,
                "fees": t.fees,
                "reason": t.reason,
            }
            for t in trades
        ]

    return {"kernel": kernel, "reference": reference}[request.param]


def exit_of(trades: list[dict]) -> tuple[int, float, str]:
    assert len(trades) == 1
    t = trades[0]
    return t["exit_bar"], pytest.approx(t["exit_price"]), t["reason"]


# ------------------------------------------------------------------------------------------ ATR stops
def test_atr_stop_is_fixed_at_the_decision_bar_atr(run) -> None:
    # entry at bar 3's open, 100; stop = 100 - 2 * ATR(bar 2) = 100 - 2 * 3 = 94.
    # Bar 3's TR is 10, so ATR(bar 3) = (3 + 10) / 2 = 6.5: a stop moving with ATR would sit at 87 and not fill.
    rows = [*WARM, (100, 110, 100, 109, 0), (95, 96, 93, 94, 0), FLAT]
    assert exit_of(run(rows, atr_stop=2.0)) == (4, 94.0, "stop_loss")
    # a gap below the stop fills at the open
    rows = [*WARM, (100, 110, 100, 109, 0), (90, 92, 88, 91, 0), FLAT]
    assert exit_of(run(rows, atr_stop=2.0)) == (4, 90.0, "stop_loss")


def test_atr_trailing_uses_the_previous_bar_atr_and_previous_highs(run) -> None:
    # bar 3: entry 100, level 100 - 1 * ATR(bar 2) = 97, low 99 holds; peak -> 104; TR 5, ATR(bar 3) = (3 + 5) / 2 = 4.
    # bar 4: level 104 - 4 = 100, low 99.9 -> exit at 100. (With bar 4's own ATR, (4 + 5.1) / 2 = 4.55, the level
    # would be 99.45 and hold; with bar 4's high in the peak it would be 101; with the entry ATR 3, 101.)
    rows = [*WARM, (100, 104, 99, 103, 0), (103, 105, 99.9, 101, 0), FLAT]
    assert exit_of(run(rows, atr_trailing=1.0)) == (4, 100.0, "trailing_stop")
    # the short, mirrored: exit at 200 - 100 = 100, from the trough 96 plus ATR 4
    trades = run(mirror(rows), atr_trailing=1.0)
    assert exit_of(trades) == (4, 100.0, "trailing_stop") and trades[0]["side"] == "short"


@pytest.mark.parametrize(
    ("options", "price", "reason"),
    [
        ({"stop_loss": 0.05}, 95.0, "stop_loss"),  # 95 is above the ATR stop 94: the percent stop wins
        ({"stop_loss": 0.07}, 94.0, "stop_loss"),  # 93 is below 94: the ATR stop wins
        ({"trailing_stop": 0.05}, 95.95, "trailing_stop"),  # peak 101 after bar 3: 101 * 0.95 = 95.95 > 94
        # ATR trailing: ATR(bar 3) = (3 + 2) / 2 = 2.5, peak 101 -> 98.5, above 95 and 94
        ({"stop_loss": 0.05, "atr_trailing": 1.0}, 98.5, "trailing_stop"),
    ],
)
def test_the_tightest_of_percent_and_atr_stops_wins(run, options: dict, price: float, reason: str) -> None:
    rows = [*WARM, (100, 101, 99, 100, 0), (100, 100, 93.5, 95, 0), FLAT]
    assert exit_of(run(rows, atr_stop=2.0, **options)) == (4, price, reason)


def test_short_atr_stop_is_mirrored(run) -> None:
    # short at 100, stop 100 + 2 * 3 = 106; bar 4 reaches 106.5
    rows = mirror([*WARM, (100, 101, 99, 100, 0), (100, 100, 93.5, 95, 0), FLAT])
    assert exit_of(run(rows, atr_stop=2.0)) == (4, 106.0, "stop_loss")


def test_atr_stops_are_off_while_the_atr_warms_up(run) -> None:
    # decided at bar 0: no ATR yet (window 2: the first is at bar 2), so no ATR stop for this position;
    # at bar 2 the previous bar's ATR (bar 1) is still NaN, so no ATR trailing either
    rows = [BUY_AT_100, FLAT, (100, 100, 50, 60, 0)]
    trades = run(rows, atr_stop=0.5, atr_trailing=0.5)
    assert [t["reason"] for t in trades] == ["open"]


# ------------------------------------------------------------------------------------------ limit entries
LIMIT = {"entry_order": "limit", "limit_offset": 0.01}


@pytest.mark.parametrize(
    ("bar", "fill"),
    [
        ((100, 101, 99, 100, 0), None),  # the low touches 99: last in the queue, no fill
        ((100, 101, 98.5, 100, 0), 99.0),  # trades through: fills at the limit
        ((98, 99, 97, 98.5, 0), 98.0),  # opens below the limit: fills at the (better) open
    ],
)
def test_limit_buy_queue_rule(run, bar: Row, fill: float | None) -> None:
    trades = run([BUY_AT_100, bar, FLAT], **LIMIT)
    if fill is None:
        assert trades == []
    else:
        (t,) = trades
        assert t["entry_bar"] == 1 and t["entry_price"] == pytest.approx(fill)
        assert t["qty"] == pytest.approx(1000 / 99)  # fixed at decision: equity / limit price, not / fill


@pytest.mark.parametrize(
    ("bar", "fill"),
    [((100, 101, 99, 100, 0), None), ((100, 101.5, 99, 100, 0), 101.0), ((102, 103, 101, 102, 0), 102.0)],
)
def test_limit_sell_queue_rule(run, bar: Row, fill: float | None) -> None:
    trades = run([SELL_AT_100, bar, FLAT], **LIMIT)
    assert [t["entry_price"] for t in trades] == ([] if fill is None else [pytest.approx(fill)])
    assert all(t["side"] == "short" for t in trades)


def test_limit_expires_after_its_ttl(run) -> None:
    rows = [BUY_AT_100, (100, 101, 99.5, 100, 0), (100, 100, 98, 99, 0), FLAT]
    assert run(rows, **LIMIT) == []  # ttl 1: bar 1 only
    (t,) = run(rows, **LIMIT, limit_ttl_bars=2)
    assert t["entry_bar"] == 2 and t["entry_price"] == pytest.approx(99.0)


def test_limit_fill_pays_the_maker_fee_and_no_slippage(run) -> None:
    rows = [BUY_AT_100, (100, 101, 98.5, 100, EXIT_LONG), (110, 110, 110, 110, 0)]
    (t,) = run(rows, **LIMIT, fraction=0.5, fee_rate=0.002, maker_fee_rate=0.001, slippage=0.01)
    qty = 0.5 * 1000 / 99  # cash cap 1000 / (99 * 1.001) is larger
    assert t["qty"] == pytest.approx(qty) and t["entry_price"] == pytest.approx(99.0)
    assert t["exit_price"] == pytest.approx(110 * 0.99)  # the exit is a market order: slippage
    assert t["fees"] == pytest.approx(qty * 99 * 0.001 + qty * 110 * 0.99 * 0.002)
    # full fraction: the cash at the fill caps it, fee included
    (t,) = run(rows, **LIMIT, fee_rate=0.002, maker_fee_rate=0.001)
    assert t["qty"] == pytest.approx(1000 / (99 * 1.001))


def test_a_new_signal_cancels_or_replaces_the_resting_order(run) -> None:
    rows = [BUY_AT_100, (100, 101, 99.5, 100, EXIT_LONG), (100, 100, 90, 95, 0), FLAT]
    assert run(rows, **LIMIT, limit_ttl_bars=3) == []
    # a new entry decided at 104 replaces it: 104 * 0.99 = 102.96, which bar 2's low of 100 trades through
    rows = [BUY_AT_100, (100, 105, 99.5, 104, ENTER_LONG), (104, 104, 100, 101, 0), FLAT]
    (t,) = run(rows, **LIMIT, limit_ttl_bars=3)
    assert t["entry_bar"] == 2 and t["entry_price"] == pytest.approx(102.96)
    assert t["qty"] == pytest.approx(1000 / 102.96)


def test_on_the_fill_bar_the_stop_counts_but_not_the_take_profit_or_the_high(run) -> None:
    # fill at 99; stop 99 * 0.97 = 96.03 is hit by the same bar's low of 95
    rows = [BUY_AT_100, (100, 112, 95, 100, 0), FLAT]
    assert exit_of(run(rows, **LIMIT, stop_loss=0.03, take_profit=0.1)) == (1, 96.03, "stop_loss")
    # take-profit 108.9: the fill bar's high 112 does not count, the next bar's 109 does
    rows = [BUY_AT_100, (100, 112, 98, 100, 0), (100, 109, 99, 105, 0), FLAT]
    assert exit_of(run(rows, **LIMIT, take_profit=0.1)) == (2, 108.9, "take_profit")
    # the trailing peak starts at the fill, 99 (not the bar's 112): 99 * 0.95 = 94.05 holds against a low of 95
    rows = [BUY_AT_100, (100, 112, 98.5, 100, 0), (100, 101, 95, 96, 0), FLAT]
    assert [t["reason"] for t in run(rows, **LIMIT, trailing_stop=0.05)] == ["open"]


def test_exits_stay_market_orders_in_a_limit_reversal(run) -> None:
    rows = [
        BUY_AT_100,
        (100, 101, 98, 100, 0),  # long at 99
        (100, 100, 100, 100, EXIT_LONG | ENTER_SHORT),  # equity 1000 / 99 * 100
        (100, 101.5, 99, 100, 0),  # the long exits at the open, 100; the short limit at 101 fills
        FLAT,
    ]
    long, short = run(rows, **LIMIT)
    assert (long["exit_bar"], long["exit_price"], long["reason"]) == (3, 100.0, "signal")
    assert short["side"] == "short" and short["entry_bar"] == 3 and short["entry_price"] == pytest.approx(101.0)
    assert short["qty"] == pytest.approx(1000 / 99 * 100 / 101)


# ------------------------------------------------------------------------------------------ kernel only
def test_limit_ttl_counts_the_symbol_candles_only() -> None:
    a = frame([BUY_AT_100, FLAT, FLAT, FLAT], "A")
    # B has no candle at bar 1: its order (decided at bar 0) lives on bar 2, its next candle, and fills there
    b = frame([BUY_AT_100, FLAT, (100, 100, 98, 99, 0), FLAT], "B").filter(pl.col("ts") != H)
    config = BacktestConfig(fee_rate=0.0, init_cash=1000.0, cash_sharing=False, **LIMIT)
    trades = run_backtest(pl.concat([a, b]), config, timeframe="1h").trades
    assert trades["symbol"].to_list() == ["B"] and trades["entry_ts"].to_list() == [2 * H]


def test_limit_fills_share_cash_in_symbol_order() -> None:
    a = frame([BUY_AT_100, (100, 100, 98, 99, 0), FLAT], "A")
    b = frame([BUY_AT_100, (100, 100, 98, 99, 0), FLAT], "B")
    config = BacktestConfig(fee_rate=0.0, init_cash=1000.0, fraction=0.8, **LIMIT)
    trades = run_backtest(pl.concat([a, b]), config, timeframe="1h").trades.sort("symbol")
    # A: 0.8 * 1000 / 99 units at 99 (800 spent); B wants as many but gets what the 200 left buys
    assert trades["qty"].to_list() == pytest.approx([800 / 99, 200 / 99])


def test_config_names_what_to_set() -> None:
    with pytest.raises(ValueError, match="entry_order='limit'"):
        BacktestConfig(limit_offset=0.01)
    with pytest.raises(ValueError, match="atr_window"):
        BacktestConfig(atr_window=0)
    with pytest.raises(ValueError, match="atr_trailing"):
        BacktestConfig(atr_trailing=-1.0)
    config = BacktestConfig(entry_order="limit", limit_offset=0.002, atr_stop=2.0, atr_window=10)
    assert BacktestConfig(**config.model_dump()) == config  # stored session configs load back
