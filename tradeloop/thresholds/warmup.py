"""The rolling window a decision needs: the fewest bars per symbol on which the decision on
the last bar (``tradeloop.thresholds.decide``) equals the decision on the whole history.

The live engine decides bar ``t`` on its last ``window_bars`` bars per symbol. That decision
reads, at bar ``t``:

* the strategy's score at ``t`` and at ``t - 1``: the threshold rule fires on a *crossing*,
  a bar in a zone whose previous bar was in the opposite one, so the score must be exact one
  bar back too (``score_memory.shift(1)``);
* the features the threshold model reads (``model.features``: the score and the
  ``MODEL_SPECS`` named there, engineered candidates included), at ``t``; an exponential one (RSI) needs enough bars to
  forget where the window starts, within ``tradeloop.features.TOLERANCE``.

``min_window_bars`` is the longest of these (``tradeloop.features.memory`` derives each from
the expression's description). On that window the scores and features equal the full
history's exactly (finite windows) or within the tolerance (exponential ones), so signals and
probabilities do too, bar for bar (``tests/thresholds/test_warmup.py``).

One limit no window removes: a rule with a neutral band (``exit < entry``, or a score tied
with a threshold) remembers the last zone the score was in, however long ago. A window
decides like the full history whenever the score was in a zone at some bar of the window's
warm part (after the score's warm-up); otherwise it misses the signal (a window never invents
one). On the bundled sample the longest neutral run is 74 bars (breakout), well inside the
~320 warm bars of a window that serves ``META_FEATURES``; the score's own window (``features=()``)
is too short for it, which ``tests/thresholds/test_warmup.py`` shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from tradeloop.features import MODEL_SPECS, TOLERANCE, FeatureSpec, feature_spec
from tradeloop.strategies import Strategy
from tradeloop.thresholds.dataset import META_FEATURES

SCORE = "score"  # the strategy's own column among a model's features


def min_window_bars(
    strategy: Strategy,
    features: Sequence[str] = META_FEATURES,
    *,
    tol: float = TOLERANCE,
    specs: Sequence[FeatureSpec] = MODEL_SPECS,
) -> int:
    """The smallest rolling window (bars per symbol, the decided bar included) on which the
    decision on the last bar equals the decision on the full history.

    Parameters
    ----------
    strategy:
        Whose score and crossing rule decide (its ``score_memory``).
    features:
        What the threshold model reads (``ThresholdModel.features``); ``"score"`` is the
        strategy's, every other name a feature of ``specs``.
    tol:
        Relative tolerance for exponential features (see ``tradeloop.features.memory``).

    Raises
    ------
    ConfigError
        A feature name that ``specs`` does not define.
    """
    need = strategy.score_memory.shift(1).exact_bars(tol)  # the crossing compares t with t - 1
    for name in features:
        if name != SCORE:
            need = max(need, feature_spec(name, specs).exact_bars(tol))
    return need


def window_needs(
    strategy: Strategy,
    features: Sequence[str] = META_FEATURES,
    *,
    tol: float = TOLERANCE,
    specs: Sequence[FeatureSpec] = MODEL_SPECS,
) -> dict[str, int]:
    """What ``min_window_bars`` takes the maximum of, by name (for messages and docs)."""
    needs = {f"{strategy.name} score and the bar before": strategy.score_memory.shift(1).exact_bars(tol)}
    needs |= {name: feature_spec(name, specs).exact_bars(tol) for name in features if name != SCORE}
    return needs
