"""Features as polars expressions, evaluated per symbol, never looking ahead."""

from tradeloop.features import indicators
from tradeloop.features.candidates import CANDIDATE_FEATURES, MODEL_SPECS
from tradeloop.features.memory import TOLERANCE, Memory
from tradeloop.features.pipeline import DEFAULT_FEATURES, FeatureSpec, compute_features, feature_spec

__all__ = [
    "CANDIDATE_FEATURES",
    "DEFAULT_FEATURES",
    "MODEL_SPECS",
    "TOLERANCE",
    "FeatureSpec",
    "Memory",
    "compute_features",
    "feature_spec",
    "indicators",
]
