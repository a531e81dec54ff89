"""Champion and challengers, live: the sequential test on paired per-bar returns, the
challengers' evidence in the operational database, and promotion from that evidence through
the promotion gate's checks and the registry (``live.shadow`` runs the challengers)."""

from tradeloop.challengers.sequential import SequentialConfig, Standing, newey_west_lags, standing, statistic_path

__all__ = ["SequentialConfig", "Standing", "newey_west_lags", "standing", "statistic_path"]
