"""Strategies: a score per bar and a threshold rule, shared by backtest and live engine."""

from tradeloop.errors import ConfigError
from tradeloop.strategies.base import Strategy
from tradeloop.strategies.library import Breakout, MeanReversion, Momentum, SmaCross
from tradeloop.strategies.rules import ThresholdRule

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (SmaCross, Momentum, MeanReversion, Breakout)
}


def get_strategy(name: str, **params: object) -> Strategy:
    """Build a strategy by name, e.g. ``get_strategy("sma_cross", fast=10, slow=30)``."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ConfigError(
            f"strategy={name!r} is unknown; choose one of {', '.join(sorted(STRATEGIES))}"
        ) from None
    return cls(**params)


__all__ = [
    "STRATEGIES",
    "Breakout",
    "MeanReversion",
    "Momentum",
    "SmaCross",
    "Strategy",
    "ThresholdRule",
    "get_strategy",
]
