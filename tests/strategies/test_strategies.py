import polars as pl
import pytest

from tradeloop.errors import ConfigError
from tradeloop.strategies import STRATEGIES, SmaCross, ThresholdRule, get_strategy
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT


def signals(scores: list[float | None], rule: ThresholdRule) -> list[int]:
    frame = pl.DataFrame({"score": scores}, schema={"score": pl.Float64})
    return frame.select(rule.signal_expr("score"))["signal"].to_list()


def test_crossing_fires_once_and_not_on_first_bar() -> None:
    rule = ThresholdRule()
    assert signals([None, 0.5, 0.6, -0.1, -0.2, 0.3], rule) == [0, 0, 0, EXIT_LONG, 0, ENTER_LONG]


def test_exact_tie_neither_fires_nor_resets() -> None:
    rule = ThresholdRule()
    # -1 -> tie -> +1 crosses on the first strictly positive bar
    assert signals([-1.0, 0.0, 0.0, 1.0], rule) == [0, 0, 0, ENTER_LONG]
    # +1 -> tie -> +1 is no crossing at all
    assert signals([1.0, 0.0, 1.0], rule) == [0, 0, 0]
    # a difference within the relative tolerance is a tie
    assert signals([-1.0, 1e-14, 1.0], rule) == [0, 0, ENTER_LONG]


def test_hysteresis_and_shorts() -> None:
    rule = ThresholdRule(entry=1.0, exit=0.0, allow_short=True)
    out = signals([0.5, -0.5, 1.5, 0.5, -0.2, -1.5, -0.5, 0.2], rule)
    assert out == [0, 0, ENTER_LONG, 0, EXIT_LONG, ENTER_SHORT, 0, EXIT_SHORT]
    reversal = signals([1.0, -1.0], ThresholdRule(allow_short=True))
    assert reversal == [0, EXIT_LONG | ENTER_SHORT]


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="exit=1.0 is above entry=0.5"):
        ThresholdRule(entry=0.5, exit=1.0)
    with pytest.raises(ValueError, match="fast=30"):
        SmaCross(fast=30, slow=10)
    with pytest.raises(ConfigError, match="nope"):
        get_strategy("nope")
    with pytest.raises(ValueError):
        SmaCross(fast=10, slow=30, unknown=1)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_rolling_window_gives_the_same_decision(name: str, btc_4h: pl.DataFrame) -> None:
    """The live engine evaluates a rolling window; its last score equals the full-history one."""
    strategy = get_strategy(name)
    full = strategy.signals(btc_4h[:3000], by=None)
    window = strategy.warmup_bars + 2
    for end in (1000, 2000, 3000):
        part = strategy.signals(btc_4h[end - window : end], by=None)
        assert part["score"][-1] == pytest.approx(full["score"][end - 1], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_trades_real_data(name: str, btc_4h: pl.DataFrame) -> None:
    out = get_strategy(name).signals(btc_4h, by=None)
    entries = (out["signal"] & ENTER_LONG > 0).sum()
    exits = (out["signal"] & EXIT_LONG > 0).sum()
    assert entries > 20 and abs(entries - exits) <= 1


def test_multi_symbol_signals_equal_per_symbol(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> None:
    strategy = SmaCross(rule=ThresholdRule(allow_short=True))
    both = pl.concat([btc_4h.with_columns(symbol=pl.lit("BTC")), eth_4h.with_columns(symbol=pl.lit("ETH"))])
    out = strategy.signals(both)
    for sym, frame in (("BTC", btc_4h), ("ETH", eth_4h)):
        alone = strategy.signals(frame, by=None)["signal"]
        assert out.filter(pl.col("symbol") == sym)["signal"].equals(alone)


def test_parameters_are_checked_by_the_strategys_own_schema() -> None:
    assert get_strategy("sma_cross", fast="5", slow="20") == SmaCross(fast=5, slow=20)  # command-line text
    cases = {
        (("fast", "abc"),): ["strategy sma_cross", "fast='abc'", "valid integer", "bars in the fast moving average"],
        (("fats", "10"),): ["fats='10' is unknown", "did you mean 'fast'?", "rule, fast, slow"],
        (("fast", "0"),): ["fast='0'", "greater than or equal to 1"],
        (("fast", "40"), ("slow", "30")): ["fast=40 must be shorter than slow=30"],
    }
    for params, expected in cases.items():
        with pytest.raises(ConfigError) as info:
            get_strategy("sma_cross", **dict(params))
        assert info.value.exit_code == 2
        for text in expected:
            assert text in str(info.value), (text, str(info.value))
    with pytest.raises(ConfigError, match="window='x'"):
        get_strategy("breakout", window="x")
    with pytest.raises(ConfigError, match="did you mean 'lookback'"):
        get_strategy("momentum", lookbak=10)


def test_unknown_strategy_gets_a_did_you_mean() -> None:
    with pytest.raises(ConfigError, match="strategy='mean_revert' is unknown; did you mean 'mean_reversion'"):
        get_strategy("mean_revert")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_parameter_says_what_it_means(name: str) -> None:
    """The description is the fix-it text of a bad value's message."""
    fields = {k: f for k, f in STRATEGIES[name].model_fields.items() if k != "rule"}
    assert fields and all(f.description and "e.g." in f.description for f in fields.values())
