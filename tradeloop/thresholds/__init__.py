"""Adaptive signal thresholds: triple-barrier labels, meta-labeling, break-even + margin,
online adaptation, and safe model artifacts."""

from tradeloop.thresholds.dataset import META_FEATURES, entry_events, meta_dataset
from tradeloop.thresholds.estimator import AdaptiveThreshold, break_even_probability
from tradeloop.thresholds.labels import BarrierConfig, triple_barrier_labels
from tradeloop.thresholds.model import ThresholdModel
from tradeloop.thresholds.model_doc import Universe
from tradeloop.thresholds.online import OnlineConfig, OnlineThreshold

__all__ = [
    "META_FEATURES",
    "AdaptiveThreshold",
    "BarrierConfig",
    "OnlineConfig",
    "OnlineThreshold",
    "ThresholdModel",
    "Universe",
    "break_even_probability",
    "entry_events",
    "meta_dataset",
    "triple_barrier_labels",
]
