"""Search spaces for optuna: strategy parameters and triple-barrier parameters per strategy."""

from __future__ import annotations

from collections.abc import Callable

import optuna

from tradeloop.errors import ConfigError
from tradeloop.strategies import STRATEGIES, Strategy, get_strategy
from tradeloop.thresholds import BarrierConfig


def _sma(trial: optuna.Trial) -> dict:
    fast = trial.suggest_int("fast", 5, 40)
    return {"fast": fast, "slow": trial.suggest_int("slow", fast + 5, 160)}


def _momentum(trial: optuna.Trial) -> dict:
    return {"lookback": trial.suggest_int("lookback", 12, 120)}


def _mean_reversion(trial: optuna.Trial) -> dict:
    return {"window": trial.suggest_int("window", 12, 120)}


def _breakout(trial: optuna.Trial) -> dict:
    return {"window": trial.suggest_int("window", 10, 120)}


STRATEGY_SPACES: dict[str, Callable[[optuna.Trial], dict]] = {
    "sma_cross": _sma,
    "momentum": _momentum,
    "mean_reversion": _mean_reversion,
    "breakout": _breakout,
}


def suggest(trial: optuna.Trial, strategy: str, *, cost: float) -> tuple[Strategy, BarrierConfig]:
    """A strategy and barrier configuration for one trial."""
    if strategy not in STRATEGY_SPACES:
        raise ConfigError(f"strategy={strategy!r} has no search space; choose one of {sorted(STRATEGIES)}")
    params = STRATEGY_SPACES[strategy](trial)
    barriers = BarrierConfig(
        profit_mult=trial.suggest_float("profit_mult", 1.0, 4.0),
        stop_mult=trial.suggest_float("stop_mult", 0.5, 2.5),
        horizon=trial.suggest_int("horizon", 6, 60),
        cost=cost,
    )
    return get_strategy(strategy, **params), barriers


def params_of(strategy: Strategy, barriers: BarrierConfig) -> dict:
    return {
        "strategy": strategy.name,
        **strategy.model_dump(mode="json", exclude={"rule"}),
        **barriers.model_dump(mode="json", exclude={"cost", "vol_window"}),
    }
