# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Adaptive thresholds (training)
#
# A strategy fires entries; not all of them pay after costs. Each entry is labelled with
# the triple-barrier method (volatility-scaled target and stop, time limit) and a
# calibrated classifier learns which entries pay (*meta-labeling*). We act only when its
# probability clears the break-even win rate **p\* = (L + c) / (W + L)** plus a learned
# margin.
#
# optuna searches the strategy and barrier parameters, each trial scored by purged
# walk-forward (folds cut by time, training labels that overlap the test period dropped,
# plus an embargo) under the **retrain policy**: inside every test period the model is
# refit at the policy's cadence, ages and goes stale exactly as the live engine would, so
# the out-of-sample equity is what live trading would have produced. Trials whose
# out-of-sample drawdown is worse than the limit are infeasible.
#
# One study per data version (its name ends with the candles' hash), warm-started with
# the champion's parameters, which are also re-evaluated on the same folds for the gate.
# The study is resumable from `study/journal.log` in `output_dir` (or `storage`).
#
# Outputs, all in `output_dir`: `model/`, `tuning.json`, `evaluation.npz`, `study/`.

# %% tags=["parameters"]
features_path = None  # None: the settings' research folder (TRADELOOP_DATA_DIR/research)
strategy = "sma_cross"
exchange = "coinbase"
timeframe = "4h"
n_trials = 20
max_drawdown = -0.5  # worst out-of-sample drawdown allowed (negative fraction)
seed = 0
storage = None
output_dir = None  # None: thresholds/ in the settings' research folder
until_ms = None  # research sees only candles before this time (ms); None: all
policy = {}  # RetrainPolicy fields; {}: the defaults
champion_params = None  # the incumbent champion's parameters, or None
workers = 1  # optuna worker processes sharing the study
fraction = 0.5  # share of equity per position, as the live session will size it
model = {}  # ModelChoice fields (model: logistic | hgb | auto, features, max_features); {}: the logistic model

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from tradeloop.research.model_choice import ModelChoice
from tradeloop.research.notebooks import research_paths
from tradeloop.research.policy import RetrainPolicy
from tradeloop.research.steps import candles_of, load_evaluation, train_thresholds
from tradeloop.research.tuning import TuningConfig

features_path = features_path or research_paths().features
output_dir = output_dir or research_paths().thresholds
candles = candles_of(pl.read_parquet(features_path))
if until_ms is not None:
    candles = candles.filter(pl.col("ts") < until_ms)
config = TuningConfig(
    strategy=strategy,
    n_trials=n_trials,
    max_drawdown=max_drawdown,
    seed=seed,
    policy=RetrainPolicy(**policy),
    workers=workers,
    fraction=fraction,
    model=ModelChoice(**model),
)
summary = train_thresholds(
    candles,
    config=config,
    exchange=exchange,
    timeframe=timeframe,
    output_dir=output_dir,
    storage=storage,
    champion_params=champion_params,
)
print(config.policy.describe())
print(f"model: {summary['model']}" + (" (searched: logistic, hgb)" if config.model.model == "auto" else ""))
pl.DataFrame(summary["folds"])

# %% [markdown]
# Out-of-sample Sharpe (per bar) of every trial: the spread is what the deflated Sharpe
# ratio discounts the winner by.

# %%
evaluation = load_evaluation(output_dir)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].hist(evaluation["trial_sharpes"], bins=20)
axes[0].set_title(f"{summary['n_trials']} trials: OOS Sharpe per bar")
axes[1].plot(np.cumprod(1 + evaluation["best_returns"]))
axes[1].set_title("best trial: out-of-sample equity under the retrain policy")
plt.show()

# %% [markdown]
# Permutation feature importance, out of sample: the chosen configuration refit on the events
# before the last 30% of event times (purged), each feature shuffled among the later events;
# importance is how much the Brier score worsens. `selected`: kept by the model's feature
# selection (all, unless it was trained with `max_features`).

# %%
from tradeloop.errors import ConfigError
from tradeloop.research.importance import holdout_importance
from tradeloop.research.steps import MODEL_DIR
from tradeloop.thresholds import ThresholdModel, meta_dataset

model = ThresholdModel.load(Path(output_dir) / MODEL_DIR)
events = meta_dataset(candles, model.strategy, barriers=model.barriers, features=model.features)
params = model.estimator.get_params()
try:
    importance = holdout_importance(
        events,
        model.strategy,
        model.barriers,
        features=model.features,
        estimator_params={"model": params["model"], "max_features": params["max_features"]},
        n_repeats=3,
    )
except ConfigError as exc:  # too few events to hold some out: say so, the model itself is trained
    importance = pl.DataFrame({"feature": [], "importance": []})
    print(f"no permutation importance: {exc}")
importance
