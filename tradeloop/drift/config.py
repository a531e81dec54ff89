"""The bars a drift report judges against: frozen and validated at construction.

Each bound is a pydantic constraint whose description says what the number means, so
``DriftConfig.parse`` turns a bad value into a ``ConfigError`` naming the field, the value
and the fix; the cross-field checks say which field to change.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tradeloop.errors import config_error

MIN_ROWS_PER_BIN = 5  # a PSI bin expecting fewer reference rows than this is mostly noise


class DriftConfig(BaseModel):
    """When features, calibration or the hit rate count as drifted (``tradeloop.drift.report``).

    A feature drifts when its population stability index is above ``psi_bar`` **and** the
    two-sample Kolmogorov-Smirnov test rejects equality at ``ks_p_bar``: the PSI says the
    shift is large, the test that it is not noise. (Rolling features are autocorrelated, which
    makes the KS p-value too small on its own; the PSI bar keeps small shifts from counting.)
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    bins: int = Field(default=10, ge=2, le=100, description="PSI bins, quantiles of the training window: 10")
    epsilon: float = Field(
        default=1e-4, gt=0, lt=0.01, description="share put in an empty PSI bin so the log stays finite: 1e-4"
    )
    psi_bar: float = Field(default=0.25, gt=0, description="PSI above which a feature moved a lot: 0.25")
    ks_p_bar: float = Field(default=0.01, gt=0, lt=1, description="KS p-value below which a shift is real: 0.01")
    min_drifted_features: int = Field(
        default=1, ge=1, description="drifted features that make the report's feature verdict drifted: 1"
    )
    min_feature_rows: int = Field(
        default=200, ge=10, description="bars each window needs before its features are judged: 200"
    )
    reliability_bins: int = Field(
        default=10, ge=2, le=50, description="equal-width probability bins of the reliability table: 10"
    )
    brier_worsening: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="rise of the Brier score over the training window's that counts as calibration drift: 0.05",
    )
    hit_rate_p_bar: float = Field(
        default=0.01, gt=0, lt=1, description="two-sided p-value of realised vs expected hits that is drift: 0.01"
    )
    min_closed: int = Field(default=30, ge=5, description="closed outcomes needed before calibration is judged: 30")

    @model_validator(mode="after")
    def _consistent(self) -> DriftConfig:
        needed = MIN_ROWS_PER_BIN * self.bins
        if self.min_feature_rows < needed:
            raise ValueError(
                f"min_feature_rows={self.min_feature_rows} is below {MIN_ROWS_PER_BIN} rows per PSI bin "
                f"(bins={self.bins}); set min_feature_rows >= {needed} or lower bins"
            )
        if self.epsilon * self.bins >= 0.5:
            raise ValueError(
                f"epsilon={self.epsilon:g} times bins={self.bins} fills half the distribution with "
                f"nothing; set epsilon below {0.5 / self.bins:g}"
            )
        return self

    @classmethod
    def parse(cls, data: dict[str, Any]) -> DriftConfig:
        """A config from stored or user-given options; raises ``ConfigError`` naming each bad
        field, its value and the fix (pydantic's ``ValidationError`` stops here)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc, what="drift config", model=cls) from None
