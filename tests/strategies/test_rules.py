"""ThresholdRule.last_signals (the live decision's rule on a tail) against the rule over the whole history."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tradeloop.backtest import sweep_kernel
from tradeloop.strategies import compiled, rules
from tradeloop.strategies.rules import ThresholdRule


@pytest.mark.parametrize("rule", [ThresholdRule(), ThresholdRule(entry=1.0, exit=-0.5, allow_short=True)])
def test_last_signals_read_the_last_zone_of_each_side(rule: ThresholdRule) -> None:
    """On a whole history the last row's signal is the rule's; on a tail it is whenever settled."""
    rng = np.random.default_rng(3)
    scores = rng.choice(
        [-2.0, -0.7, -0.2, 0.0, 0.3, 0.8, 1.5, np.nan], size=4000, p=[0.04, 0.04, 0.3, 0.1, 0.3, 0.1, 0.04, 0.08]
    )
    ends = np.sort(rng.choice(np.arange(1, 4000), size=300, replace=False))
    starts = np.maximum(ends - rng.integers(1, 12, size=ends.size), 0)
    full = rule.apply_grouped(scores, np.zeros(scores.size, dtype=np.int64))
    flags, settled = rule.last_signals(scores, starts, ends)
    whole, _ = rule.last_signals(scores, np.zeros_like(ends), ends)
    np.testing.assert_array_equal(whole, full[ends])
    assert 20 < settled.sum() < ends.size  # both kinds of tail occur
    np.testing.assert_array_equal(flags[settled], full[ends][settled])


@pytest.mark.parametrize("module", [compiled, sweep_kernel], ids=lambda m: m.__name__)
def test_the_compiled_loops_digests_follow_rules_py(module) -> None:
    digest = hashlib.sha256(Path(rules.__file__).read_bytes()).hexdigest()
    assert module.RULES_SHA256 == digest, (
        f"tradeloop/strategies/rules.py changed, and numba's cache of {module.__name__} only sees its own file: "
        f'set RULES_SHA256 = "{digest}" in {Path(module.__file__).name} so it recompiles'
    )
