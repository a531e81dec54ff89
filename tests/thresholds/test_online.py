"""Online adaptation: closed labels only, bounded, capped steps, minimum samples, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from tradeloop.errors import ConfigError
from tradeloop.thresholds import OnlineConfig, OnlineThreshold


def feed(adapter: OnlineThreshold, n: int, seed: int = 0) -> list[float]:
    """Outcomes where only probabilities above 0.6 win."""
    rng = np.random.default_rng(seed)
    path = []
    for p in rng.uniform(0.3, 0.9, n):
        path.append(adapter.observe(float(p), 0.02 if p > 0.6 else -0.01))
    return path


def test_moves_toward_the_paying_threshold_in_capped_steps() -> None:
    cfg = OnlineConfig(min_samples=10, max_step=0.01, grid_width=0.2, discount=0.99)
    adapter = OnlineThreshold(0.45, config=cfg)
    path = feed(adapter, 400)
    steps = np.abs(np.diff([0.45, *path]))
    assert steps.max() <= 0.01 + 1e-12
    assert path[-1] > 0.55  # learned that low-probability trades lose
    assert path[:5] == [0.45] * 5  # nothing moves before min_samples outcomes


def test_open_trades_do_not_update_and_bounds_hold() -> None:
    cfg = OnlineConfig(min_samples=1, max_step=0.5, bounds=(0.4, 0.6))
    adapter = OnlineThreshold(0.5, config=cfg)
    assert adapter.observe(0.9, -1.0, closed=False) == 0.5 and adapter.updates == 0
    for _ in range(50):
        adapter.observe(0.99, 0.05)
    assert 0.4 <= adapter.threshold <= 0.6


def test_deterministic_and_state_round_trip() -> None:
    a, b = OnlineThreshold(0.5), OnlineThreshold(0.5)
    assert feed(a, 200, seed=4) == feed(b, 200, seed=4)
    c = OnlineThreshold.from_state(a.state())
    assert c.observe(0.7, 0.01) == a.observe(0.7, 0.01)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ConfigError, match="outside bounds"):
        OnlineThreshold(0.99)
    with pytest.raises(ConfigError, match="finite"):
        OnlineThreshold(0.5).observe(float("nan"), 0.1)
