"""``RetrainPolicy``: how often the model is refit, on how much history, how old it may get
and what trading does once it is too old. One object, used by every part that must agree:

* the walk-forward evaluation (``tradeloop.research.walkforward``) refits each trial's
  model at the retrain times inside every test period and lets it age exactly as live;
* the Dagster schedule (``pipelines.automation``) runs the retrain at those same times;
* the live engine's staleness rule: a model trained under the policy carries
  ``max_age_ms`` and ``on_stale`` in its file (``ThresholdModel``), and the engine's model
  slot applies them bar by bar (``live.models``).

Retrain times are fixed on the calendar: midnight UTC of every day whose number since
1970-01-01 is a multiple of ``retrain_every_days`` (every day for 1, every Thursday for 7,
every 30th day for the default 30),
so the schedule and the simulation name the same instants. A model refit at time ``r``
learns only from events whose label closed before ``r`` minus the embargo, and decides the
bars from ``r`` on.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

DAY_MS = 86_400_000
StaleRule = Literal["reduce_only", "break_even"]


class RetrainPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    training_window_days: float | None = Field(
        default=None, gt=0, description="learn from events of the last this many days; None: every event so far"
    )
    retrain_every_days: int = Field(default=30, ge=1, le=365, description="refit cadence (calendar-aligned)")
    max_model_age_days: float = Field(
        default=45.0, gt=0, le=5 * 365, description="a model whose last training label is older is stale"
    )
    on_stale: StaleRule = Field(
        default="reduce_only",
        description="reduce_only: no entry (exits pass); break_even: entries need the break-even probability p*",
    )

    @model_validator(mode="after")
    def _age_covers_cadence(self) -> RetrainPolicy:
        if self.max_model_age_days < self.retrain_every_days:
            raise ValueError(
                f"max_model_age_days={self.max_model_age_days} is shorter than retrain_every_days="
                f"{self.retrain_every_days}: every model would go stale before the next retrain; "
                "raise max_model_age_days or retrain more often"
            )
        return self

    @property
    def cadence_ms(self) -> int:
        return self.retrain_every_days * DAY_MS

    @property
    def max_age_ms(self) -> int:
        return int(self.max_model_age_days * DAY_MS)

    @property
    def window_ms(self) -> int | None:
        return None if self.training_window_days is None else int(self.training_window_days * DAY_MS)

    def retrain_times(self, start_ms: int, end_ms: int) -> np.ndarray:
        """The scheduled retrain times ``r`` with ``start_ms < r <= end_ms`` (ms, ascending)."""
        first = (start_ms // self.cadence_ms + 1) * self.cadence_ms
        return np.arange(first, end_ms + 1, self.cadence_ms, dtype=np.int64)

    def is_retrain_time(self, at_ms: int) -> bool:
        return at_ms % self.cadence_ms == 0

    def last_retrain_time(self, at_ms: int) -> int:
        """The latest scheduled retrain time at or before ``at_ms``."""
        return at_ms // self.cadence_ms * self.cadence_ms

    def training_start(self, at_ms: int) -> int | None:
        """Events decided before this time are outside the training window of a refit at ``at_ms``."""
        return None if self.window_ms is None else at_ms - self.window_ms

    def describe(self) -> str:
        window = "all history" if self.training_window_days is None else f"the last {self.training_window_days:g} days"
        rule = "reduce-only" if self.on_stale == "reduce_only" else "break-even p* only"
        return (
            f"refit every {self.retrain_every_days} day(s) on {window}; stale after "
            f"{self.max_model_age_days:g} days, then {rule}"
        )
