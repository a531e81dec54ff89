"""Permutation feature importance of a threshold model, measured out of sample.

The model is refit on the events whose labels closed before the last ``holdout`` share of
event times (the same purge as the walk-forward: a training label ends before the held-out
period starts), then each feature it reads is shuffled ``n_repeats`` times among the held-out
events; its importance is how much the Brier score worsens on average (scikit-learn's
``permutation_importance`` with ``neg_brier_score``). Positive: the model relies on it out of
sample; near zero or negative: noise, or a feature its selection dropped (``selected``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from sklearn.inspection import permutation_importance

from tradeloop.errors import ConfigError
from tradeloop.research.walkforward import fit_threshold
from tradeloop.strategies import Strategy
from tradeloop.thresholds import BarrierConfig


def holdout_importance(
    events: pl.DataFrame,
    strategy: Strategy,
    barriers: BarrierConfig,
    *,
    features: Sequence[str],
    estimator_params: dict | None = None,
    holdout: float = 0.3,
    n_repeats: int = 5,
    random_state: int = 0,
) -> pl.DataFrame:
    """One row per feature: ``feature``, ``importance`` (mean Brier worsening), ``std``, ``selected``,
    sorted by importance. ``events``: ``meta_dataset`` rows with ``features``, time-ordered.

    Raises
    ------
    ConfigError
        ``holdout`` outside (0, 1), or too few events on either side of the cut.
    """
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"holdout={holdout}: give the held-out share of events, in (0, 1)")
    cut = int(events["ts"].quantile(1.0 - holdout) or 0)
    train, test = events.filter(pl.col("t1") < cut), events.filter(pl.col("ts") >= cut)
    if train.height < 20 or test.height < 20 or test["label"].n_unique() < 2:
        raise ConfigError(
            f"{train.height} training and {test.height} held-out events (both outcomes needed): too few for "
            "permutation importance; use more data or a smaller holdout"
        )
    model = fit_threshold(train, strategy, barriers, estimator_params=estimator_params, features=features)
    scores = permutation_importance(
        model.estimator,
        test.select(features).to_numpy(),
        test["label"].to_numpy(),
        scoring="neg_brier_score",
        n_repeats=n_repeats,
        random_state=random_state,
    )
    support = getattr(model.estimator, "support_", None)
    selected = np.ones(len(features), dtype=bool) if support is None else np.asarray(support, dtype=bool)
    return pl.DataFrame(
        {
            "feature": list(features),
            "importance": scores.importances_mean,
            "std": scores.importances_std,
            "selected": selected,
        }
    ).sort("importance", descending=True)
