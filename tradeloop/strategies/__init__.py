"""Strategies: a score per bar and a threshold rule, shared by backtest and live engine."""

import difflib

from pydantic import ValidationError

from tradeloop.errors import ConfigError, config_error
from tradeloop.strategies.base import Strategy
from tradeloop.strategies.library import Breakout, MeanReversion, Momentum, SmaCross
from tradeloop.strategies.rules import ThresholdRule

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (SmaCross, Momentum, MeanReversion, Breakout)}


def get_strategy(name: str, **params: object) -> Strategy:
    """Build a strategy by name, e.g. ``get_strategy("sma_cross", fast=10, slow=30)``.

    ``params`` are validated by the strategy's own schema (its pydantic fields, so text such
    as ``"10"`` from a command line is converted there). Raises :class:`ConfigError` naming
    the parameter, its value and the fix, with a did-you-mean for unknown names.
    """
    try:
        cls = STRATEGIES[name]
    except KeyError:
        near = difflib.get_close_matches(str(name), list(STRATEGIES), n=1)
        raise ConfigError(
            f"strategy={name!r} is unknown; "
            + (f"did you mean {near[0]!r}? " if near else "")
            + f"choose one of {', '.join(sorted(STRATEGIES))}"
        ) from None
    try:
        return cls.model_validate(params)
    except ValidationError as exc:
        raise config_error(exc, what=f"strategy {name}", model=cls) from None


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
