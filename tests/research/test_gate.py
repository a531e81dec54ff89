"""The promotion gate: every check carries its number and its bar, and each bar can fail."""

from __future__ import annotations

import numpy as np
import pytest

from tradeloop.research.gate import GateConfig, evaluate_gate
from tradeloop.research.walkforward import max_drawdown_of

PPY = 2190.0  # 4h bars a year


def returns(mean: float, sd: float = 0.01, n: int = 4000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, n)


def folds(*trades: int) -> list[dict]:
    return [{"index": i, "trades": t} for i, t in enumerate(trades)]


def gate(
    candidate: np.ndarray,
    *,
    champion: float | None = None,
    trades=(10, 10, 10, 10),
    trial_sharpes=None,
    matrix=None,
    **config,
) -> dict:
    trial_sharpes = np.array([0.02, 0.021, 0.019]) if trial_sharpes is None else trial_sharpes
    matrix = np.column_stack([candidate, returns(0.0, n=candidate.size, seed=1)]) if matrix is None else matrix
    report = evaluate_gate(
        candidate_returns=candidate,
        folds=folds(*trades),
        trial_sharpes=trial_sharpes,
        returns_matrix=matrix,
        champion_sharpe=champion,
        periods_per_year=PPY,
        pbo_trials=(matrix.shape[1], 0),
        config=GateConfig(**config),
    )
    return {c.name: c for c in report.checks} | {"_report": report}


def test_a_strong_candidate_passes_every_check_and_shows_each_number() -> None:
    checks = gate(returns(0.003))
    report = checks.pop("_report")
    assert report.passed
    assert set(checks) == {
        "oos_sharpe_per_bar",
        "oos_sharpe_annualised",
        "beats_champion",
        "deflated_sharpe",
        "pbo",
        "max_drawdown",
        "recent_trades",
    }
    per_bar = checks["oos_sharpe_per_bar"].value
    assert checks["oos_sharpe_annualised"].value == pytest.approx(per_bar * np.sqrt(PPY))
    assert "| deflated_sharpe |" in report.markdown() and "bar" in report.markdown()


def test_drawdown_is_negative_and_its_bar_refuses_a_deep_one() -> None:
    curve = np.concatenate([np.full(500, 0.002), np.full(100, -0.01), np.full(2000, 0.002)])
    checks = gate(curve, max_drawdown=-0.35)
    dd = checks["max_drawdown"]
    assert dd.value == pytest.approx(max_drawdown_of(curve)) and -0.7 < dd.value < -0.6
    assert dd.passed is False and dd.shown.endswith("%") and dd.shown.startswith("-")
    assert gate(curve, max_drawdown=-0.7)["max_drawdown"].passed is True


def test_no_trades_in_the_most_recent_folds_fails() -> None:
    checks = gate(returns(0.003), trades=(40, 30, 0, 0))
    assert checks["recent_trades"].value == 0 and checks["recent_trades"].passed is False
    assert checks["_report"].passed is False
    assert gate(returns(0.003), trades=(0, 0, 3, 2), min_recent_trades=5)["recent_trades"].passed is True


def test_a_tie_with_the_reevaluated_champion_passes_within_the_tolerance() -> None:
    candidate = returns(0.003)
    sr = float(np.mean(candidate) / np.std(candidate, ddof=1))
    assert gate(candidate, champion=sr)["beats_champion"].passed is True  # a refit ties
    assert gate(candidate, champion=sr + 0.001, champion_tolerance=0.002)["beats_champion"].passed is True
    assert gate(candidate, champion=sr + 0.003, champion_tolerance=0.002)["beats_champion"].passed is False


def test_the_deflated_sharpe_bar_counts_every_trial() -> None:
    candidate = returns(0.0004, seed=3)
    few = gate(candidate, trial_sharpes=np.array([0.01, 0.012]))["deflated_sharpe"]
    many = gate(candidate, trial_sharpes=np.random.default_rng(4).normal(0.0, 0.02, 200))["deflated_sharpe"]
    assert many.value < few.value and many.bar == 0.95 and "200 trials" in many.detail
    assert many.passed is False


def test_bars_read_as_people_read_them_with_their_comparison() -> None:
    checks = gate(returns(0.003), max_drawdown=-0.2, min_recent_trades=7)
    report = checks.pop("_report")
    assert checks["max_drawdown"].bar_text == ">= -20.0%"
    assert checks["recent_trades"].bar_text == ">= 7"
    assert checks["pbo"].bar_text.startswith("<= ") and checks["deflated_sharpe"].bar_text.startswith(">= ")
    assert checks["beats_champion"].bar_text == "none"  # no champion: nothing to beat, not "-inf"
    assert "| max_drawdown | " in report.markdown() and "| >= -20.0% |" in report.markdown()
    assert "(bar >= -20.0%)" in report.summary()


def test_the_markdown_table_has_four_narrow_columns_and_the_how_below_it() -> None:
    checks = gate(returns(0.003), max_drawdown=-0.2)
    report = checks.pop("_report")
    table, how = report.markdown().split("\n\n", 1)
    rows = table.splitlines()
    assert rows[0] == "| check | value | bar | result |"
    assert all(row.count("|") == 5 for row in rows)  # no fifth column to squeeze the words into (Dagster)
    assert len(rows) == 2 + len(checks)
    assert f"| pbo | {checks['pbo'].value:.4f} | <= 0.5000 | PASS |" in rows
    for name, check in checks.items():
        assert f"- **{name}**: {check.detail}" in how
