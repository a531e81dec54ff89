"""Features as polars expressions, evaluated per symbol, never looking ahead."""

from tradeloop.features import indicators
from tradeloop.features.pipeline import DEFAULT_FEATURES, FeatureSpec, compute_features

__all__ = ["DEFAULT_FEATURES", "FeatureSpec", "compute_features", "indicators"]
