"""The promotion gate: every check reports its number, its bar and whether it passed.

The candidate's evidence is its walk-forward under the retrain policy (what live would have
traded). The incumbent champion's parameters are re-evaluated on the same folds of the same
data, so the comparison is like for like; a candidate not worse than that within
``champion_tolerance`` passes (a refit of the champion's own parameters ties, and a tie
must never leave the engine on a stale model). Drawdowns are negative fractions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tradeloop.errors import ConfigError
from tradeloop.evaluation import deflated_sharpe, probability_of_backtest_overfitting, sharpe_per_period
from tradeloop.research.walkforward import max_drawdown_of


class GateConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_oos_sharpe: float = Field(default=0.0, description="per-bar out-of-sample Sharpe floor")
    min_deflated_sharpe: float = Field(
        default=0.95, ge=0.0, le=1.0, description="P(true Sharpe > the best of N trials' luck)"
    )
    max_pbo: float = Field(default=0.5, ge=0.0, le=1.0, description="probability of backtest overfitting")
    max_drawdown: float = Field(
        default=-0.35, ge=-1.0, lt=0.0, description="worst out-of-sample drawdown allowed, a negative fraction"
    )
    recent_folds: int = Field(default=2, ge=1, description="the folds the trade-count check looks at")
    min_recent_trades: int = Field(default=5, ge=0, description="trades needed in the most recent folds")
    champion_tolerance: float = Field(
        default=0.002, ge=0.0, description="per-bar Sharpe the candidate may lag the re-evaluated champion"
    )
    pbo_partitions: int = Field(default=8, ge=2)


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float
    bar: float
    passed: bool
    detail: str
    shown: str = ""  # the value as people read it (a percentage, an annualised figure)
    shown_bar: str = ""  # the bar as people read it, with its comparison ("> 0.0000", ">= -35.0%")

    @property
    def value_text(self) -> str:
        return self.shown or f"{self.value:.4f}"

    @property
    def bar_text(self) -> str:
        return self.shown_bar or f"{self.bar:.4f}"


@dataclass(frozen=True)
class GateReport:
    checks: tuple[GateCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[str]:
        return [f"{c.name} {c.value:.4g} (bar {c.bar:.4g})" for c in self.checks if not c.passed]

    def as_dicts(self) -> list[dict]:
        return [asdict(c) for c in self.checks]

    def summary(self) -> str:
        return "\n".join(
            f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.value_text} (bar {c.bar_text}) {c.detail}"
            for c in self.checks
        )

    def markdown(self) -> str:
        """A narrow table (check, value, bar, result) and, under it, how each check was measured
        as a list: a fifth "how" column would be squeezed to a few letters a line where the
        table is shown in a narrow column (Dagster's metadata)."""
        rows = ["| check | value | bar | result |", "|---|---:|---:|---|"]
        rows += [
            f"| {c.name} | {c.value_text} | {c.bar_text} | {'PASS' if c.passed else '**FAIL**'} |" for c in self.checks
        ]
        how = [f"- **{c.name}**: {c.detail}" for c in self.checks if c.detail]
        return "\n".join(rows) + ("\n\nHow each check was measured:\n\n" + "\n".join(how) if how else "")


def evaluate_gate(
    *,
    candidate_returns: np.ndarray,
    folds: Sequence[dict],
    trial_sharpes: np.ndarray,
    returns_matrix: np.ndarray,
    champion_sharpe: float | None,
    periods_per_year: float,
    pbo_trials: tuple[int, int] | None = None,
    config: GateConfig = GateConfig(),  # noqa: B008 - frozen, immutable
) -> GateReport:
    """Checks the candidate's out-of-sample returns and folds against the bars and the champion
    (``champion_sharpe``: its parameters' per-bar Sharpe on the same folds; None: no champion)."""
    returns = np.asarray(candidate_returns, dtype=np.float64)
    if returns.size < 10:
        raise ConfigError(f"the candidate has {returns.size} out-of-sample returns; the gate needs at least 10")
    sr = sharpe_per_period(returns)
    annual = sr * math.sqrt(periods_per_year)
    checks = [
        GateCheck(
            "oos_sharpe_per_bar",
            sr,
            config.min_oos_sharpe,
            sr > config.min_oos_sharpe,
            f"walk-forward test periods under the retrain policy, {returns.size} bars",
            shown_bar=f"> {config.min_oos_sharpe:.4f}",
        ),
        GateCheck(
            "oos_sharpe_annualised",
            annual,
            config.min_oos_sharpe * math.sqrt(periods_per_year),
            annual > config.min_oos_sharpe * math.sqrt(periods_per_year),
            f"per-bar Sharpe x sqrt({periods_per_year:g} bars a year)",
            shown_bar=f"> {config.min_oos_sharpe * math.sqrt(periods_per_year):.4f}",
        ),
    ]
    if champion_sharpe is None:
        checks.append(GateCheck("beats_champion", sr, -math.inf, True, "no champion yet", shown_bar="none"))
    else:
        bar = float(champion_sharpe) - config.champion_tolerance
        checks.append(
            GateCheck(
                "beats_champion",
                sr,
                bar,
                sr >= bar,
                f"champion re-evaluated on the same folds: {champion_sharpe:.4f} per bar, "
                f"minus tolerance {config.champion_tolerance:g}",
                shown_bar=f">= {bar:.4f}",
            )
        )
    trials = np.asarray(trial_sharpes, dtype=np.float64)
    dsr = deflated_sharpe(returns, trial_sharpes=trials)
    checks.append(
        GateCheck(
            "deflated_sharpe",
            dsr,
            config.min_deflated_sharpe,
            dsr >= config.min_deflated_sharpe,
            f"given {trials.size} trials, pruned ones included",
            shown_bar=f">= {config.min_deflated_sharpe:.4f}",
        )
    )
    checks.append(_pbo(np.asarray(returns_matrix, dtype=np.float64), pbo_trials, config))
    dd = max_drawdown_of(returns)
    checks.append(
        GateCheck(
            "max_drawdown",
            dd,
            config.max_drawdown,
            dd >= config.max_drawdown,
            "worst fall from a high of the out-of-sample equity",
            shown=f"{dd:.1%}",
            shown_bar=f">= {config.max_drawdown:.1%}",
        )
    )
    recent = list(folds)[-config.recent_folds :]
    trades = sum(int(f["trades"]) for f in recent)
    checks.append(
        GateCheck(
            "recent_trades",
            trades,
            config.min_recent_trades,
            trades >= config.min_recent_trades,
            f"trades in the {len(recent)} most recent fold(s): {', '.join(str(int(f['trades'])) for f in recent)}",
            shown=str(trades),
            shown_bar=f">= {config.min_recent_trades}",
        )
    )
    return GateReport(tuple(checks))


def _pbo(matrix: np.ndarray, pbo_trials: tuple[int, int] | None, config: GateConfig) -> GateCheck:
    if matrix.ndim == 2 and matrix.shape[1] >= 2 and matrix.shape[0] >= 2 * config.pbo_partitions:
        pbo = probability_of_backtest_overfitting(matrix, n_partitions=config.pbo_partitions)
        pruned = f" ({pbo_trials[1]} pruned, over their first {matrix.shape[0]} bars)" if pbo_trials else ""
        return GateCheck(
            "pbo",
            pbo,
            config.max_pbo,
            pbo <= config.max_pbo,
            f"CSCV over {matrix.shape[1]} trials{pruned}, {config.pbo_partitions} blocks",
            shown_bar=f"<= {config.max_pbo:.4f}",
        )
    return GateCheck(
        "pbo",
        1.0,
        config.max_pbo,
        False,
        f"cannot estimate from returns matrix {matrix.shape}: need >= 2 trials with history",
        shown_bar=f"<= {config.max_pbo:.4f}",
    )
