"""Online threshold adaptation from realised outcomes, with guardrails.

Each candidate threshold keeps a discounted Beta posterior of the win rate of the trades it
*would have taken* (those whose predicted probability exceeded it) and discounted mean win
and loss sizes. Its expected net return per trade is ``wr * W - (1 - wr) * L`` with ``wr``
the posterior mean. After each closed outcome the adapter moves the threshold in force
toward the candidate of highest expectation, subject to:

* only closed labels update it (an open trade's outcome is not known);
* the threshold stays within ``bounds``;
* one step moves it by at most ``max_step``;
* a candidate needs ``min_samples`` (discounted) trades before it can be chosen.

Everything is deterministic: no sampling, the same outcomes give the same thresholds.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradeloop.errors import ConfigError


class OnlineConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    discount: float = Field(default=0.98, gt=0.0, le=1.0)
    prior_wins: float = Field(default=1.0, gt=0.0)
    prior_losses: float = Field(default=1.0, gt=0.0)
    min_samples: float = Field(default=20.0, ge=1.0)
    max_step: float = Field(default=0.02, gt=0.0, le=1.0)
    bounds: tuple[float, float] = (0.05, 0.95)
    grid_width: float = Field(default=0.15, gt=0.0)
    grid_points: int = Field(default=7, ge=2)

    @model_validator(mode="after")
    def _bounds_ordered(self) -> OnlineConfig:
        lo, hi = self.bounds
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"bounds={self.bounds}: need 0 <= low < high <= 1")
        return self


class OnlineThreshold:
    """Threshold in force, adapted from closed outcomes. ``state()`` / ``from_state`` persist it."""

    def __init__(self, initial: float, *, config: OnlineConfig = OnlineConfig()) -> None:
        lo, hi = config.bounds
        if not lo <= initial <= hi:
            raise ConfigError(f"initial threshold {initial} lies outside bounds {config.bounds}")
        self.config = config
        self.threshold = float(initial)
        self.candidates = np.clip(
            np.linspace(initial - config.grid_width, initial + config.grid_width, config.grid_points), lo, hi
        )
        self.wins = np.zeros(config.grid_points)
        self.losses = np.zeros(config.grid_points)
        self.win_sum = np.zeros(config.grid_points)
        self.loss_sum = np.zeros(config.grid_points)
        self.updates = 0

    def win_rate(self) -> np.ndarray:
        """Posterior mean win rate per candidate."""
        c = self.config
        return (self.wins + c.prior_wins) / (self.wins + self.losses + c.prior_wins + c.prior_losses)

    def observe(self, probability: float, net_return: float, *, closed: bool = True) -> float:
        """Record one outcome of a trade taken at ``probability``; returns the threshold in force."""
        if not closed:
            return self.threshold
        if not (np.isfinite(probability) and np.isfinite(net_return)):
            raise ConfigError(f"outcome needs finite probability and return; got {probability}, {net_return}")
        d = self.config.discount
        self.wins *= d
        self.losses *= d
        self.win_sum *= d
        self.loss_sum *= d
        taken = self.candidates < probability
        won = net_return > 0
        self.wins += taken & won
        self.losses += taken & (not won)
        self.win_sum += np.where(taken & won, net_return, 0.0)
        self.loss_sum += np.where(taken & (not won), -net_return, 0.0)
        self.updates += 1
        self._step()
        return self.threshold

    def _step(self) -> None:
        count = self.wins + self.losses
        ok = count >= self.config.min_samples
        if not ok.any():
            return
        wr = self.win_rate()
        avg_win = self.win_sum / np.maximum(self.wins, 1e-12)
        avg_loss = self.loss_sum / np.maximum(self.losses, 1e-12)
        expected = np.where(ok, wr * avg_win - (1.0 - wr) * avg_loss, -np.inf)
        target = float(self.candidates[int(np.argmax(expected))])  # ties: the lowest candidate
        step = float(np.clip(target - self.threshold, -self.config.max_step, self.config.max_step))
        self.threshold = float(np.clip(self.threshold + step, *self.config.bounds))

    def state(self) -> dict:
        return {
            "threshold": self.threshold,
            "candidates": self.candidates.tolist(),
            "wins": self.wins.tolist(),
            "losses": self.losses.tolist(),
            "win_sum": self.win_sum.tolist(),
            "loss_sum": self.loss_sum.tolist(),
            "updates": self.updates,
            "config": self.config.model_dump(mode="json"),
        }

    @classmethod
    def from_state(cls, state: dict) -> OnlineThreshold:
        out = cls(state["threshold"], config=OnlineConfig(**state["config"]))
        out.candidates = np.asarray(state["candidates"], dtype=float)
        out.wins = np.asarray(state["wins"], dtype=float)
        out.losses = np.asarray(state["losses"], dtype=float)
        out.win_sum = np.asarray(state["win_sum"], dtype=float)
        out.loss_sum = np.asarray(state["loss_sum"], dtype=float)
        out.updates = int(state["updates"])
        return out
