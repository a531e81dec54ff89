"""The promotion gate: every check reports its number, its bar and whether it passed."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tradeloop.errors import ConfigError
from tradeloop.evaluation import deflated_sharpe, probability_of_backtest_overfitting, sharpe_per_period


class GateConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_deflated_sharpe: float = Field(default=0.5, ge=0.0, le=1.0,
                                       description="P(true Sharpe > best-of-N-trials luck)")
    max_pbo: float = Field(default=0.5, ge=0.0, le=1.0, description="probability of backtest overfitting")
    min_oos_sharpe: float = Field(default=0.0, description="per-bar out-of-sample Sharpe floor")
    pbo_partitions: int = Field(default=8, ge=2)


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float
    bar: float
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateReport:
    checks: tuple[GateCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dicts(self) -> list[dict]:
        return [asdict(c) for c in self.checks]

    def summary(self) -> str:
        lines = [f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.value:.4f} (bar {c.bar:.4f}) {c.detail}"
                 for c in self.checks]
        return "\n".join(lines)


def evaluate_gate(*, candidate_returns: np.ndarray, trial_sharpes: np.ndarray, returns_matrix: np.ndarray,
                  champion_sharpe: float | None, config: GateConfig = GateConfig()) -> GateReport:
    """Checks a candidate's out-of-sample returns against the bars and the current champion."""
    returns = np.asarray(candidate_returns, dtype=np.float64)
    if returns.size < 10:
        raise ConfigError(f"the candidate has {returns.size} out-of-sample returns; the gate needs at least 10")
    sr = sharpe_per_period(returns)
    checks = [GateCheck("oos_sharpe", sr, config.min_oos_sharpe, sr > config.min_oos_sharpe,
                        "per-bar Sharpe of the walk-forward test periods")]
    bar = -np.inf if champion_sharpe is None else float(champion_sharpe)
    checks.append(GateCheck("beats_champion", sr, bar, sr > bar,
                            "no champion yet" if champion_sharpe is None else "champion's out-of-sample Sharpe"))
    trials = np.asarray(trial_sharpes, dtype=np.float64)
    dsr = deflated_sharpe(returns, trial_sharpes=trials)
    checks.append(GateCheck("deflated_sharpe", dsr, config.min_deflated_sharpe, dsr >= config.min_deflated_sharpe,
                            f"given {trials.size} trials"))
    matrix = np.asarray(returns_matrix, dtype=np.float64)
    if matrix.ndim == 2 and matrix.shape[1] >= 2 and matrix.shape[0] >= 2 * config.pbo_partitions:
        pbo = probability_of_backtest_overfitting(matrix, n_partitions=config.pbo_partitions)
        checks.append(GateCheck("pbo", pbo, config.max_pbo, pbo <= config.max_pbo,
                                f"CSCV over {matrix.shape[1]} complete trials, {config.pbo_partitions} blocks"))
    else:
        checks.append(GateCheck("pbo", 1.0, config.max_pbo, False,
                                f"cannot estimate from matrix {matrix.shape}: need >= 2 complete trials"))
    return GateReport(tuple(checks))
